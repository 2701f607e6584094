"""Error and message events sent during a request say how long the request had been running.

Run on the lean path and, by tests/fastpath/test_sdk_seam.py, on the fallback too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI

import fastapi_sentry
from tests.support.receiver import Receiver
from tests.support.server import serve

#: How long the endpoint waits before it sends its event: small, and only a lower bound is checked.
WAIT_SECONDS = 0.05


def make_app() -> FastAPI:
    app = FastAPI()

    def waited() -> float:
        """Waits on an event nobody sets; the milliseconds this request really spent waiting."""
        start = time.perf_counter()
        threading.Event().wait(WAIT_SECONDS)
        return (time.perf_counter() - start) * 1000

    @app.get("/message")
    def message() -> dict[str, float]:
        waited_ms = waited()
        sentry_sdk.capture_message("slow checkout")
        return {"waited_ms": waited_ms}

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError(f"checkout failed after waiting {waited()!r} ms")

    return app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def test_a_message_event_carries_the_time_the_request_had_run(receiver: Receiver) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=receiver.dsn, traces_sample_rate=0.0)
    with serve(app) as url:
        response = httpx.get(url + "/message")
    waited_ms = response.json()["waited_ms"]
    (event,) = receiver.envelope_items("event")
    assert event["message"] == "slow checkout"
    elapsed_ms = event["contexts"]["request_timing"]["elapsed_ms"]
    assert isinstance(elapsed_ms, float)
    assert elapsed_ms >= waited_ms >= WAIT_SECONDS * 1000


def test_an_unhandled_error_carries_the_time_the_request_had_run(receiver: Receiver) -> None:
    app = make_app()
    fastapi_sentry.install(app, dsn=receiver.dsn, traces_sample_rate=0.0)
    with serve(app) as url:
        response = httpx.get(url + "/crash")
    assert response.status_code == 500
    (event,) = receiver.envelope_items("event")
    value = event["exception"]["values"][-1]["value"]
    waited_ms = float(value.rsplit(" after waiting ", 1)[1].split()[0])
    elapsed_ms = event["contexts"]["request_timing"]["elapsed_ms"]
    assert isinstance(elapsed_ms, float)
    assert elapsed_ms >= waited_ms >= WAIT_SECONDS * 1000
