"""The example shop end to end: uvicorn, a Celery worker (prefork, 2 children) and beat on the
local Redis, PostgreSQL as the database, the local inbox as the DSN.

One module-scoped run drives a scripted set of requests, waits until the tasks and the beat
check-ins have reported, stops the processes (they flush on the way out) and then each test
checks one guarantee against what the inbox stored.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from examples.shop.stub import UNAVAILABLE_CARD, ProviderStub

from fastapi_sentry.inbox import InboxServer
from tests.conftest import require_service
from tests.e2e_support import (
    Process,
    celery_argv,
    child_env,
    logs,
    uvicorn_argv,
    wait_http,
    wait_until,
)
from tests.support.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.services]

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_DB = 11
PASSWORD = "correct horse battery staple"
SEND_RECEIPT = "examples.shop.tasks.send_receipt"

#: Routes the shop declares; every HTTP transaction must be named after one of them.
ROUTE_TEMPLATES = {
    "/api/hello",
    "/api/products/{product_id}",
    "/api/products/{product_id}/shipping",
    "/api/auth/login",
    "/api/orders",
    "/api/orders/{order_id}",
    "/api/reports/sales",
    "/api/webhooks/payments",
}


def _fake_jwt() -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signature = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return f"{part({'alg': 'HS256'})}.{part({'sub': 'svc', 'n': secrets.token_hex(4)})}.{signature}"


@dataclass
class Secrets:
    """Distinctive fake secrets, planted where services leak them."""

    stripe_key: str = field(default_factory=lambda: "sk_live_" + secrets.token_hex(12))
    jwt: str = field(default_factory=_fake_jwt)
    password: str = field(default_factory=lambda: "pw-" + secrets.token_hex(10))
    query_api_key: str = field(default_factory=lambda: "qk" + secrets.token_hex(12))
    header_api_key: str = field(default_factory=lambda: "hk" + secrets.token_hex(12))
    cookie: str = field(default_factory=lambda: "ck" + secrets.token_hex(12))
    log_token: str = field(default_factory=lambda: "sk_live_" + secrets.token_hex(12))

    def planted(self) -> dict[str, str]:
        return dict(vars(self))

    def headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.header_api_key, "Cookie": f"session={self.cookie}"}


@dataclass
class Run:
    inbox: InboxServer
    db_files: list[Path]
    secrets: Secrets
    user_id: str
    responses: dict[str, httpx.Response]
    events: list[dict[str, Any]]
    transactions: list[dict[str, Any]]
    check_ins: list[dict[str, Any]]
    issues: list[dict[str, Any]]


def _create_schema(schema: str) -> None:
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')


def _drop_schema(schema: str) -> None:
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _flush_redis_db() -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    try:
        client.flushdb()
    finally:
        client.close()


def _send(base: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    # a fresh connection each time: uvicorn closes the connection after an unhandled error
    with httpx.Client(base_url=base, timeout=20.0) as client:
        return client.request(method, path, **kwargs)


def _drive(base: str, planted: Secrets) -> tuple[dict[str, httpx.Response], str]:
    """The scripted traffic; returns the responses by name and the id of the user who ordered."""
    leaky = planted.headers()
    r: dict[str, httpx.Response] = {}
    r["hello"] = _send(base, "GET", "/api/hello")
    r["product"] = _send(
        base, "GET", "/api/products/1", headers={"X-Request-ID": f"e2e-{uuid.uuid4().hex}"}
    )
    r["shipping"] = _send(
        base,
        "GET",
        "/api/products/1/shipping",
        params={"country": "ZZ", "api_key": planted.query_api_key},
        headers={**leaky, "X-Request-ID": f"e2e-{uuid.uuid4().hex}"},
    )
    # the same unhandled error twice: one issue, two events
    for name in ("legacy_login_1", "legacy_login_2"):
        r[name] = _send(
            base,
            "POST",
            "/api/auth/login",
            json={"email": "grace@example.com", "password": planted.password},
            headers={**leaky, "Authorization": f"Bearer {planted.jwt}"},
        )
    login = _send(
        base, "POST", "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    token = login.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    r["invalid_order"] = _send(
        base,
        "POST",
        "/api/orders",
        json={"product_id": 1, "quantity": 0, "card_token": "t"},
        headers=auth,
    )
    r["missing_order"] = _send(base, "GET", "/api/orders/999999", headers=auth)
    r["payment_outage"] = _send(
        base,
        "POST",
        "/api/orders",
        json={"product_id": 1, "quantity": 2, "card_token": UNAVAILABLE_CARD},
        headers={**auth, **leaky},
    )
    r["order"] = _send(
        base,
        "POST",
        "/api/orders",
        json={"product_id": 1, "quantity": 1, "card_token": "tok_visa"},
        headers=auth,
    )
    r["report"] = _send(base, "GET", "/api/reports/sales")
    r["webhook"] = _send(
        base,
        "POST",
        "/api/webhooks/payments",
        json={"type": "charge.disputed", "secret_key": planted.log_token, "amount": 4980},
    )
    r["health"] = _send(base, "GET", "/health")
    r["static"] = _send(base, "GET", "/static/robots.txt")
    return r, str(claims["sub"])


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    require_service("PostgreSQL", 5432)
    require_service("Redis", 6379)
    workdir = tmp_path_factory.mktemp("e2e")
    schema = f"shop_e2e_{uuid.uuid4().hex[:10]}"
    _create_schema(schema)
    _flush_redis_db()
    planted = Secrets()
    processes: list[Process] = []
    try:
        with InboxServer(workdir / "inbox.db") as inbox, ProviderStub() as stub:
            port = free_port()
            env = child_env(
                {
                    "SENTRY_DSN": inbox.dsn,
                    "SENTRY_ENVIRONMENT": "test",
                    "SENTRY_RELEASE": "shop@e2e",
                    "SENTRY_ENABLE_LOGS": "true",
                    "DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
                    "SHOP_DATABASE_SCHEMA": schema,
                    "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
                    "SHOP_EXTERNAL_API_URL": stub.url,
                    "SHOP_EXTERNAL_API_KEY": planted.stripe_key,
                    "SHOP_RECEIPT_RETRY_DELAY": "0.2",
                    "SHOP_BEAT_CRON": "* * * * *",
                }
            )
            app = Process(
                "uvicorn", uvicorn_argv("examples.shop.app:create_app", port), env, workdir
            )
            processes.append(app)
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/health", 60, processes)
            # the app created the tables; now the worker and beat may use them
            worker = Process(
                "worker",
                celery_argv(
                    "examples.shop.tasks",
                    "worker",
                    "--pool=prefork",
                    "--concurrency=2",
                    "--loglevel=INFO",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ),
                env,
                workdir,
            )
            beat = Process(
                "beat",
                celery_argv(
                    "examples.shop.tasks",
                    "beat",
                    "--loglevel=INFO",
                    f"--schedule={workdir / 'beat-schedule'}",
                ),
                env,
                workdir,
            )
            processes += [worker, beat]
            wait_until(lambda: "ready." in worker.output(200_000), 60, "worker ready", processes)
            responses, user_id = _drive(base, planted)

            # the receipt task fails three times (two retries), then reports once
            def task_reported() -> bool:
                return any(
                    e.get("tags", {}).get("celery.task_name") == SEND_RECEIPT
                    for e in inbox.events("error")
                )

            wait_until(task_reported, 60, "the failed receipt task's event", processes)

            # beat fires on the next minute boundary; wait for the ok and the error check-in
            def both_check_ins() -> bool:
                statuses = {
                    (c.get("monitor_slug"), c.get("status")) for c in inbox.events("check_in")
                }
                return {("inventory-snapshot", "ok"), ("reconcile-payments", "error")} <= statuses

            wait_until(both_check_ins, 130, "beat check-ins ok and error", processes)
            # a graceful stop flushes each process's queue, and the inbox answers a POST only
            # after storing it: nothing is in flight once they have exited
            for process in processes:
                process.stop()
            yield Run(
                inbox=inbox,
                db_files=[workdir / name for name in ("inbox.db", "inbox.db-wal", "inbox.db-shm")],
                secrets=planted,
                user_id=user_id,
                responses=responses,
                events=inbox.events("error,default"),
                transactions=inbox.events("transaction"),
                check_ins=inbox.events("check_in"),
                issues=inbox.issues(),
            )
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(f"the end-to-end run failed: {exc!r}\n{logs(processes)}") from exc
    finally:
        for process in processes:
            process.stop()
        _drop_schema(schema)


# --- helpers over the stored events ---------------------------------------------------------


def _exception_type(event: dict[str, Any]) -> str | None:
    values = (event.get("exception") or {}).get("values") or []
    return values[-1].get("type") if values else None


def _events_of(run: Run, exc_type: str) -> list[dict[str, Any]]:
    return [e for e in run.events if _exception_type(e) == exc_type]


def _message(event: dict[str, Any]) -> str:
    logentry = event.get("logentry") or {}
    return str(logentry.get("formatted") or logentry.get("message") or event.get("message") or "")


def _by_request_id(events: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    return [e for e in events if (e.get("tags") or {}).get("request_id") == request_id]


# --- the guarantees -------------------------------------------------------------------------


def test_responses_are_what_the_scenario_expects(shop_run: Run) -> None:
    statuses = {name: response.status_code for name, response in shop_run.responses.items()}
    assert statuses == {
        "hello": 200,
        "product": 200,
        "shipping": 200,
        "legacy_login_1": 500,
        "legacy_login_2": 500,
        "invalid_order": 422,
        "missing_order": 404,
        "payment_outage": 503,
        "order": 201,
        "report": 200,
        "webhook": 400,
        "health": 200,
        "static": 200,
    }


def test_errors_are_grouped_into_the_expected_issues(shop_run: Run) -> None:
    counts = {issue["title"]: int(issue["count"]) for issue in shop_run.issues}
    assert counts.get("UnsupportedHashError: password hash scheme 'md5' is not supported") == 2
    assert counts.get("ShippingRateMissingError: no shipping rate for country 'ZZ'") == 1
    assert counts.get("ReceiptNotSentError: receipt for order 1 not sent: mail answered 503") == 1
    assert counts.get("Unknown payment webhook type 'charge.disputed'") == 1
    slow = [t for t in counts if t.startswith("Slow operation: sales report")]
    assert len(slow) == 1
    assert counts[slow[0]] == 1
    # one issue per (service, endpoint, status); the mail call failed once per attempt
    assert [c for t, c in counts.items() if "/charges returned 503" in t] == [1]
    assert [c for t, c in counts.items() if "/mail returned 503" in t] == [3]
    # validation errors and 404s never become issues
    titles = " | ".join(counts)
    assert "RequestValidationError" not in titles
    # (not inside a port number such as 127.0.0.1:40491)
    assert re.search(r"(?<![:\d])404(?!\d)", titles) is None, titles
    assert "HTTPException" not in titles


def test_request_id_tag_equals_the_response_header(shop_run: Run) -> None:
    for name in ("shipping", "legacy_login_1", "payment_outage"):
        request_id = shop_run.responses[name].headers["x-request-id"]
        matching = _by_request_id(shop_run.events, request_id)
        assert len(matching) == 1, (name, request_id)
    # the id the client chose is kept
    sent = shop_run.responses["shipping"].request.headers["x-request-id"]
    assert shop_run.responses["shipping"].headers["x-request-id"] == sent


def test_handled_error_carries_its_context(shop_run: Run) -> None:
    (event,) = _events_of(shop_run, "ShippingRateMissingError")
    assert event["contexts"]["details"] == {"product_id": 1, "country": "ZZ"}
    assert event["level"] == "error"


def test_user_id_is_present_and_email_absent(shop_run: Run) -> None:
    request_id = shop_run.responses["payment_outage"].headers["x-request-id"]
    (event,) = _by_request_id(shop_run.events, request_id)
    assert event["user"]["id"] == shop_run.user_id
    for stored in shop_run.events:
        assert "email" not in (stored.get("user") or {})
    raw = b"".join(path.read_bytes() for path in shop_run.db_files if path.exists())
    assert b"ada@example.com" not in raw


def test_external_failure_carries_business_breadcrumbs(shop_run: Run) -> None:
    request_id = shop_run.responses["payment_outage"].headers["x-request-id"]
    (event,) = _by_request_id(shop_run.events, request_id)
    assert event["tags"]["external_service"] == "payments"
    assert event["contexts"]["external_api"]["status_code"] == 503
    crumbs = (event.get("breadcrumbs") or {}).get("values") or []
    business = [c["message"] for c in crumbs if c.get("category") == "business"]
    assert business == ["checkout started"]


def test_transaction_names_are_route_templates(shop_run: Run) -> None:
    names = {
        t["transaction"]
        for t in shop_run.transactions
        if t.get("contexts", {}).get("trace", {}).get("op") == "http.server"
    }
    assert names, "no HTTP transactions were stored"
    assert names <= ROUTE_TEMPLATES, names - ROUTE_TEMPLATES
    assert "/api/products/{product_id}" in names


def test_health_and_static_requests_are_not_traced(shop_run: Run) -> None:
    names = [t.get("transaction", "") for t in shop_run.transactions]
    assert not [n for n in names if "health" in n or "static" in n or "robots" in n]


def _transaction_for(run: Run, response_name: str) -> dict[str, Any]:
    request_id = run.responses[response_name].headers["x-request-id"]
    (transaction,) = _by_request_id(run.transactions, request_id)
    return transaction


def test_spans_carry_sql_redis_commands_and_http_status(shop_run: Run) -> None:
    product = _transaction_for(shop_run, "product")
    spans = product["spans"]
    sql = [s["description"] for s in spans if s.get("op") == "db"]
    assert any(d.startswith("SELECT") and "products" in d for d in sql), sql
    redis_spans = [s["description"] for s in spans if s.get("op") == "db.redis"]
    assert any(d.startswith("INCR") for d in redis_spans), redis_spans
    order = _transaction_for(shop_run, "order")
    (charge,) = [s for s in order["spans"] if s.get("op") == "http.client"]
    assert charge["description"].startswith("POST ")
    assert charge["description"].endswith("/charges")
    assert charge["data"]["http.response.status_code"] == 200


def test_failed_task_reports_once_with_task_tags_and_the_request_trace(shop_run: Run) -> None:
    task_events = [
        e
        for e in shop_run.events
        if (e.get("tags") or {}).get("celery.task_name") == SEND_RECEIPT
        and _exception_type(e) == "ReceiptNotSentError"
    ]
    assert len(task_events) == 1
    (event,) = task_events
    assert event["tags"]["celery.retries"] == "2"
    assert event["tags"]["celery.task_id"]
    request_trace = _transaction_for(shop_run, "order")["contexts"]["trace"]["trace_id"]
    assert event["contexts"]["trace"]["trace_id"] == request_trace


def test_beat_check_ins_are_recorded_ok_and_error(shop_run: Run) -> None:
    seen = {(c.get("monitor_slug"), c.get("status")) for c in shop_run.check_ins}
    assert ("inventory-snapshot", "ok") in seen
    assert ("reconcile-payments", "error") in seen
    assert ("inventory-snapshot", "error") not in seen


def test_planted_secrets_are_absent_from_the_whole_inbox_database(shop_run: Run) -> None:
    files = [path for path in shop_run.db_files if path.exists()]
    assert shop_run.db_files[0] in files
    raw = b"".join(path.read_bytes() for path in files)
    # the run did store the events the secrets were planted in
    assert b"UnsupportedHashError" in raw
    assert b"charge.disputed" in raw
    leaked = {
        name: value for name, value in shop_run.secrets.planted().items() if value.encode() in raw
    }
    assert not leaked, f"secrets found in the inbox database: {sorted(leaked)}"


def test_request_body_query_and_headers_are_attached_with_secrets_masked(shop_run: Run) -> None:
    login = _events_of(shop_run, "UnsupportedHashError")[0]["request"]
    # the body is there (install() ran before the routes were declared), its values masked
    assert set(login["data"]) == {"email", "password"}
    assert shop_run.secrets.password not in json.dumps(login["data"])
    assert login["headers"]["x-api-key"] != shop_run.secrets.header_api_key
    (shipping,) = _events_of(shop_run, "ShippingRateMissingError")
    query = shipping["request"]["query_string"]
    assert "country=ZZ" in query
    assert "api_key=" in query
    assert shop_run.secrets.query_api_key not in query
