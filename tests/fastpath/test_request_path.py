"""The lean request path: what it skips, and that what it keeps matches sentry-sdk's integration."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import subprocess
import sys
import uuid
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import sentry_sdk
import sentry_sdk.tracing
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration
from sentry_sdk.scope import Scope
from sentry_sdk.tracing_utils import PropagationContext

import fastapi_sentry
from fastapi_sentry._fastpath import sampling as _sampling
from fastapi_sentry._fastpath import scope_fork as _scope_fork
from fastapi_sentry._fastpath import sessions as _sessions
from fastapi_sentry._fastpath.sampling import (
    DecidedTransaction,
    HeadOfTrace,
    HeadSampler,
    new_span_id,
    start_sampled,
)
from fastapi_sentry._setup import flush
from fastapi_sentry.testing import CapturedEnvelopes

DSN = "http://publickey@127.0.0.1:9/1"  # never contacted: capture replaces the transport


class Order(BaseModel):
    sku: str
    quantity: int


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/orders/{order_id}/pay")
    async def pay(order_id: int, order: Order, request: Request) -> None:
        raise RuntimeError(f"payment for {order.sku} failed")

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, int]:
        return {"order_id": order_id}

    @app.post("/ignore-body")
    async def ignore_body() -> None:
        raise RuntimeError("never read the body")

    @app.post("/read-body")
    async def read_body(request: Request) -> None:
        await request.body()
        raise RuntimeError("read the body, then failed")

    @app.get("/unavailable")
    async def unavailable() -> None:
        raise HTTPException(status_code=503, detail="try later")

    return app


def call(app: Any, method: str, path: str, headers: dict[str, str] | None = None) -> int:
    """One request straight into the ASGI app: no instrumented HTTP client adding its trace."""
    body = b'{"sku": "x", "quantity": 1}' if method == "POST" else b""
    raw = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    raw += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        # the 500 is sent, then the error re-raised for the server, as in production
        with contextlib.suppress(RuntimeError):
            await app(scope, receive, send)

    asyncio.run(run())
    return int(sent[0]["status"])


def _failing_payment(client: TestClient) -> None:
    response = client.post(
        "/orders/7/pay?page=2&sort=asc",
        json={"sku": "tea", "quantity": 2},
        headers={"user-agent": "parity-test", "x-custom": "kept"},
    )
    assert response.status_code == 500


_SDK_HALF = """
import json, sentry_sdk
from fastapi.testclient import TestClient
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration
from fastapi_sentry.testing import capture_envelopes
from tests.fastpath.test_request_path import DSN, _failing_payment, make_app

with capture_envelopes() as captured:
    sentry_sdk.init(dsn=DSN, integrations=[StarletteIntegration(), FastApiIntegration()])
    with TestClient(make_app(), raise_server_exceptions=False) as client:
        _failing_payment(client)
print(json.dumps(captured.errors))
"""


def test_error_events_match_the_sdk_integration(sentry_events: CapturedEnvelopes) -> None:
    """The same failing request, once through sentry-sdk's own integration, once through ours."""
    # sentry-sdk sets integrations up once per process: its half runs in a fresh interpreter
    done = subprocess.run(
        [sys.executable, "-c", _SDK_HALF],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    (theirs,) = json.loads(done.stdout.strip().splitlines()[-1])

    app = FastAPI()
    fastapi_sentry.install(app, dsn=DSN, enable_tracing=False)
    # routes made after install(), as the SDK half makes them after init(): under the forced
    # fallback it is sentry-sdk's FastAPI integration that reads JSON bodies, and only for
    # routes created once it is set up (it patches `get_request_handler`)
    app.include_router(make_app().router)
    with TestClient(app, raise_server_exceptions=False) as client:
        _failing_payment(client)
    (ours,) = sentry_events.errors

    for field in ("url", "method", "data", "query_string"):
        assert ours["request"][field] == theirs["request"][field], field
    # (the test client's httpx integration sends each run's own trace headers)
    assert ours["request"]["headers"].keys() == theirs["request"]["headers"].keys()
    for name in ours["request"]["headers"].keys() - {"sentry-trace", "baggage"}:
        assert ours["request"]["headers"][name] == theirs["request"]["headers"][name], name
    assert ours["transaction"] == theirs["transaction"] == "/orders/{order_id}/pay"
    assert ours["transaction_info"] == theirs["transaction_info"] == {"source": "route"}
    our_exc, their_exc = ours["exception"]["values"][-1], theirs["exception"]["values"][-1]
    assert our_exc["type"] == their_exc["type"] == "RuntimeError"
    assert our_exc["mechanism"]["type"] == their_exc["mechanism"]["type"] == "starlette"
    assert our_exc["mechanism"]["handled"] is their_exc["mechanism"]["handled"] is False
    assert ours["contexts"]["trace"]["trace_id"]  # the request's own trace, as before
    assert ours["tags"]["endpoint"] == "POST /orders/{order_id}/pay"


@pytest.mark.lean_only
def test_the_sdk_starlette_and_fastapi_integrations_are_disabled() -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN)
    client = sentry_sdk.get_client()
    assert client.get_integration(StarletteIntegration) is None
    assert client.get_integration(FastApiIntegration) is None
    assert "logging" in client.integrations  # the others stay


