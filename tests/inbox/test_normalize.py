"""Relay's corrections, applied by the inbox on ingest: a client clock that is off by an hour or
more, timestamps too far in the future or past, and strings over Sentry's limits, each noted in
``_meta`` as Relay notes it. Events come from sentry-sdk where it can produce the case, and from
hand-built envelopes where only a wrong clock can (the SDK cannot be told to lie about time)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Any

import sentry_sdk

from fastapi_sentry.inbox import InboxServer
from tests.inbox.conftest import api
from tests.inbox_support import envelope, init_sdk, post_envelope

HOUR = 3600.0


def _post(inbox: InboxServer, body: bytes) -> None:
    response = post_envelope(inbox, body)
    assert response.status_code == 200, response.text


def _event(inbox: InboxServer, sent_at: float | None, timestamp: float, **fields: Any) -> Any:
    event_id = uuid.uuid4().hex
    event = {"event_id": event_id, "timestamp": timestamp, "message": "clock", **fields}
    headers = {"event_id": event_id}
    if sent_at is not None:
        headers["sent_at"] = _iso(sent_at)
    _post(inbox, envelope(({"type": "event"}, json.dumps(event).encode()), headers=headers))
    (stored,) = [e for e in inbox.events(type="default") if e["eventID"] == event_id]
    return stored


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


def test_a_client_clock_two_hours_behind_is_corrected_and_noted(inbox: InboxServer) -> None:
    now = time.time()
    client_now = now - 2 * HOUR  # the client's clock: every time it sends is two hours early
    crumbs = {"values": [{"timestamp": client_now - 5, "message": "before"}]}
    stored = _event(inbox, client_now, client_now - 1, breadcrumbs=crumbs)
    # moved by (received - sent_at): within the request's own latency of the true time
    assert abs(stored["timestamp"] - (now - 1)) < 60
    assert abs(stored["breadcrumbs"]["values"][0]["timestamp"] - (now - 5)) < 60
    ((kind, times),) = stored["_meta"]["timestamp"][""]["err"]
    assert kind == "clock_drift"
    assert set(times) == {"sdk_time", "server_time"}


def test_a_small_drift_is_left_alone(inbox: InboxServer) -> None:
    now = time.time()
    stored = _event(inbox, now - 50 * 60, now - 50 * 60)  # 50 minutes: below Relay's 55
    assert stored["timestamp"] == now - 50 * 60
    assert "_meta" not in stored


def test_timestamps_far_in_the_future_or_past_become_the_arrival_time(inbox: InboxServer) -> None:
    now = time.time()
    future = _event(inbox, None, now + 2 * HOUR)
    past = _event(inbox, None, now - 31 * 24 * HOUR)
    for stored, kind in ((future, "future_timestamp"), (past, "past_timestamp")):
        assert abs(stored["timestamp"] - now) < 60
        assert stored["_meta"]["timestamp"][""]["err"][0][0] == kind
    near = _event(inbox, None, now + 30)  # within Relay's 60 s allowance
    assert near["timestamp"] == now + 30


def test_a_transaction_keeps_its_duration_when_its_clock_is_corrected(inbox: InboxServer) -> None:
    now = time.time()
    start = now - 3 * HOUR
    event_id = uuid.uuid4().hex
    transaction = {
        "event_id": event_id,
        "type": "transaction",
        "transaction": "GET /late",
        "start_timestamp": start,
        "timestamp": start + 0.25,
        "contexts": {"trace": {"trace_id": uuid.uuid4().hex, "span_id": "a" * 16}},
        "spans": [{"span_id": "b" * 16, "start_timestamp": start, "timestamp": start + 0.1}],
    }
    item = ({"type": "transaction"}, json.dumps(transaction).encode())
    _post(inbox, envelope(item, headers={"event_id": event_id, "sent_at": _iso(start + 0.3)}))
    (stored,) = inbox.wait_for(1, type="transaction")
    assert abs(stored["timestamp"] - now) < 60
    assert round((stored["timestamp"] - stored["start_timestamp"]) * 1000) == 250
    assert round((stored["spans"][0]["timestamp"] - stored["start_timestamp"]) * 1000) == 100
    (row,) = api(inbox, "/api/0/projects/{p}/performance/", statsPeriod="1h")["data"]
    assert row["p50"] == 250


def test_over_long_strings_are_trimmed_as_relay_trims_them(inbox: InboxServer) -> None:
    init_sdk(inbox.dsn, environment="e" * 70)
    sentry_sdk.capture_message("m" * 9000)
    try:
        raise ValueError("v" * 8393)  # one over 8192 + 200
    except ValueError:
        sentry_sdk.capture_exception()
    sentry_sdk.flush()
    message, error = sorted(inbox.wait_for(2, type="default,error"), key=lambda e: e["type"])
    text = message["logentry"]["message"] if "logentry" in message else message["message"]
    assert text == "m" * 8189 + "..."
    meta = message["_meta"]
    trimmed = meta["logentry"]["message"][""] if "logentry" in meta else meta["message"][""]
    assert trimmed == {"rem": [["!limit", "s", 8189, 8192]], "len": 9000}
    assert message["environment"] == "e" * 61 + "..."
    assert message["_meta"]["environment"][""]["len"] == 70
    value = error["exception"]["values"][0]["value"]
    assert value == "v" * 8189 + "..."
    assert error["_meta"]["exception"]["values"]["0"]["value"][""]["len"] == 8393


def test_a_log_sent_from_a_clock_a_day_ahead_is_moved_back(inbox: InboxServer) -> None:
    now = time.time()
    log = {"timestamp": now + 24 * HOUR, "level": "info", "body": "from the future"}
    body = envelope(
        ({"type": "log"}, json.dumps({"items": [log]}).encode()),
        headers={"sent_at": _iso(now + 24 * HOUR)},
    )
    _post(inbox, body)
    (stored,) = api(inbox, "/api/0/projects/{p}/logs/")
    assert abs(time.time() - _parse(stored["timestamp"])) < 60


def _parse(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


def test_streamed_spans_from_a_clock_an_hour_behind_are_moved_and_noted(inbox: InboxServer) -> None:
    now = time.time()
    client_now = now - HOUR
    trace_id = uuid.uuid4().hex
    segment = {
        "trace_id": trace_id,
        "span_id": "1" * 16,
        "name": "GET /drift",
        "status": "ok",
        "is_segment": True,
        "start_timestamp": client_now - 0.5,
        "end_timestamp": client_now - 0.2,
    }
    child = {**segment, "span_id": "2" * 16, "parent_span_id": "1" * 16, "is_segment": False}
    payload = json.dumps({"items": [segment, child]}).encode()
    _post(inbox, envelope(({"type": "span"}, payload), headers={"sent_at": _iso(client_now)}))
    (transaction,) = inbox.wait_for(1, type="transaction")
    (span,) = inbox.events(type="span")
    for stored, start in ((transaction, "start_timestamp"), (span, "start_timestamp")):
        assert abs(stored[start] - (now - 0.5)) < 60
        assert stored["_meta"][start][""]["err"][0][0] == "clock_drift"
    assert round((transaction["timestamp"] - transaction["start_timestamp"]) * 1000) == 300


def test_an_event_without_a_timestamp_is_dated_on_arrival_with_no_note() -> None:
    """sentry-cli's saved envelopes carry an old `sent_at` and no timestamp: nothing was dated by
    the SDK's clock, so there is nothing to correct (a note would be a processing error)."""
    from fastapi_sentry.inbox._normalize import normalize_event

    payload: dict[str, object] = {"event_id": "a" * 32, "level": "error", "message": "saved"}
    received = 1_800_000_000.0
    assert normalize_event(payload, received, received - 30_000_000) is False
    assert "_meta" not in payload
