"""A real uvicorn server on 127.0.0.1, real PostgreSQL, Redis and an HTTP peer, and sentry-sdk's
real HTTP transport to a receiver: what every integration puts on the wire."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy
import uvicorn
from fastapi import FastAPI

import fastapi_sentry
from tests.support.ports import free_port
from tests.support.receiver import Receiver


class ServerThread:
    """uvicorn in a thread, stopped through its own shutdown path (so the lifespan runs)."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start within 10 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class Peer:
    """An external API on 127.0.0.1 that answers 502 to everything."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    external = Peer()
    yield external
    external.close()


def make_app(database_url: str, redis_url: str, peer_url: str) -> FastAPI:
    engine = sqlalchemy.create_engine(database_url)
    cache = redis.Redis.from_url(redis_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield  # the app's own lifespan still runs beside the flush
        engine.dispose()
        cache.close()

    app = FastAPI(lifespan=lifespan)
    log = logging.getLogger("shop.checkout")
    log.setLevel(logging.INFO)

    @app.get("/checkout/{basket_id}")
    def checkout(basket_id: int) -> dict[str, Any]:
        with engine.connect() as conn:
            total = conn.execute(sqlalchemy.text("SELECT 40 + :n AS total"), {"n": basket_id})
            amount = total.scalar_one()
        cache.set(f"basket:{basket_id}", amount, ex=30)
        log.info("basket priced")
        response = httpx.get(f"{peer_url}/rates?currency=EUR")
        if response.status_code >= 500:
            log.error("rates service failed with %s", response.status_code)
        return {"basket_id": basket_id, "total": amount}

    @app.get("/explode/{item_id}")
    async def explode(item_id: int) -> None:
        raise LookupError(f"item {item_id} vanished")

    return app


@pytest.mark.services
def test_every_integration_reaches_a_real_receiver(
    sentry_receiver: Receiver, postgres_url: str, redis_url: str, peer: Peer
) -> None:
    app = make_app(postgres_url, redis_url, peer.url)
    fastapi_sentry.install(app, dsn=sentry_receiver.dsn, traces_sample_rate=1.0)
    with ServerThread(app) as server:
        ok = httpx.get(f"{server.url}/checkout/2", timeout=10)
        boom = httpx.get(f"{server.url}/explode/7", timeout=10)
        health = httpx.get(f"{server.url}/health", timeout=10)
    assert ok.status_code == 200
    assert ok.json() == {"basket_id": 2, "total": 42}
    assert boom.status_code == 500
    assert health.status_code == 200

    errors = sentry_receiver.wait_for_items("event", 2)
    transactions = sentry_receiver.wait_for_items("transaction", 2)

    (logged,) = [e for e in errors if "logentry" in e]
    assert logged["logentry"]["message"] == "rates service failed with %s"
    assert logged["tags"]["request_id"] == ok.headers["x-request-id"]
    assert logged["tags"]["endpoint"] == "GET /checkout/{basket_id}"
    crumbs = [c.get("message") for c in logged["breadcrumbs"]["values"]]
    assert "basket priced" in crumbs

    (crashed,) = [e for e in errors if "exception" in e]
    assert crashed["exception"]["values"][-1]["type"] == "LookupError"
    assert crashed["tags"]["request_id"] == boom.headers["x-request-id"]
    assert crashed["transaction"] == "/explode/{item_id}"

    names = sorted(t["transaction"] for t in transactions)
    assert names == ["/checkout/{basket_id}", "/explode/{item_id}"]  # /health is never traced
    (checkout,) = [t for t in transactions if t["transaction"] == "/checkout/{basket_id}"]
    spans = checkout["spans"]
    sql = [s for s in spans if s["op"] == "db"]
    assert any("SELECT 40 + " in s["description"] for s in sql)
    redis_spans = [s for s in spans if s["op"] == "db.redis"]
    assert [s["description"] for s in redis_spans] == ["SET 'basket:2'"]  # no value: PII off
    (http_span,) = [s for s in spans if s["op"] == "http.client"]
    assert http_span["description"] == f"GET {peer.url}/rates"
    assert http_span["data"]["http.response.status_code"] == 502
    assert "currency=EUR" not in str(http_span["description"])
    assert len(sentry_receiver.paths) >= 4
    assert all(path == "/api/1/envelope/" for path in sentry_receiver.paths)