def _count_transactions(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    made: list[Any] = []
    original = sentry_sdk.tracing.Transaction.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(sentry_sdk.tracing.Transaction, "__init__", counting_init)
    return made


@pytest.mark.lean_only
@pytest.mark.parametrize(
    ("options", "expected"),
    [({"enable_tracing": False}, 0), ({"traces_sample_rate": 0.0}, 0)],
)
def test_untraced_requests_create_no_transaction(
    sentry_events: CapturedEnvelopes,
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    expected: int,
) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN, **options)
    made = _count_transactions(monkeypatch)
    with TestClient(app) as client:
        for n in range(30):
            assert client.get(f"/orders/{n}").status_code == 200
    assert len(made) == expected
    assert sentry_events.transactions == []


def test_sampled_requests_still_make_complete_transactions(
    sentry_events: CapturedEnvelopes, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=1.0)
    made = _count_transactions(monkeypatch)
    with TestClient(app) as client:
        for n in range(5):
            client.get(f"/orders/{n}")
    assert len(made) == 5
    assert len(sentry_events.transactions) == 5
    transaction = sentry_events.transactions[0]
    assert transaction["transaction"] == "/orders/{order_id}"
    assert transaction["transaction_info"] == {"source": "route"}
    trace = transaction["contexts"]["trace"]
    assert trace["op"] == "http.server"
    assert trace["origin"] == "auto.http.starlette"
    assert trace["status"] == "ok"
    assert trace["data"]["http.response.status_code"] == 200
    assert transaction["request"]["url"].endswith("/orders/0")
    assert transaction["tags"]["endpoint"] == "GET /orders/{order_id}"


def test_head_sampling_agrees_with_the_sdk_decision(sentry_events: CapturedEnvelopes) -> None:
    """Our decision before a transaction exists == the SDK's when it starts one."""
    sentry_sdk.init(dsn=DSN, traces_sample_rate=0.3)
    sampler = HeadSampler()
    asgi_scope = {"type": "http", "path": "/x"}
    sampled = 0
    for _ in range(400):  # traces started here
        ours, context, _ = sampler.decide(asgi_scope, None)
        assert isinstance(context, HeadOfTrace)
        transaction = sentry_sdk.tracing.Transaction(
            name="x", trace_id=context.trace_id, baggage=context.transaction_baggage()
        )
        with sentry_sdk.start_transaction(transaction):
            pass
        assert transaction.sampled == ours
        sampled += ours
    assert 80 < sampled < 160  # about 30%, so both answers were compared
    rng = random.Random(7)
    for _ in range(200):  # traces continued from a caller that left the decision to us
        headers = {"sentry-trace": f"{uuid.UUID(int=rng.getrandbits(128)).hex}-{'b' * 16}"}
        ours, context, _ = sampler.decide(
            asgi_scope, PropagationContext.from_incoming_data(headers)
        )
        transaction = sentry_sdk.continue_trace(headers, name="x")
        with sentry_sdk.start_transaction(transaction):
            pass
        assert transaction.sampled == ours


