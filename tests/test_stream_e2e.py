"""`install(app, trace_lifecycle="stream")` end to end: a real uvicorn server, a real receiver
that keeps every body as it arrived, span v2 items read from those bytes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import sentry_sdk
import sentry_sdk.traces
from fastapi import FastAPI, Request

import fastapi_sentry
from tests.support.receiver import Receiver
from tests.support.server import serve

if TYPE_CHECKING:
    from fastapi_sentry.inbox import InboxServer

SECRET = "sk_live_9e8d7c6b5a4f3e2d1c0b"
SPAN_V2 = "application/vnd.sentry.items.span.v2+json"


def make_app(dsn: str) -> FastAPI:
    app = FastAPI()
    fastapi_sentry.install(app, dsn=dsn, trace_lifecycle="stream", traces_sample_rate=1.0)

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int, request: Request) -> dict[str, int]:
        request.state.user = {"id": "user-7"}
        with sentry_sdk.traces.start_span(
            name="SELECT * FROM orders WHERE id = %s",
            attributes={
                "sentry.op": "db",
                "db.query.text": f"SELECT * FROM orders WHERE api_key = '{SECRET}'",
            },
        ):
            pass
        base = f"{request.url.scheme}://{request.url.netloc}"
        async with httpx.AsyncClient() as client:  # an http.client span from the SDK
            await client.get(f"{base}/health", params={"token": SECRET})
        return {"order_id": order_id}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def span_items(receiver: Receiver) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(item headers, span) for every span of every span item received."""
    found = []
    for envelope in receiver.envelopes():
        for headers, payload in envelope.items:
            if headers.get("type") == "span":
                found += [(headers, span) for span in json.loads(payload)["items"]]
    return found


def value(span: dict[str, Any], name: str) -> Any:
    attribute = span["attributes"].get(name)
    return attribute["value"] if isinstance(attribute, dict) else None


def test_a_request_arrives_as_span_v2_items_named_by_route_template(
    sentry_receiver: Receiver,
) -> None:
    app = make_app(sentry_receiver.dsn)
    with serve(app) as url:
        response = httpx.get(f"{url}/orders/7", headers={"X-Request-ID": "req-e2e-7"})
        assert response.status_code == 200
    # uvicorn's shutdown ran the app's lifespan end, where install() flushes

    received = span_items(sentry_receiver)
    assert {headers["content_type"] for headers, _ in received} == {SPAN_V2}
    spans = [span for _, span in received]
    # the /health call carried the trace, sampled; an untraced path still sends no span
    segments = [span for span in spans if span["is_segment"]]
    assert [segment["name"] for segment in segments] == ["/orders/{order_id}"]
    (segment,) = segments
    assert value(segment, "sentry.segment.name.source") == "route"
    ops = sorted(value(span, "sentry.op") for span in spans)
    assert ops == ["db", "http.client", "http.server"]
    for span in spans:
        assert span["trace_id"] == segment["trace_id"]
        assert value(span, "request_id") == "req-e2e-7"
        assert value(span, "user.id") == "user-7"
        assert value(span, "sentry.segment.name") == "/orders/{order_id}"
    assert SECRET.encode() not in sentry_receiver.raw()
    assert b"[Filtered]" in sentry_receiver.raw()  # the secret was there, and was masked


def test_the_segment_shows_in_the_inbox_performance_api(inbox: InboxServer) -> None:
    """What install() streams is what the inbox assembles: a segment named by route template."""
    with serve(make_app(inbox.dsn)) as url:
        assert httpx.get(f"{url}/orders/7").status_code == 200
    performance = httpx.get(f"{inbox.url}/api/0/projects/1/performance/", timeout=10).json()
    assert "/orders/{order_id}" in {row.get("transaction") for row in performance["data"]}
