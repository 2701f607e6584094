"""The current protocol's item types, sent by sentry-sdk itself over a real socket: streamed spans
(``trace_lifecycle="stream"``) count as transactions everywhere, and logs, trace metrics, user
feedback and attachments are stored, listed and linked from their issue and trace.

Streamed spans end at an explicit time after their start, so every duration is exact.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sentry_sdk
import sentry_sdk.logger
import sentry_sdk.metrics
from sentry_sdk import traces
from sentry_sdk.envelope import Envelope, Item, PayloadRef

from fastapi_sentry.inbox import InboxServer, InboxStore
from fastapi_sentry.inbox._store import _SCHEMA
from fastapi_sentry.inbox._web import CSP
from tests.inbox.conftest import api, page
from tests.inbox.monitor_support import Webhook, alerting_inbox, engine
from tests.inbox_support import envelope, event_item, init_sdk, post_envelope, snapshot
from tests.test_inbox_web import IMG as HOSTILE_IMG
from tests.test_inbox_web import SCRIPT as HOSTILE_SCRIPT

PERFORMANCE = "/api/0/projects/{p}/performance/"
SEGMENT_MS = [100, 200, 300]
SCRIPT = "<script>alert(1)</script>"


def _segment(name: str, ms: float, child_ms: float | None = None) -> str:
    """One streamed segment lasting ``ms`` with a database child of ``child_ms``; its trace id."""
    with traces.start_span(name=name, attributes={"sentry.op": "http.server"}) as segment:
        start = segment.start_timestamp
        assert start is not None
        if child_ms is not None:
            child = traces.start_span(name="SELECT items", attributes={"sentry.op": "db.query"})
            child.end(end_timestamp=_after(child.start_timestamp, child_ms))
        segment.end(end_timestamp=_after(start, ms))
        return segment.trace_id


def _after(start: datetime.datetime | None, ms: float) -> float:
    assert start is not None
    return start.timestamp() + ms / 1000


def _send_segments(inbox: InboxServer, **options: Any) -> list[str]:
    init_sdk(
        inbox.dsn,
        trace_lifecycle="stream",
        traces_sample_rate=1.0,
        release="shop@2.0",
        environment="staging",
        **options,
    )
    if options.get("data_collection"):
        sentry_sdk.set_user({"id": "u-1", "username": "ann"})
    trace_ids = []
    for ms in SEGMENT_MS:
        traces.new_trace()  # one request each, as a server's requests are
        trace_ids.append(_segment("GET /items", ms, ms / 2))
    sentry_sdk.flush()
    inbox.wait_for(3, type="transaction")
    inbox.wait_for(3, type="span")
    return trace_ids


def test_a_streamed_segment_counts_as_a_transaction_everywhere(inbox: InboxServer) -> None:
    trace_ids = _send_segments(inbox, data_collection={"user_info": True})
    (items,) = api(inbox, PERFORMANCE, statsPeriod="1h")["data"]
    assert items["transaction"] == "GET /items"
    assert items["count"] == 3
    assert items["p50"] == pytest_approx(200)
    assert items["p95"] == pytest_approx(300)
    slowest = items["slowest_spans"][0]
    assert (slowest["op"], slowest["description"]) == ("db.query", "SELECT items")
    assert slowest["duration_ms"] == pytest_approx(150)
    assert items["slow_db_queries"][0]["duration_ms"] == pytest_approx(150)
    assert items["slowest_trace"] in trace_ids

    # release and environment filters see the segments' attributes
    assert api(inbox, PERFORMANCE, statsPeriod="1h", environment="staging")["data"]
    assert api(inbox, PERFORMANCE, statsPeriod="1h", environment="production")["data"] == []
    assert api(inbox, PERFORMANCE, statsPeriod="1h", release="shop@2.0")["data"]
    assert api(inbox, PERFORMANCE, statsPeriod="1h", release="shop@1.0")["data"] == []

    listed = api(inbox, "/api/0/projects/{p}/events/", type="transaction")
    assert [event["transaction"] for event in listed] == ["GET /items"] * 3
    assert {event["contexts"]["trace"]["op"] for event in listed} == {"http.server"}
    assert {event["release"] for event in listed} == {"shop@2.0"}
    users = {(event["user"]["id"], event["user"]["username"]) for event in listed}
    assert users == {("u-1", "ann")}  # sentry-sdk's user.name attribute is the username
    spans = api(inbox, "/api/0/projects/{p}/events/", type="span")
    assert {span["name"] for span in spans} == {"SELECT items"}

    found = api(inbox, f"/api/0/projects/{{p}}/traces/{trace_ids[-1]}/")
    assert found["transactions"] == 1
    root, child = found["spans"]
    assert (root["isTransaction"], root["description"], root["depth"]) == (True, "GET /items", 0)
    assert (child["op"], child["description"], child["depth"]) == ("db.query", "SELECT items", 1)
    assert child["durationMs"] == pytest_approx(150)
    assert root["durationMs"] == pytest_approx(300)
    html = page(inbox, f"/traces/{trace_ids[-1]}/")
    assert "SELECT items" in html


def test_a_trace_of_a_transaction_and_streamed_spans_from_another_service_is_one(
    inbox: InboxServer,
) -> None:
    init_sdk(inbox.dsn, traces_sample_rate=1.0)  # service A: transactions
    transaction = sentry_sdk.start_transaction(name="GET /checkout", op="http.server")
    call = transaction.start_child(op="http.client", name="POST http://payments/charge")
    headers = {"sentry-trace": call.to_traceparent()}
    call.finish()
    transaction.finish()
    sentry_sdk.flush()
    inbox.wait_for(1, type="transaction")

    init_sdk(inbox.dsn, trace_lifecycle="stream", traces_sample_rate=1.0)  # service B: spans
    traces.continue_trace(headers)
    trace_id = _segment("POST /charge", 20, 5)
    sentry_sdk.flush()
    inbox.wait_for(2, type="transaction")

    assert trace_id == transaction.trace_id
    found = api(inbox, f"/api/0/projects/{{p}}/traces/{trace_id}/")
    assert found["transactions"] == 2
    rows = [(row["description"], row["depth"]) for row in found["spans"]]
    assert rows == [
        ("GET /checkout", 0),
        ("POST http://payments/charge", 1),
        ("POST /charge", 2),
        ("SELECT items", 3),
    ]


def test_a_p95_rule_fires_on_streamed_segments(tmp_path: Path) -> None:
    rule = '[[rule]]\nname = "slow"\nwhen = "p95"\nnotify = ["{url}"]\n'
    rule += 'transaction = "GET /items"\nthreshold_ms = 250\nwindow = "5m"\n'
    with Webhook() as hook, alerting_inbox(tmp_path, rule.format(url=hook.url)) as inbox:
        _send_segments(inbox)
        engine(inbox).settle()
        assert len(hook.bodies) == 1
        assert hook.bodies[0]["kind"] == "p95"
        assert hook.bodies[0]["count"] == 3


def pytest_approx(value: float) -> Any:
    """Durations are rounded to microseconds on the way: equal to a hundredth of a ms."""
    return pytest.approx(value, abs=0.01)


def _error_in_a_transaction(inbox: InboxServer, **options: Any) -> tuple[str, str]:
    """An exception inside a transaction, with logs around it; (trace id, event id)."""
    init_sdk(inbox.dsn, traces_sample_rate=1.0, enable_logs=True, **options)
    with sentry_sdk.start_transaction(name="POST /orders", op="http.server") as transaction:
        sentry_sdk.logger.info("order {order_id} received", order_id=42)
        sentry_sdk.logger.error("payment failed: " + SCRIPT, attributes={"gateway": "acme"})
        try:
            raise RuntimeError("payment declined")
        except RuntimeError:
            event_id = sentry_sdk.capture_exception()
    sentry_sdk.logger.warning("outside any trace")
    sentry_sdk.flush()
    assert event_id is not None
    inbox.wait_for(1)
    inbox.wait_for(3, type="log")
    return transaction.trace_id, event_id


def test_logs_are_searchable_escaped_and_shown_with_their_issue_and_trace(
    inbox: InboxServer,
) -> None:
    trace_id, _ = _error_in_a_transaction(inbox)
    logs = "/api/0/projects/{p}/logs/"
    everything = api(inbox, logs)
    assert [log["body"] for log in everything] == [
        "outside any trace",
        "payment failed: " + SCRIPT,
        "order 42 received",
    ]
    (error,) = api(inbox, logs, query="level:error")
    assert error["attributes"]["gateway"] == "acme"
    assert error["traceId"] == trace_id
    assert error["severityNumber"] == 17
    assert [log["body"] for log in api(inbox, logs, query="ORDER")] == ["order 42 received"]
    in_trace = api(inbox, logs, query=f"trace:{trace_id}")
    assert len(in_trace) == 2
    assert api(inbox, logs, query="level:warn")[0]["body"] == "outside any trace"
    refused = api(inbox, logs, 400, query="user:1")
    assert "level:" in refused["detail"]

    response = httpx.get(f"{inbox.url}/logs/", params={"query": "level:error"}, timeout=10)
    assert response.headers["content-security-policy"] == CSP
    assert SCRIPT not in response.text
    assert "payment failed: &lt;script&gt;" in response.text
    assert "order 42 received" not in response.text  # the page is its query
    assert "&lt;script&gt;" in page(inbox, f"/traces/{trace_id}/")
    (issue,) = inbox.issues()
    issue_html = page(inbox, f"/issues/{issue['id']}/")
    assert 'id="trace-logs"' in issue_html
    assert '<pre class="log-body">order 42 received</pre>' in issue_html
    assert '<pre class="log-body">outside any trace</pre>' not in issue_html


def test_trace_metrics_are_stored_and_listed(inbox: InboxServer) -> None:
    init_sdk(inbox.dsn, environment="production")
    sentry_sdk.metrics.count("orders.placed", 3, attributes={"shop": "eu"})
    sentry_sdk.metrics.distribution("checkout.duration", 12.5, unit="millisecond")
    sentry_sdk.flush()
    inbox.wait_for(2, type="trace_metric")
    metrics = api(inbox, "/api/0/projects/{p}/metrics/")
    by_name = {metric["name"]: metric for metric in metrics}
    assert by_name["orders.placed"]["type"] == "counter"
    assert by_name["orders.placed"]["value"] == 3
    assert by_name["orders.placed"]["attributes"]["shop"] == "eu"
    assert by_name["checkout.duration"]["unit"] == "millisecond"
    assert by_name["checkout.duration"]["environment"] == "production"
    (only,) = api(inbox, "/api/0/projects/{p}/metrics/", name="checkout.duration")
    assert only["value"] == 12.5
    assert "orders.placed" in page(inbox, "/metrics/")


def _send_envelope(item_type: str, payload: dict[str, Any]) -> None:
    """Send one item through sentry-sdk's own transport (2.75 has no feedback API)."""
    client = sentry_sdk.get_client()
    assert client.transport is not None
    sent = Envelope(headers={"event_id": payload.get("event_id")})
    sent.add_item(Item(payload=PayloadRef(json=payload), type=item_type))
    client.transport.capture_envelope(sent)