def _sampled_request(
    monkeypatch: pytest.MonkeyPatch,
    captured: CapturedEnvelopes,
    headers: dict[str, str],
    downsample_factor: int,
    decided: bool,
) -> tuple[dict[str, Any], dict[str, Any], float | None]:
    """One sampled request: its transaction, its envelope's `trace` header and its sample rate.

    `decided=False` makes the middleware leave the decision to `start_transaction` again, as it
    did before `DecidedTransaction`."""
    app = FastAPI()
    rates: list[float | None] = []

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        transaction = sentry_sdk.get_current_scope().transaction
        rates.append(None if transaction is None else transaction.sample_rate)
        with sentry_sdk.start_span(op="db", name="select 1"):  # recorded by the transaction
            pass
        return {"item_id": item_id}

    fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=0.5, release="shop@1")
    client = sentry_sdk.get_client()
    assert client.monitor is not None
    monkeypatch.setattr(client.monitor, "_downsample_factor", downsample_factor)
    sampler = client.options["traces_sampler"]
    calls: list[object] = []

    def counting_sampler(context: dict[str, Any]) -> float:
        calls.append(context)
        return float(sampler(context))

    client.options["traces_sampler"] = counting_sampler
    if not decided:
        decide = HeadSampler.decide
        monkeypatch.setattr(HeadSampler, "decide", lambda self, *a: (*decide(self, *a)[:2], None))
    random.seed(3)  # our dice for a trace started here: 0.237964, under 0.5 and 0.25
    assert call(app, "GET", "/items/1", {**headers, "x-request-id": "r1"}) == 200
    monkeypatch.undo()
    sentry_sdk.flush()
    envelope = [e for e in captured.envelopes if e.items[0].type == "transaction"][-1]
    transaction = json.loads(envelope.items[0].get_bytes())
    assert len(calls) == (1 if decided else 2)
    return transaction, dict(envelope.headers["trace"]), rates[0]


def _without_ids(event: dict[str, Any]) -> dict[str, Any]:
    event = {
        k: v for k, v in event.items() if k not in ("event_id", "timestamp", "start_timestamp")
    }
    trace = dict(event["contexts"]["trace"])
    trace.pop("span_id")
    trace.pop("trace_id")
    event["contexts"] = {**event["contexts"], "trace": trace}
    varying = ("span_id", "parent_span_id", "trace_id", "timestamp", "start_timestamp")
    event["spans"] = [
        {k: v for k, v in span.items() if k not in varying} for span in event["spans"]
    ]
    return event


@pytest.mark.lean_only
@pytest.mark.parametrize("downsample_factor", [0, 1])
@pytest.mark.parametrize(
    "headers",
    [
        {},  # a trace started here
        {  # the caller sampled
            "sentry-trace": f"{'a' * 32}-{'b' * 16}-1",
            "baggage": f"sentry-trace_id={'a' * 32},sentry-sample_rand=0.1,sentry-sampled=true",
        },
        {  # the caller left the decision to us, with its dice
            "sentry-trace": f"{'a' * 32}-{'b' * 16}",
            "baggage": f"sentry-trace_id={'a' * 32},sentry-sample_rand=0.1,sentry-sample_rate=0.7",
        },
    ],
    ids=["head", "parent-sampled", "parent-undecided"],
)
def test_a_decided_transaction_is_the_one_the_sdk_samples(
    monkeypatch: pytest.MonkeyPatch,
    sentry_events: CapturedEnvelopes,
    headers: dict[str, str],
    downsample_factor: int,
) -> None:
    """Not running the traces sampler twice, nor `start_transaction` (`start_sampled`),
    changes nothing: the event and its spans, the dynamic sampling context (rate, decision,
    dice) and the transaction's sample rate, also under backpressure; only the second call of
    the traces sampler is gone."""
    before = _sampled_request(monkeypatch, sentry_events, headers, downsample_factor, False)
    after = _sampled_request(monkeypatch, sentry_events, headers, downsample_factor, True)
    assert len(sentry_events.transactions) == 2
    assert _without_ids(after[0]) == _without_ids(before[0])
    trace_before, trace_after = before[1], after[1]
    assert trace_after.pop("trace_id") == after[0]["contexts"]["trace"]["trace_id"]
    assert trace_before.pop("trace_id") == before[0]["contexts"]["trace"]["trace_id"]
    assert trace_after == trace_before
    assert "sample_rate" in trace_after
    assert after[2] == before[2] is not None
    assert [span["description"] for span in after[0]["spans"]] == ["select 1"]


