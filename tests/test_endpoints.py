"""GET /health, /sentry/status and /sentry-debug, served by a real uvicorn on 127.0.0.1 after
`install(app)`, with the events the SDK produced captured in memory."""

from __future__ import annotations

import asyncio
import socket
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sentry_sdk
import uvicorn
from fastapi import FastAPI

import fastapi_sentry
from fastapi_sentry import ConfigError, add_health_check, load_settings, operation
from fastapi_sentry._endpoints import DEBUG_DISABLED_DETAIL, DEBUG_SENT_DETAIL, build_router
from fastapi_sentry._helpers import CONTEXT_NAME
from fastapi_sentry.testing import CapturedEnvelopes
from tests.test_helpers import run_python_ok

# every test here captures: nothing may try the real transport
pytestmark = pytest.mark.usefixtures("sentry_events")

KEY = "0123456789abcdef0123456789abcdef"
DSN = f"http://{KEY}@127.0.0.1:9/77"  # never contacted: capture replaces the transport


class Server:
    """uvicorn serving `app` on a free 127.0.0.1 port in a thread, stopped on exit."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)
        self.url = ""

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start on 127.0.0.1 within 10 s")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "uvicorn did not stop"


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Transactions are finished after the response is sent: poll, bounded."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the time limit")
        time.sleep(0.01)


def active_app(**overrides: Any) -> FastAPI:
    app = FastAPI(version="9.9.9")
    options: dict[str, Any] = {"dsn": DSN, "release": "shop@1.2.3", "traces_sample_rate": 0.0}
    options.update(overrides)
    fastapi_sentry.install(app, **options)
    return app


# --- /health ----------------------------------------------------------------------------------


def test_health_reports_each_check_and_the_built_in_sentry_check(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = active_app()

    async def database() -> bool:
        return True

    add_health_check(app, "database", database)
    add_health_check(app, "redis", lambda: None, critical=False)
    with Server(app) as client:
        response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["version"] == "shop@1.2.3"
    assert body["environment"] == "production"
    assert set(body["checks"]) == {"database", "redis", "sentry"}
    assert body["checks"]["sentry"] == {
        "healthy": True,
        "critical": False,
        "duration_ms": body["checks"]["sentry"]["duration_ms"],
        "message": "Sentry client active",
    }
    assert body["checks"]["database"]["critical"] is True
    assert body["checks"]["redis"]["healthy"] is True
    assert sentry_events.events == []  # a health probe is not an error


def test_failing_critical_check_is_unhealthy_503_without_leaking_the_message() -> None:
    app = active_app()

    def database() -> None:
        raise ConnectionError("postgresql://app:s3cret-pw@db:5432/app refused")

    add_health_check(app, "database", database)
    with Server(app) as client:
        response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"]["healthy"] is False
    assert body["checks"]["database"]["message"] == "raised ConnectionError"
    assert "s3cret" not in response.text


def test_failing_non_critical_check_is_degraded_200() -> None:
    app = active_app()
    add_health_check(app, "broker", lambda: False, critical=False)
    add_health_check(app, "database", lambda: True)
    with Server(app) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["broker"]["message"] == "returned False"


def test_checks_run_concurrently_and_a_hung_one_times_out_once() -> None:
    app = active_app()
    release = threading.Event()
    sync_started = threading.Event()
    async_started = threading.Event()
    calls: list[str] = []

    def hung() -> None:
        calls.append("hung")
        release.wait(timeout=30)

    def slow_sync() -> None:
        # passes only if the async check runs while this one is still running
        sync_started.set()
        if not async_started.wait(timeout=5):
            raise RuntimeError("the async check never started while this one ran")

    async def slow_async() -> None:
        async_started.set()
        # waits for the sync check without blocking the loop; run one after the other, it
        # would wait for a check that has not started yet
        for _ in range(500):
            if sync_started.is_set():
                return
            await asyncio.sleep(0.01)
        raise RuntimeError("the sync check never started while this one ran")

    add_health_check(app, "hung", hung, timeout=0.5)
    add_health_check(app, "slow_sync", slow_sync)
    add_health_check(app, "slow_async", slow_async)
    try:
        with Server(app) as client:
            first = client.get("/health")
            second = client.get("/health")
    finally:
        release.set()  # let the abandoned worker thread finish
    assert first.status_code == 503
    checks = first.json()["checks"]
    assert checks["hung"]["message"] == "timed out after 0.5 s"
    assert checks["slow_sync"]["healthy"] is True
    assert checks["slow_async"]["healthy"] is True
    # the first call's thread is still blocked: no second thread is started for it
    assert second.json()["checks"]["hung"]["message"].startswith("still running")
    assert calls == ["hung"]


def test_sentry_check_when_disabled_and_when_configured_but_not_initialised() -> None:
    off = FastAPI()
    fastapi_sentry.install(off)
    broken = FastAPI()  # a DSN in the settings, but nobody initialised the SDK
    broken.include_router(build_router(load_settings(dsn=DSN)))
    with Server(off) as client:
        disabled = client.get("/health").json()
    with Server(broken) as client:
        response = client.get("/health")
    assert disabled["status"] == "healthy"
    assert disabled["checks"]["sentry"]["message"] == "Sentry is disabled (SENTRY_DSN is not set)"
    assert response.status_code == 200  # the Sentry check is never critical
    assert response.json()["status"] == "degraded"
    assert "not initialised" in response.json()["checks"]["sentry"]["message"]


def test_add_health_check_rejects_bad_registrations() -> None:
    app = FastAPI()
    add_health_check(app, "db", lambda: True)
    with pytest.raises(ConfigError, match="'db' is already registered"):
        add_health_check(app, "db", lambda: True)
    with pytest.raises(ConfigError, match="taken by the built-in Sentry check"):
        add_health_check(app, "sentry", lambda: True)
    with pytest.raises(ConfigError, match="not callable"):
        add_health_check(app, "cache", "redis://localhost")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="timeout 0"):
        add_health_check(app, "cache", lambda: True, timeout=0)
    with pytest.raises(ConfigError, match="is empty"):
        add_health_check(app, " ", lambda: True)
    assert FastAPI().state._state.get("fastapi_sentry_health_checks") is None  # per app


# --- /sentry/status ---------------------------------------------------------------------------


def test_status_reports_the_live_configuration_and_never_the_key(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = active_app(environment="staging", traces_sample_rate=0.25, error_sample_rate=0.5)
    with Server(app) as client:
        response = client.get("/sentry/status")
    assert response.status_code == 200
    body = response.json()
    assert body["enabled"] is True
    assert body["environment"] == "staging"
    assert body["release"] == "shop@1.2.3"
    assert body["error_sample_rate"] == 0.5
    assert body["traces_sample_rate"] == 0.25
    assert body["profiles_sample_rate"] == 0.5  # unset: the staging default
    assert body["dsn_host"] == "127.0.0.1:9"
    assert body["project_id"] == "77"
    assert {"fastapi", "starlette", "logging"} <= set(body["integrations"])
    assert body["last_event_id"] is None
    assert body["debug_endpoint"] is False
    assert KEY not in response.text


def test_status_and_health_when_disabled_never_import_sentry_sdk() -> None:
    script = textwrap.dedent(
        """
        import sys, threading, time
        import httpx, uvicorn
        from fastapi import FastAPI
        import fastapi_sentry

        app = FastAPI()
        fastapi_sentry.install(app)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            status = client.get("/sentry/status").json()
            health = client.get("/health")
            debug = client.get("/sentry-debug")
        server.should_exit = True
        thread.join(10)
        assert status["enabled"] is False and status["integrations"] == [], status
        assert health.status_code == 200 and health.json()["status"] == "healthy"
        assert debug.status_code == 404
        assert "sentry_sdk" not in sys.modules, "the disabled endpoints imported sentry_sdk"
        print("ok")
        """
    )
    run_python_ok(script)


# --- /sentry-debug ----------------------------------------------------------------------------


def test_debug_endpoint_reports_once_and_returns_the_event_id(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = active_app(environment="development")
    with Server(app) as client:
        response = client.get("/sentry-debug")
        status = client.get("/sentry/status").json()
    assert response.status_code == 500
    body = response.json()
    assert body["detail"] == DEBUG_SENT_DETAIL
    (event,) = sentry_events.errors  # exactly one: the integration did not report it again
    assert body["event_id"] == event["event_id"]
    assert event["exception"]["values"][-1]["type"] == "SentryDebugError"
    assert event["transaction"] == "/sentry-debug"
    assert event["tags"]["endpoint"] == "GET /sentry-debug"
    assert status["last_event_id"] == event["event_id"]
    assert status["debug_endpoint"] is True


def test_debug_endpoint_is_404_in_production() -> None:
    app = active_app(environment="production", debug=False)
    with Server(app) as client:
        assert client.get("/sentry-debug").status_code == 404


def test_debug_endpoint_opens_with_the_debug_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "true")
    app = FastAPI()
    fastapi_sentry.install(app)  # Sentry off: the endpoint says so instead of an event id
    with Server(app) as client:
        response = client.get("/sentry-debug")
    assert response.status_code == 500
    assert response.json() == {"detail": DEBUG_DISABLED_DETAIL, "event_id": None}


def test_endpoints_follow_the_prefix_and_can_be_turned_off() -> None:
    prefixed = active_app(endpoints_prefix="/ops")
    bare = FastAPI()
    fastapi_sentry.install(bare, mount_endpoints=False)
    with Server(prefixed) as client:
        assert client.get("/ops/health").status_code == 200
        assert client.get("/ops/sentry/status").status_code == 200
        assert client.get("/health").status_code == 404
    with Server(bare) as client:
        assert client.get("/health").status_code == 404
        assert client.get("/sentry/status").status_code == 404


# --- helpers inside real requests -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_operation_error_in_an_endpoint_is_reported_once(
    sentry_events: CapturedEnvelopes, kind: str
) -> None:
    app = active_app(traces_sample_rate=1.0)

    # A sync endpoint runs in a worker thread with a copied context, where the SDK's own
    # dedupe cannot see that `operation` already reported the error.
    if kind == "sync":

        @app.get("/charge")
        def charge_sync() -> None:
            with operation("Billing.charge", invoice=5):
                raise RuntimeError("card declined")

    else:

        @app.get("/charge")
        async def charge_async() -> None:
            with operation("Billing.charge", invoice=5):
                raise RuntimeError("card declined")

    with Server(app) as client:
        assert client.get("/charge").status_code == 500
        wait_for(lambda: len(sentry_events.transactions) == 1)
    (event,) = sentry_events.errors
    assert event["contexts"]["operation"]["invoice"] == 5
    assert event["transaction"] == "/charge"
    (transaction,) = sentry_events.transactions
    assert [s["description"] for s in transaction["spans"] if s["op"] == "function"] == [
        "Billing.charge"
    ]


def test_capture_exception_context_stays_on_its_event_within_a_request(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = active_app()

    @app.get("/two")
    async def two() -> dict[str, str]:
        fastapi_sentry.capture_exception(ValueError("first"), order_id=1)
        fastapi_sentry.capture_message("second")
        return {"ok": "yes"}

    with Server(app) as client:
        assert client.get("/two").status_code == 200
    first, second = sentry_events.events
    assert first["contexts"][CONTEXT_NAME] == {"order_id": 1}
    assert CONTEXT_NAME not in second["contexts"]
    assert first["tags"]["request_id"] == second["tags"]["request_id"]  # same request scope


def test_status_last_event_id_includes_errors_the_integration_reported(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = active_app()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unhandled")

    with Server(app) as client:
        # uvicorn drops the connection after an unhandled error: do not reuse it
        assert client.get("/boom", headers={"Connection": "close"}).status_code == 500
        status = client.get("/sentry/status").json()
    (event,) = sentry_events.errors
    assert status["last_event_id"] == event["event_id"]


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_trace_in_a_request_is_a_child_span_never_a_stray_transaction(
    sentry_events: CapturedEnvelopes, rate: float
) -> None:
    app = active_app(traces_sample_rate=rate)

    @fastapi_sentry.trace(op="db", name="load order")
    async def load() -> int:
        return 1

    @app.get("/order")
    async def order() -> dict[str, int]:
        return {"n": await load()}

    with Server(app) as client:
        assert client.get("/order").json() == {"n": 1}
    # stopping uvicorn waited for the request's task to end, so its transaction (if any) is taken
    sentry_sdk.flush()
    if not rate:
        assert sentry_events.transactions == []  # unsampled request: no transaction of its own
        return
    (transaction,) = sentry_events.transactions
    assert transaction["transaction"] == "/order"
    assert [(s["op"], s["description"]) for s in transaction["spans"] if s["op"] == "db"] == [
        ("db", "load order")
    ]


@pytest.mark.services
def test_health_checks_against_real_redis_and_postgresql(redis_url: str, postgres_url: str) -> None:
    import redis.asyncio
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from sqlalchemy import create_engine, text

    app = active_app()
    engine = create_engine(postgres_url, pool_pre_ping=True)
    closed_port = socket.socket()
    closed_port.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    broker = redis.Redis(
        port=closed_port.getsockname()[1], password="hunter2-secret", retry=Retry(NoBackoff(), 0)
    )

    def database() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    async def redis_ping() -> bool:
        async with redis.asyncio.Redis.from_url(redis_url) as cache:
            return bool(await cache.ping())

    add_health_check(app, "database", database)
    add_health_check(app, "redis", redis_ping)
    add_health_check(app, "broker", broker.ping, critical=False, timeout=2.0)
    try:
        with Server(app) as client:
            response = client.get("/health")
    finally:
        engine.dispose()
        broker.close()
        closed_port.close()
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["healthy"] is True
    assert body["checks"]["redis"]["healthy"] is True
    assert body["checks"]["broker"]["message"] == "raised ConnectionError"
    assert "hunter2" not in response.text
