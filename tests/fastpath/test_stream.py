"""`SENTRY_TRACE_LIFECYCLE=stream`: a request's spans leave as span v2 items, as they finish.

Also run on sentry-sdk's own integrations (the fallback) by
`tests/fastpath/test_sdk_seam.py::test_install_and_request_path_tests_pass_on_the_fallback`.
"""

from __future__ import annotations

from typing import Any

import pytest
import sentry_sdk
import sentry_sdk.traces
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

import fastapi_sentry
from fastapi_sentry import ConfigError
from fastapi_sentry._setup import flush
from fastapi_sentry.testing import CapturedEnvelopes

DSN = "http://publickey@127.0.0.1:9/1"  # never contacted: capture replaces the transport
SECRET = "sk_live_4f9a8b7c6d5e4f3a2b1c"


def make_app(**settings: Any) -> FastAPI:
    app = FastAPI()
    fastapi_sentry.install(app, dsn=DSN, trace_lifecycle="stream", **settings)

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int, request: Request) -> dict[str, int]:
        request.state.user = {"id": "user-42", "email": "ann@example.com"}
        with sentry_sdk.traces.start_span(
            name="SELECT * FROM orders WHERE id = %s",
            attributes={
                "sentry.op": "db",
                "db.query.text": f"SELECT * FROM orders WHERE api_key = '{SECRET}'",
                "url.full": f"http://pay.example/charge?token={SECRET}",
            },
        ):
            pass
        return {"order_id": order_id}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def attribute(span: dict[str, Any], name: str) -> Any:
    value = span["attributes"].get(name)
    return value["value"] if isinstance(value, dict) else value


def test_a_request_streams_its_segment_named_by_route_template(
    sentry_events: CapturedEnvelopes,
) -> None:
    with TestClient(make_app(traces_sample_rate=1.0)) as client:
        response = client.get("/orders/7", headers={"X-Request-ID": "req-stream-1"})
    assert response.status_code == 200
    flush(2)

    assert sentry_events.transactions == []  # stream mode sends no transaction event
    spans = sentry_events.spans
    (segment,) = [span for span in spans if span["is_segment"]]
    (query,) = [span for span in spans if not span["is_segment"]]
    assert segment["name"] == "/orders/{order_id}"
    assert attribute(segment, "sentry.segment.name.source") == "route"
    assert attribute(segment, "sentry.op") == "http.server"
    assert attribute(segment, "http.response.status_code") == 200
    assert query["parent_span_id"] == segment["span_id"]
    assert query["trace_id"] == segment["trace_id"]
    # every span of the request knows its request, its user and its segment's final name
    for span in (segment, query):
        assert attribute(span, "request_id") == "req-stream-1"
        assert attribute(span, "user.id") == "user-42"
        assert attribute(span, "user.email") is None  # PII is off: as on events
        assert attribute(span, "sentry.segment.name") == "/orders/{order_id}"


def test_span_attributes_are_scrubbed_before_they_leave(sentry_events: CapturedEnvelopes) -> None:
    with TestClient(make_app(traces_sample_rate=1.0)) as client:
        client.get("/orders/7")
    flush(2)

    (query,) = [span for span in sentry_events.spans if not span["is_segment"]]
    assert attribute(query, "db.query.text") == "SELECT * FROM orders WHERE api_key = '[Filtered]'"
    assert attribute(query, "url.full") == "http://pay.example/charge?token=[Filtered]"
    assert SECRET not in repr(sentry_events.items())


def test_untraced_paths_send_no_span(sentry_events: CapturedEnvelopes) -> None:
    with TestClient(make_app(traces_sample_rate=1.0)) as client:
        client.get("/health")  # an untraced path: skipped before any span exists
        flush(2)
        assert sentry_events.spans == []
        client.get("/orders/7")  # the same app does stream a traced path
    flush(2)
    assert {span["name"] for span in sentry_events.spans if span["is_segment"]} == {
        "/orders/{order_id}"
    }


def test_rate_zero_sends_no_span(sentry_events: CapturedEnvelopes) -> None:
    with TestClient(make_app(traces_sample_rate=0.0)) as client:
        for _ in range(20):
            assert client.get("/orders/7").status_code == 200
        sentry_sdk.capture_message("the transport works")
    flush(2)
    assert len(sentry_events.messages) == 1
    assert sentry_events.spans == []


def test_an_error_in_stream_mode_links_to_the_segment(sentry_events: CapturedEnvelopes) -> None:
    app = make_app(traces_sample_rate=1.0)

    @app.get("/fail/{n}")
    async def fail(n: int) -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/fail/3").status_code == 500
    flush(2)
    (error,) = sentry_events.errors
    (segment,) = [span for span in sentry_events.spans if span["is_segment"]]
    assert segment["status"] == "error"
    assert error["contexts"]["trace"]["trace_id"] == segment["trace_id"]
    assert error["transaction"] == "/fail/{n}"


def test_static_is_the_default_and_other_values_are_refused() -> None:
    assert fastapi_sentry.load_settings().trace_lifecycle == "static"
    with pytest.raises(ConfigError, match=r"^Invalid Sentry settings: SENTRY_TRACE_LIFECYCLE"):
        fastapi_sentry.load_settings(trace_lifecycle="streaming")