def test_feedback_and_user_reports_are_listed_and_shown_on_their_issue(
    inbox: InboxServer,
) -> None:
    _, event_id = _error_in_a_transaction(inbox)
    feedback = {
        "event_id": uuid.uuid4().hex,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).timestamp(),
        "contexts": {
            "feedback": {
                "message": "The pay button does nothing " + SCRIPT,
                "contact_email": "ann@example.com",
                "name": "Ann",
                "associated_event_id": event_id,
            }
        },
    }
    _send_envelope("feedback", feedback)
    report = {"event_id": event_id, "name": "Bob", "email": "bob@example.com", "comments": "Slow"}
    _send_envelope("user_report", report)
    _send_envelope("feedback", {**feedback, "event_id": uuid.uuid4().hex, "contexts": {}})
    sentry_sdk.flush()
    inbox.wait_for(3, type="feedback")
    listed = api(inbox, "/api/0/projects/{p}/user-feedback/")
    (issue,) = inbox.issues()
    about_issue = [entry for entry in listed if entry["groupID"] == issue["id"]]
    assert sorted(entry["message"] for entry in about_issue) == [
        "Slow",
        "The pay button does nothing " + SCRIPT,
    ]
    assert {entry["source"] for entry in about_issue} == {"feedback", "user_report"}
    html = page(inbox, f"/issues/{issue['id']}/")
    assert "The pay button does nothing &lt;script&gt;" in html
    assert "bob@example.com" in html
    assert SCRIPT not in page(inbox, "/feedback/")


