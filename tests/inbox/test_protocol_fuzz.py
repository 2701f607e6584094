"""The new item parsers against odd input shaped like the real thing: streamed spans, logs, trace
metrics, feedback and user reports with missing, mistyped, huge or far-off fields, and envelopes
whose ``sent_at`` is anything. Each must become rows that store and read back as strict JSON (no
NaN or Infinity), or a refusal the inbox explains (an InboxError): never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fastapi_sentry.inbox import InboxStore
from fastapi_sentry.inbox._envelope import Envelope, Item
from fastapi_sentry.inbox._errors import InboxError
from fastapi_sentry.inbox._ingest import records_from_envelope
from fastapi_sentry.inbox._telemetry import feedback, logs, trace_metrics
from fastapi_sentry.inbox._traces import trace

NOW = 1_800_000_000.0
TRACE = "0123456789abcdef0123456789abcdef"

odd_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            TRACE,
            "0123456789abcdef",
            "fedcba9876543210",
            "2026-12-03T12:00:00Z",
            "9999-01-01T00:00:00",
        ]
    ),
)
timestamps = st.one_of(
    odd_scalars, st.floats(min_value=NOW - 1e8, max_value=NOW + 1e8), st.just(NOW)
)
attributes = st.dictionaries(
    st.sampled_from(
        [
            "sentry.op",
            "sentry.segment.id",
            "sentry.segment.name",
            "sentry.release",
            "sentry.environment",
            "user.id",
            "x",
        ]
    ),
    st.one_of(
        odd_scalars, st.fixed_dictionaries({"type": st.just("string"), "value": odd_scalars})
    ),
    max_size=4,
)
entries = st.fixed_dictionaries(
    {},
    optional={
        "trace_id": odd_scalars,
        "span_id": odd_scalars,
        "parent_span_id": odd_scalars,
        "name": odd_scalars,
        "status": odd_scalars,
        "is_segment": odd_scalars,
        "start_timestamp": timestamps,
        "end_timestamp": timestamps,
        "timestamp": timestamps,
        "attributes": st.one_of(attributes, odd_scalars),
        "level": odd_scalars,
        "body": odd_scalars,
        "value": odd_scalars,
        "type": odd_scalars,
        "unit": odd_scalars,
    },
)
containers = st.fixed_dictionaries({"items": st.lists(entries, max_size=4)})
feedbacks = st.fixed_dictionaries(
    {},
    optional={
        "event_id": odd_scalars,
        "timestamp": timestamps,
        "contexts": st.fixed_dictionaries(
            {
                "feedback": st.dictionaries(
                    st.sampled_from(["message", "associated_event_id", "contact_email"]),
                    odd_scalars,
                )
            }
        ),
        "comments": odd_scalars,
        "name": odd_scalars,
        "email": odd_scalars,
    },
)
items = st.one_of(
    st.tuples(st.sampled_from(["span", "log", "trace_metric"]), containers),
    st.tuples(st.sampled_from(["feedback", "user_report"]), feedbacks),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(items, min_size=1, max_size=3), st.one_of(timestamps, st.none()))
def test_new_item_types_store_as_strict_json_or_are_refused_with_a_sentence(
    sent: list[tuple[str, dict[str, Any]]], sent_at: Any
) -> None:
    headers = {} if sent_at is None else {"sent_at": sent_at}
    envelope = Envelope(
        headers=headers,
        items=[
            Item(headers={"type": kind}, payload=json.dumps(payload).encode(), index=index)
            for index, (kind, payload) in enumerate(sent)
        ],
    )
    try:
        records = records_from_envelope(envelope, NOW)
    except InboxError:
        return
    for record in records:
        json.dumps(json.loads(record.data), allow_nan=False)
    with tempfile.TemporaryDirectory() as tmp, InboxStore(Path(tmp) / "fuzz.db") as store:
        project = store.default_project()
        store.ingest(project.id, records, NOW)
        with store.reading() as conn:
            for rows in (
                logs(conn, project.id, None),
                trace_metrics(conn, project.id),
                feedback(conn, project.id),
                trace(conn, project.id, TRACE) or {},
            ):
                json.dumps(rows, allow_nan=False)