def test_start_sampled_leaves_transaction_profiling_to_the_sdk(
    monkeypatch: pytest.MonkeyPatch, sentry_events: CapturedEnvelopes
) -> None:
    """Only `start_transaction` makes the `Profile` that transaction-based profiling sends."""
    from sentry_sdk.profiler import transaction_profiler

    # the SDK keeps its transaction profiler's scheduler module-wide, from whichever earlier
    # test of the session set one up: this test starts from none
    monkeypatch.setattr(transaction_profiler, "_scheduler", None)
    sentry_sdk.init(dsn=DSN, traces_sample_rate=1.0)
    scope = sentry_sdk.get_current_scope()
    assert start_sampled(DecidedTransaction(1.0, name="plain"), scope)
    monkeypatch.setattr(transaction_profiler, "_scheduler", object())
    profiled = DecidedTransaction(1.0, name="profiled")
    assert not start_sampled(profiled, scope)
    assert profiled._span_recorder is None  # untouched, for start_transaction to start


def test_ids_made_without_uuid4_have_the_sdks_shape() -> None:
    trace_ids = {HeadOfTrace(0.5, 1.0, True).trace_id for _ in range(1000)}
    span_ids = {new_span_id() for _ in range(1000)}
    assert len(trace_ids) == len(span_ids) == 1000
    assert all(len(t) == 32 and int(t, 16) for t in trace_ids)
    assert all(len(s) == 16 and int(s, 16) for s in span_ids)
    assert {len(uuid.uuid4().hex), len(uuid.uuid4().hex[16:])} == {32, 16}


def test_an_unsampled_head_tells_downstream_services_not_to_sample(
    sentry_events: CapturedEnvelopes,
) -> None:
    sentry_sdk.init(dsn=DSN, traces_sample_rate=0.000001, release="shop@1")
    sampled, context, _ = HeadSampler().decide({"type": "http", "path": "/x"}, None)
    assert not sampled
    headers = dict(context.iter_headers())
    assert headers["sentry-trace"].endswith("-0")
    baggage = {
        key: unquote(value)
        for key, value in (item.split("=", 1) for item in headers["baggage"].split(","))
    }
    assert baggage["sentry-sampled"] == "false"
    assert baggage["sentry-sample_rate"] == "1e-06"
    assert float(baggage["sentry-sample_rand"]) >= 0.000001
    assert baggage["sentry-trace_id"] == context.trace_id
    assert baggage["sentry-release"] == "shop@1"


def test_an_incoming_trace_is_continued(sentry_events: CapturedEnvelopes) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=0.0)
    trace_id, parent = "a" * 32, "b" * 16
    # the caller decided to sample: that wins over our rate of 0
    assert call(app, "GET", "/orders/1", {"sentry-trace": f"{trace_id}-{parent}-1"}) == 200
    # the caller decided not to: no transaction, but the error joins the caller's trace
    assert call(app, "POST", "/orders/1/pay", {"sentry-trace": f"{trace_id}-{parent}-0"}) == 500
    (transaction,) = sentry_events.transactions
    assert transaction["contexts"]["trace"]["trace_id"] == trace_id
    assert transaction["contexts"]["trace"]["parent_span_id"] == parent
    (error,) = sentry_events.errors
    assert error["contexts"]["trace"]["trace_id"] == trace_id


def test_each_request_gets_its_own_trace_id(sentry_events: CapturedEnvelopes) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN, enable_tracing=False)
    for _ in range(3):
        assert call(app, "POST", "/orders/1/pay") == 500
    trace_ids = {event["contexts"]["trace"]["trace_id"] for event in sentry_events.errors}
    assert len(trace_ids) == 3