def test_attachments_are_listed_and_downloaded_never_rendered(inbox: InboxServer) -> None:
    assert inbox.project is not None
    init_sdk(inbox.dsn)
    html_file = b"<html><body>" + SCRIPT.encode() + b"</body></html>"
    scope = sentry_sdk.get_isolation_scope()
    scope.add_attachment(bytes=html_file, filename="report.html", content_type="text/html")
    scope.add_attachment(bytes=b"\x00\x01binary", filename="dump \u00e9.bin")
    try:
        raise ValueError("with files")
    except ValueError:
        event_id = sentry_sdk.capture_exception()
    sentry_sdk.flush()
    inbox.wait_for(2, type="attachment")
    listed = api(inbox, f"/api/0/projects/{{p}}/events/{event_id}/attachments/")
    assert [(a["name"], a["size"], a["mimetype"]) for a in listed] == [
        ("report.html", len(html_file), "text/html"),
        ("dump \u00e9.bin", 8, "application/octet-stream"),
    ]
    url = f"{inbox.url}/api/0/projects/{inbox.project.id}/events/"
    download = httpx.get(f"{url}{event_id}/attachments/{listed[0]['id']}/", timeout=10)
    assert download.content == html_file
    assert download.headers["content-type"].startswith("text/html")
    assert download.headers["content-disposition"].startswith('attachment; filename="report.html"')
    assert download.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in download.headers["content-security-policy"]
    binary = httpx.get(f"{url}{event_id}/attachments/{listed[1]['id']}/", timeout=10)
    assert binary.headers["content-disposition"].endswith("filename*=UTF-8''dump%20%C3%A9.bin")
    missing = httpx.get(f"{url}{event_id}/attachments/{uuid.uuid4().hex}/", timeout=10)
    assert missing.status_code == 404
    (issue,) = inbox.issues()
    html = page(inbox, f"/issues/{issue['id']}/")
    assert 'id="attachments"' in html
    assert f"/events/{event_id}/attachments/{listed[0]['id']}/" in html


