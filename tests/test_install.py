"""install(): what the SDK actually produces for a FastAPI app, captured in memory."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys
import textwrap
from typing import Any

import httpx
import pytest
import sentry_sdk
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel

import fastapi_sentry
from fastapi_sentry.testing import CapturedEnvelopes
from tests.support.receiver import Receiver

DSN = "http://publickey@127.0.0.1:9/1"  # never contacted: capture replaces the transport


class Order(BaseModel):
    sku: str
    quantity: int


class ExpectedBusinessError(Exception):
    pass


def make_app() -> FastAPI:
    app = FastAPI()

    def current_user(request: Request) -> dict[str, Any]:
        user = {"id": request.headers.get("x-test-user", "anonymous"), "email": "ann@example.com"}
        request.state.user = user
        return user

    @app.get("/orders/{order_id}")
    async def get_order(
        order_id: int, user: dict[str, Any] = Depends(current_user)
    ) -> dict[str, Any]:
        if order_id == 0:
            raise RuntimeError(f"order {order_id} exploded")
        return {"order_id": order_id}

    @app.post("/orders")
    async def create_order(order: Order) -> dict[str, Any]:
        return {"sku": order.sku}

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(status_code=404, detail="no such thing")

    @app.get("/unavailable")
    async def unavailable() -> None:
        raise HTTPException(status_code=503, detail="try later")

    @app.get("/expected")
    async def expected() -> None:
        raise ExpectedBusinessError("the customer did something odd")

    @app.get("/health")
    async def health_like() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/slow/{n}")
    async def slow(n: int, user: dict[str, Any] = Depends(current_user)) -> None:
        await asyncio.sleep(0.01 * (n % 5))
        raise RuntimeError(f"slow failure {n}")

    @app.get("/after-response")
    async def after_response(tasks: BackgroundTasks) -> JSONResponse:
        def fail_later() -> None:
            raise RuntimeError("background job failed")

        tasks.add_task(fail_later)
        return JSONResponse({"detail": "conflict"}, status_code=409, background=tasks)

    return app


def test_unhandled_error_is_reported_once_with_request_context(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=0.0)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/orders/0", headers={"x-test-user": "u-42"})
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32
    (event,) = sentry_events.errors
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["tags"]["request_id"] == request_id
    assert event["tags"]["endpoint"] == "GET /orders/{order_id}"
    assert event["transaction"] == "/orders/{order_id}"
    assert event["user"] == {"id": "u-42"}  # the email stays home: send_default_pii is off


def test_user_email_is_sent_only_with_pii_on(sentry_events: CapturedEnvelopes) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN, send_default_pii=True, traces_sample_rate=0.0)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.get("/orders/0", headers={"x-test-user": "u-7"})
    (event,) = sentry_events.errors
    assert event["user"]["id"] == "u-7"
    assert event["user"]["email"] == "ann@example.com"


def test_user_from_bearer_jwt_claims_without_keeping_the_token(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    claims = base64.urlsafe_b64encode(json.dumps({"sub": "user-99"}).encode()).rstrip(b"=")
    token = f"eyJhbGciOiJIUzI1NiJ9.{claims.decode()}.c2lnbmF0dXJl"
    fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=0.0)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.get("/boom", headers={"Authorization": f"Bearer {token}"})
    (event,) = sentry_events.errors
    assert event["user"] == {"id": "user-99"}
    assert token not in json.dumps(event)


def test_client_errors_are_not_reported_server_errors_are(sentry_events: CapturedEnvelopes) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=0.0)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/missing").status_code == 404
        assert client.get("/no-such-route").status_code == 404
        assert client.post("/orders", json={"sku": "A-1"}).status_code == 422
        assert client.get("/unavailable").status_code == 503
    (event,) = sentry_events.errors
    assert event["exception"]["values"][-1]["type"] == "HTTPException"
    assert event["tags"]["http.status_code"] == "503"
    assert event["tags"]["endpoint"] == "GET /unavailable"


def test_reported_status_codes_and_exception_types_are_configurable(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = make_app()
    fastapi_sentry.install(
        app,
        dsn=DSN,
        traces_sample_rate=0.0,
        failed_request_status_codes=[404],
        ignored_exceptions=[f"{__name__}.ExpectedBusinessError"],
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        client.get("/missing")
        client.get("/unavailable")
        client.get("/expected")
    (event,) = sentry_events.errors
    assert event["tags"]["http.status_code"] == "404"


def test_transactions_are_named_by_route_and_health_is_never_traced(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=1.0, mount_endpoints=False)
    with TestClient(app) as client:
        client.get("/health")
        client.get("/orders/5")
        client.get("/health")
    names = [t["transaction"] for t in sentry_events.transactions]
    assert names == ["/orders/{order_id}"]
    assert sentry_events.transactions[0]["tags"]["endpoint"] == "GET /orders/{order_id}"


def test_untraced_decision_is_made_in_the_sampler() -> None:
    from fastapi_sentry._filters import make_traces_sampler

    settings = fastapi_sentry.load_settings(traces_sample_rate=0.3)
    sampler = make_traces_sampler(settings)
    assert sampler({"asgi_scope": {"path": "/static/app.js"}}) == 0.0
    assert sampler({"asgi_scope": {"path": "/statics"}}) == 0.3
    assert sampler({"asgi_scope": {"path": "/health"}}) == 0.0
    assert sampler({"asgi_scope": {"path": "/orders/1"}, "parent_sampled": True}) == 1.0
    assert sampler({"asgi_scope": {"path": "/orders/1"}, "parent_sampled": False}) == 0.0
    assert sampler({"asgi_scope": {"path": "/orders/1"}}) == 0.3


def test_incoming_request_id_is_kept_when_sane(sentry_events: CapturedEnvelopes) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=0.0)
    with TestClient(app, raise_server_exceptions=False) as client:
        kept = client.get("/orders/0", headers={"X-Request-ID": "req-123.abc"})
        replaced = client.get("/orders/0", headers={"X-Request-ID": "bad id <script>"})
    assert kept.headers["x-request-id"] == "req-123.abc"
    assert replaced.headers["x-request-id"] != "bad id <script>"
    assert [e["tags"]["request_id"] for e in sentry_events.errors] == [
        "req-123.abc",
        replaced.headers["x-request-id"],
    ]


def test_install_twice_is_harmless(sentry_events: CapturedEnvelopes) -> None:
    app = make_app()
    first = fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=0.0)
    second = fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=0.0)
    assert first is second
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/orders/0")
        assert client.get("/sentry/status").json()["enabled"] is True
    assert response.headers.get_list("x-request-id") == [response.headers["x-request-id"]]
    assert len(sentry_events.errors) == 1


def test_status_of_a_failed_response_is_recorded_on_the_scope(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=0.0)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/after-response").status_code == 409
    (event,) = sentry_events.errors
    assert event["exception"]["values"][-1]["value"] == "background job failed"
    assert event["tags"]["http.status_code"] == "409"
    assert event["contexts"]["response"] == {"status_code": 409}


def test_concurrent_requests_never_share_scope_data(sentry_events: CapturedEnvelopes) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=0.0)

    async def drive() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(
                *(client.get(f"/slow/{n}", headers={"x-test-user": f"user-{n}"}) for n in range(40))
            )

    responses = asyncio.run(drive())
    by_request_id = {r.headers["x-request-id"]: r for r in responses}
    assert len(by_request_id) == 40
    assert len(sentry_events.errors) == 40
    for event in sentry_events.errors:
        n = event["exception"]["values"][-1]["value"].rsplit(" ", 1)[1]
        assert event["user"] == {"id": f"user-{n}"}
        assert event["tags"]["request_id"] in by_request_id
        assert event["request"]["url"].endswith(f"/slow/{n}")
    assert len({e["tags"]["request_id"] for e in sentry_events.errors}) == 40


def test_lifespan_shutdown_flushes_what_is_queued() -> None:
    with Receiver(delay=0.3) as receiver:
        app = FastAPI()
        fastapi_sentry.install(app, dsn=receiver.dsn, shutdown_timeout=5.0)
        with TestClient(app):
            for n in range(5):
                sentry_sdk.capture_message(f"queued {n}")
        # the lifespan's shutdown waited for delivery: nothing is still in flight
        assert len(receiver.bodies) == 5


def test_logging_errors_become_events_and_info_becomes_breadcrumbs(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = FastAPI()
    fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=0.0)
    log = logging.getLogger("shop.orders")
    log.setLevel(logging.INFO)
    log.info("loaded basket")
    log.error("payment provider said no")
    (event,) = sentry_events.events
    assert event["logentry"]["message"] == "payment provider said no"
    assert [c["message"] for c in event["breadcrumbs"]["values"]] == ["loaded basket"]


def test_disabled_install_leaves_the_app_alone_and_imports_nothing() -> None:
    script = textwrap.dedent(
        """
        import logging, sys
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
        from fastapi import FastAPI
        from fastapi.testclient import TestClient
        import fastapi_sentry

        def make():
            app = FastAPI()

            @app.get("/")
            def root():
                return {"ok": True}

            return app

        def layers(app):
            layer, names = app.middleware_stack, []
            while layer is not None and len(names) < 20:
                names.append(type(layer).__name__)
                layer = getattr(layer, "app", None)
            return names

        plain = make()
        with TestClient(plain) as client:
            client.get("/")
        app = make()
        fastapi_sentry.install(app)
        assert app.user_middleware == []
        with TestClient(app) as client:
            response = client.get("/")
            assert client.get("/health").json()["status"] == "healthy"
        assert layers(app) == layers(plain), (layers(app), layers(plain))
        assert response.json() == {"ok": True}
        assert "x-request-id" not in response.headers
        fastapi_sentry.capture_exception(RuntimeError("ignored"))
        print("SENTRY_SDK_IMPORTED=" + str("sentry_sdk" in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "SENTRY_SDK_IMPORTED=False" in result.stdout
    assert "INFO fastapi_sentry._setup Sentry error tracking is off: SENTRY_DSN is not set" in (
        result.stderr
    )


def test_bad_settings_stop_install_with_one_line() -> None:
    with pytest.raises(fastapi_sentry.ConfigError) as caught:
        fastapi_sentry.install(FastAPI(), dsn="https://k@host/1", traces_sample_rate=3)
    assert str(caught.value) == (
        "Invalid Sentry settings: SENTRY_TRACES_SAMPLE_RATE must be between 0.0 and 1.0, got 3"
    )


def test_the_apps_own_routes_are_matched_before_ours(sentry_events: CapturedEnvelopes) -> None:
    app = FastAPI()
    fastapi_sentry.install(app, dsn=DSN, traces_sample_rate=0.0)

    @app.get("/health")
    async def own_health() -> dict[str, str]:
        return {"mine": "yes"}

    with TestClient(app) as client:
        assert client.get("/health").json() == {"mine": "yes"}
        assert client.get("/sentry/status").json()["enabled"] is True
    assert app.router.routes[-1].__class__.__name__ == "_IncludedRouter"


def test_prefixed_probes_are_never_traced() -> None:
    from fastapi_sentry._filters import make_traces_sampler

    settings = fastapi_sentry.load_settings(traces_sample_rate=1.0, endpoints_prefix="/ops")
    sampler = make_traces_sampler(settings)
    assert sampler({"asgi_scope": {"path": "/ops/health"}}) == 0.0
    assert sampler({"asgi_scope": {"path": "/ops/sentry/status"}}) == 0.0
    assert sampler({"asgi_scope": {"path": "/ops/other"}}) == 1.0


def test_sdk_debug_records_are_not_even_built_unless_debug_is_on() -> None:
    """sentry-sdk's logger builds a LogRecord per debug call and then drops it (three per sampled
    request); with debug off we keep them from being built, with debug on they are shown."""
    built: list[str] = []
    shown: list[str] = []
    make_record = logging.getLogRecordFactory()

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if record.name == "sentry_sdk.errors":
            built.append(record.getMessage())
        return record

    class Shown(logging.Handler):  # what passes the SDK's filter reaches its handlers
        def emit(self, record: logging.LogRecord) -> None:
            shown.append(record.getMessage())

    sdk_logger = logging.getLogger("sentry_sdk.errors")
    handler = Shown()
    sdk_logger.addHandler(handler)
    logging.setLogRecordFactory(counting)
    try:
        with Receiver() as receiver:
            for debug in (False, True):
                app = make_app()
                fastapi_sentry.install(
                    app,
                    dsn=receiver.dsn,
                    traces_sample_rate=1.0,
                    profiles_sample_rate=0.0,  # a profiler session would send after the test
                    debug=debug,
                )
                built.clear()  # what init logs is built before install() can set the level
                shown.clear()
                with TestClient(app) as client:
                    for n in range(1, 6):
                        client.get(f"/orders/{n}")
                sentry_sdk.flush(timeout=5)
                receiver.wait_for_items("transaction", 5 if not debug else 10)
                if debug:
                    assert any("Sending envelope" in m for m in shown), shown
                else:
                    assert built == []
    finally:
        logging.setLogRecordFactory(make_record)
        sdk_logger.removeHandler(handler)