@pytest.mark.lean_only
def test_body_is_attached_only_when_the_app_read_it(sentry_events: CapturedEnvelopes) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN, enable_tracing=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.post("/ignore-body", json={"never": "read"})
        client.post("/read-body", json={"was": "read"})
        client.post("/read-body", data={"form": "field"})
        client.post("/read-body", content=b"x" * 20_000, headers={"content-type": "text/plain"})
    unread, json_body, form_body, too_big = sentry_events.errors
    assert "data" not in unread["request"]
    assert json_body["request"]["data"] == {"was": "read"}
    assert form_body["request"]["data"] == {"form": "field"}
    # over max_request_body_size ("medium", 10 kB): annotated as the SDK does, never kept
    assert too_big["request"].get("data", "") == ""
    assert too_big["_meta"]["request"]["data"][""]["rem"][0][0] == "!config"


def test_breadcrumbs_and_tags_stay_in_their_request(sentry_events: CapturedEnvelopes) -> None:
    app = FastAPI()

    @app.get("/mark/{n}")
    async def mark(n: int) -> None:
        sentry_sdk.add_breadcrumb(message=f"crumb {n}")
        sentry_sdk.set_tag("n", str(n))
        if n == 3:
            raise RuntimeError("third")

    fastapi_sentry.install(app, dsn=DSN, enable_tracing=False)
    sentry_sdk.add_breadcrumb(message="before any request")
    with TestClient(app, raise_server_exceptions=False) as client:
        for n in range(4):
            client.get(f"/mark/{n}")
    (event,) = sentry_events.errors
    assert [c["message"] for c in event["breadcrumbs"]["values"]] == ["crumb 3"]
    assert event["tags"]["n"] == "3"
    assert "n" not in Scope.get_isolation_scope()._tags


def test_release_health_counts_requests_per_outcome(sentry_events: CapturedEnvelopes) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN, enable_tracing=False, release="shop@1")
    _sessions.reset()
    with TestClient(app, raise_server_exceptions=False) as client:
        for n in range(5):
            client.get(f"/orders/{n}")
        client.get("/unavailable")  # reported, handled: errored
        client.post("/orders/1/pay", json={"sku": "x", "quantity": 1})  # unhandled: crashed
    flush(2.0)
    items = sentry_events.items("sessions")  # one per minute boundary crossed, then the rest
    assert items
    assert all(item["attrs"]["release"] == "shop@1" for item in items)
    totals: dict[str, int] = {}
    for bucket in (bucket for item in items for bucket in item["aggregates"]):
        for key in ("exited", "errored", "crashed"):
            totals[key] = totals.get(key, 0) + bucket.get(key, 0)
    assert totals == {"exited": 5, "errored": 1, "crashed": 1}


def test_fast_fork_copies_exactly_what_the_sdk_copies() -> None:
    assert _scope_fork.FAST, "Scope's fields changed: review _scope_fork against Scope.__copy__"
    scope = Scope()
    scope.set_tag("a", "1")
    scope.set_context("ctx", {"k": "v"})
    scope.set_extra("e", 1)
    scope.add_breadcrumb(message="m")
    scope.add_event_processor(lambda event, hint: event)
    scope.set_user({"id": "u"})
    scope.set_attribute("attr", "v")
    ours, theirs = _scope_fork.fork(scope), scope.fork()
    for name in Scope.__slots__:
        mine, sdk = getattr(ours, name), getattr(theirs, name)
        if name in ("_breadcrumbs", "_event_processors", "_error_processors"):
            assert list(mine) == list(sdk), name
        else:
            assert mine == sdk, name
        if sdk is not getattr(scope, name):  # the SDK copies it: so must we
            assert mine is not getattr(scope, name), f"{name} is shared with the parent"
    assert list(_scope_fork.fork(scope, keep_breadcrumbs=False)._breadcrumbs) == []