def test_an_attachment_over_the_limit_is_refused_with_413_and_nothing_stored(
    inbox: InboxServer,
) -> None:
    assert inbox.project is not None
    before = snapshot(Path(inbox.db_path))
    big = b"x" * (10 * 1024 * 1024 + 1)
    body = envelope(event_item(), ({"type": "attachment", "filename": "big.log"}, big))
    response = post_envelope(inbox, body)
    assert response.status_code == 413
    assert "attachments up to 10485760 bytes" in response.json()["detail"]
    assert snapshot(Path(inbox.db_path)) == before


def test_an_older_database_gains_the_ref_id_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(_SCHEMA)
        conn.execute(
            "INSERT INTO events (project_id, type, event_id, received, timestamp, data) "
            "VALUES (1, 'attachment', 'a', 0, 0, ?)",
            (json.dumps({"filename": "old.txt"}),),
        )
        conn.commit()
    for _ in range(2):
        InboxStore(path).close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        assert "ref_id" in columns
        assert conn.execute("SELECT type, ref_id FROM events").fetchall() == [("attachment", None)]
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(events)")}
        assert "events_ref" in indexes


def _span_envelope(*spans: dict[str, Any]) -> bytes:
    payload = json.dumps({"version": 2, "items": list(spans)}).encode()
    headers = {"type": "span", "content_type": "application/vnd.sentry.items.span.v2+json"}
    return envelope((headers, payload))


def test_spans_that_arrive_before_their_segment_join_it_when_it_comes(inbox: InboxServer) -> None:
    """A sender that names no segment on its spans and leaves out is_segment (the segment is
    the span whose sentry.segment.id is its own id), with the segment in a later envelope."""
    start = datetime.datetime.now(datetime.timezone.utc).timestamp() - 1
    trace_id, segment_id = uuid.uuid4().hex, "1" * 16
    segment_attr = {"sentry.segment.id": {"type": "string", "value": segment_id}}
    child = {
        "trace_id": trace_id,
        "span_id": "2" * 16,
        "parent_span_id": segment_id,
        "name": "SELECT late",
        "status": "ok",
        "start_timestamp": start,
        "end_timestamp": start + 0.04,
        "attributes": {**segment_attr, "sentry.op": {"type": "string", "value": "db"}},
    }
    segment = {
        "trace_id": trace_id,
        "span_id": segment_id,
        "name": "GET /late",
        "status": "error",
        "start_timestamp": start,
        "end_timestamp": start + 0.1,
        "attributes": segment_attr,
    }
    for body in (_span_envelope(child), _span_envelope(segment)):
        assert post_envelope(inbox, body).status_code == 200
    inbox.wait_for(1, type="transaction")
    (row,) = api(inbox, PERFORMANCE, statsPeriod="1h")["data"]
    assert row["transaction"] == "GET /late"
    assert row["failure_rate"] == 1.0  # a streamed "error" status counts as failed
    assert row["slowest_spans"][0]["description"] == "SELECT late"
    assert row["slowest_spans"][0]["duration_ms"] == pytest_approx(40)
    (span,) = api(inbox, "/api/0/projects/{p}/events/", type="span")
    assert span["name"] == "SELECT late"


def test_hostile_metric_names_and_attributes_are_escaped(inbox: InboxServer) -> None:
    init_sdk(inbox.dsn, enable_logs=True)
    sentry_sdk.metrics.count(HOSTILE_IMG, 1, attributes={"who": HOSTILE_SCRIPT})
    sentry_sdk.logger.info("plain", attributes={"payload": HOSTILE_IMG})
    sentry_sdk.flush()
    inbox.wait_for(1, type="trace_metric")
    inbox.wait_for(1, type="log")
    for path in ("/metrics/", "/logs/", "/metrics/?name=" + quote(HOSTILE_IMG)):
        response = httpx.get(inbox.url + path, timeout=10)
        assert response.headers["content-security-policy"] == CSP
        assert "<img src=x" not in response.text, path
        assert "<script>window" not in response.text, path
        assert "&lt;img src=x onerror=" in response.text, path