def test_logs_sent_during_a_request_carry_the_request_attributes(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = FastAPI()

    @app.get("/log")
    async def log() -> None:
        logging.getLogger("shop.orders").warning("stock is low")

    fastapi_sentry.install(app, dsn=DSN, enable_tracing=False, enable_logs=True)
    with TestClient(app) as client:
        client.get("/log", headers={"user-agent": "log-test/1.0"})
    fastapi_sentry._setup.flush(2.0)
    (record,) = [log for log in sentry_events.logs if log["body"] == "stock is low"]
    attributes = {name: value["value"] for name, value in record["attributes"].items()}
    assert attributes["user_agent.original"] == "log-test/1.0"
    assert attributes["sentry.is_localhost"] is False  # "testserver" is not a local host


@pytest.mark.lean_only
def test_the_user_from_starlettes_authentication_middleware(
    sentry_events: CapturedEnvelopes,
) -> None:
    from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.requests import HTTPConnection

    class HeaderBackend(AuthenticationBackend):
        async def authenticate(
            self, conn: HTTPConnection
        ) -> tuple[AuthCredentials, SimpleUser] | None:
            name = conn.headers.get("x-user")
            return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None

    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    app.add_middleware(AuthenticationMiddleware, backend=HeaderBackend())
    fastapi_sentry.install(app, dsn=DSN, enable_tracing=False, send_default_pii=True)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.get("/boom", headers={"x-user": "ann"})
        client.get("/boom")
    named, anonymous = sentry_events.errors
    assert named["user"] == {"username": "ann"}
    assert "user" not in anonymous


def test_concurrent_requests_keep_their_tags_breadcrumbs_user_and_spans(
    sentry_events: CapturedEnvelopes,
) -> None:
    """Two requests in flight at once, each writing to both scopes while the other runs."""
    app = FastAPI()
    both_started = asyncio.Event()
    started: list[str] = []

    @app.get("/mark/{name}")
    async def mark(name: str) -> None:
        sentry_sdk.set_tag("who", name)  # the isolation scope
        sentry_sdk.set_user({"id": name})
        sentry_sdk.add_breadcrumb(message=f"crumb {name}")
        sentry_sdk.get_current_scope().set_extra("who", name)  # the current scope
        with sentry_sdk.start_span(op="work", name=name):
            started.append(name)
            if len(started) == 2:
                both_started.set()
            await both_started.wait()  # the other request writes meanwhile
            raise RuntimeError(name)

    fastapi_sentry.install(app, dsn=DSN, enable_tracing=False)

    async def both() -> None:
        await asyncio.gather(*(_call_async(app, f"/mark/{name}") for name in ("a", "b")))

    asyncio.run(both())
    by_name = {event["exception"]["values"][0]["value"]: event for event in sentry_events.errors}
    assert set(by_name) == {"a", "b"}
    for name, event in by_name.items():
        assert event["tags"]["who"] == name
        assert event["user"]["id"] == name
        assert event["extra"]["who"] == name
        assert [c["message"] for c in event["breadcrumbs"]["values"]] == [f"crumb {name}"]
        assert event["request"]["url"].endswith(f"/mark/{name}")
    assert by_name["a"]["tags"]["request_id"] != by_name["b"]["tags"]["request_id"]
    trace_ids = {event["contexts"]["trace"]["trace_id"] for event in by_name.values()}
    assert len(trace_ids) == 2
    assert "who" not in Scope.get_isolation_scope()._tags
    assert "who" not in Scope.get_current_scope()._extras


async def _call_async(app: Any, path: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with contextlib.suppress(RuntimeError):
        await app(scope, receive, send)
    return int(sent[0]["status"])


def test_fast_fork_of_an_empty_scope_shares_no_container() -> None:
    """A request's parent scopes are mostly empty: the new, empty containers are its own."""
    parent = Scope()
    for forked in (_scope_fork.fork(parent), _scope_fork.fork(parent, keep_breadcrumbs=False)):
        for name in Scope.__slots__:
            value = getattr(parent, name)
            if isinstance(value, (dict, list, deque)):
                assert getattr(forked, name) is not value, f"{name} is shared with the parent"
                assert getattr(forked, name) == value, name
        forked.set_tag("t", "1")
        forked.add_event_processor(lambda event, hint: event)
        forked.set_attribute("a", "v")
    assert parent._tags == {}
    assert parent._event_processors == []
    assert parent._attributes == {}


def _session_totals(sentry_events: CapturedEnvelopes) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for item in sentry_events.items("sessions"):
        for bucket in item["aggregates"]:
            counts = totals.setdefault(bucket["started"], {})
            for key in ("exited", "errored", "crashed"):
                if key in bucket:
                    counts[key] = counts.get(key, 0) + bucket[key]
    return totals


@pytest.mark.lean_only
def test_release_health_counts_survive_a_flush_mid_minute(
    sentry_events: CapturedEnvelopes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The minute's counts handed over by a flush are not added to again: later requests in
    the same minute start a new count, sent by the next flush."""
    fastapi_sentry.install(make_app(), dsn=DSN, enable_tracing=False, release="shop@1")
    monkeypatch.setattr(_sessions, "_time", lambda: 1_800_000_010.0)
    _sessions.reset()
    for _ in range(3):
        _sessions.record("exited")
    _sessions.flush()
    _sessions.record("exited")
    _sessions.record("errored")
    _sessions.flush()
    flush(2.0)
    assert _session_totals(sentry_events) == {
        "2027-01-15T08:00:00.000000Z": {"exited": 4, "errored": 1}
    }
    assert len(sentry_events.items("sessions")) == 2


@pytest.mark.lean_only
def test_release_health_counts_each_minute_apart(
    sentry_events: CapturedEnvelopes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request in a new minute hands the minute before over and counts in its own."""
    fastapi_sentry.install(make_app(), dsn=DSN, enable_tracing=False, release="shop@1")
    now = [1_800_000_059.5]
    monkeypatch.setattr(_sessions, "_time", lambda: now[0])
    _sessions.reset()
    _sessions.record("exited")
    now[0] = 1_800_000_060.0  # the next minute, to the second
    _sessions.record("crashed")
    assert len(sentry_events.items("sessions")) == 1  # handed over as the new minute began
    now[0] = 1_800_000_059.9  # the clock stepped back: counted in its own minute, not this one
    _sessions.record("exited")
    _sessions.flush()
    flush(2.0)
    assert _session_totals(sentry_events) == {
        "2027-01-15T08:00:00.000000Z": {"exited": 2},
        "2027-01-15T08:01:00.000000Z": {"crashed": 1},
    }


def test_event_ids_are_the_uuid4_the_standard_library_makes_of_the_same_bits(
    monkeypatch: pytest.MonkeyPatch, sentry_events: CapturedEnvelopes
) -> None:
    """`sampling.install_event_ids` changes how an event id is drawn, not what it is."""
    rng = random.Random(5)
    monkeypatch.setattr(_sampling, "_getrandbits", rng.getrandbits)
    made = [_sampling.uuid4() for _ in range(200)]
    rng.seed(5)
    assert made == [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(200)]
    assert [u.hex for u in made] == [str(u).replace("-", "") for u in made]
    monkeypatch.undo()
    fastapi_sentry.install(FastAPI(), dsn=DSN)
    event_id = sentry_sdk.capture_message("an id")
    sentry_sdk.flush()
    assert event_id is not None
    assert uuid.UUID(event_id).version == 4
    assert [e["event_id"] for e in sentry_events.messages] == [event_id]
    assert len({sentry_sdk.capture_message("x") for _ in range(100)}) == 100


def test_ids_do_not_follow_a_seeded_random_module_or_repeat_in_a_forked_child() -> None:
    """An app that seeds `random` (two workers doing `random.seed(0)`), or a prefork pool, must
    not draw the same event or trace ids twice: Sentry would keep only one of the events."""
    random.seed(0)
    first = [_sampling.uuid4() for _ in range(3)] + [_sampling.new_trace_id()]
    random.seed(0)
    again = [_sampling.uuid4() for _ in range(3)] + [_sampling.new_trace_id()]
    assert not set(map(str, first)) & set(map(str, again))

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, then out without running the parent's cleanup
        os.write(write, _sampling.uuid4().hex.encode())
        os._exit(0)
    os.close(write)
    parent_next = _sampling.uuid4().hex
    with os.fdopen(read, "rb") as answer:
        child_first = answer.read().decode()
    os.waitpid(pid, 0)
    assert len(child_first) == 32
    assert child_first != parent_next
