"""Turn parsed envelope items into rows for the store.

All validation happens here, before anything is written, so a bad item rejects the whole request and
leaves the database untouched.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi_sentry.inbox._envelope import (
    CONTAINER_ITEM_TYPES,
    JSON_ITEM_TYPES,
    MAX_ATTACHMENT_SIZE,
    MAX_ITEM_SIZE,
    MIB,
    Envelope,
    Item,
    load_json_object,
)
from fastapi_sentry.inbox._errors import MalformedRequestError, PayloadTooLargeError
from fastapi_sentry.inbox._grouping import (
    Group,
    as_dict,
    as_list,
    as_str,
    clean,
    group_event,
    user_key,
)
from fastapi_sentry.inbox._normalize import normalize_event, normalize_times, sent_at

_HEX32 = re.compile(r"[0-9a-f]{32}")
UNLABELED = "<unlabeled transaction>"
_HEX16 = re.compile(r"[0-9a-f]{16}")


@dataclass
class Record:
    """One stored row: event, transaction, check-in, session, log record, attachment or raw item."""

    type: str
    event_id: str
    timestamp: float
    data: str
    raw: bytes | None = None
    environment: str | None = None
    release: str | None = None
    level: str | None = None
    name: str | None = None
    status: str | None = None
    duration_ms: float | None = None
    group: Group | None = None
    user_key: str | None = None
    spans: list[tuple[str, str, float]] = field(default_factory=list)
    trace_id: str | None = None
    #: The row this one belongs to: the event of an attachment or a feedback, the segment
    #: span of a streamed span (a streamed segment's own span id: its spans point at it).
    ref_id: str | None = None


def parse_timestamp(value: Any, default: float) -> float:
    """Sentry timestamps are epoch seconds or RFC 3339 strings; anything else means 'now'."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ts = float(value)
        return ts if 0 <= ts < 32503680000 else default
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return default
        if parsed.tzinfo is None:
            return default
        return parsed.timestamp()
    return default


def _event_id(value: Any, fallback: Any, where: str) -> str:
    raw = value if value is not None else fallback
    if raw is None:
        return uuid.uuid4().hex
    text = as_str(raw).replace("-", "").lower()
    if not _HEX32.fullmatch(text):
        raise MalformedRequestError(
            f"{where.capitalize()} has event_id {raw!r}; it must be a UUID "
            "(32 hex digits, dashes allowed).",
            where=f"{where}, field event_id",
        )
    return text


def _opt(value: Any, limit: int = 200) -> str | None:
    text = as_str(value)
    return clean(text[:limit]) if text else None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _duration_ms(payload: dict[str, Any], received: float) -> float | None:
    start = parse_timestamp(payload.get("start_timestamp"), -1.0)
    end = parse_timestamp(payload.get("timestamp"), -1.0)
    if start < 0 or end < 0 or end < start:
        return None
    # Timestamps carry microseconds; rounding to them drops the float noise of epoch seconds,
    # so a 300 ms transaction is 300.0 and meets an Apdex threshold of 300 ms.
    return round((end - start) * 1000.0, 3)


def trace_id_of(payload: dict[str, Any]) -> str | None:
    """The trace an event belongs to, if it names one (32 hex digits, as the SDK sends)."""
    value = as_str(as_dict(as_dict(payload.get("contexts")).get("trace")).get("trace_id")).lower()
    return value if _HEX32.fullmatch(value) else None


def _event_fields(
    item: Item, payload: dict[str, Any], env_id: Any, received: float
) -> dict[str, Any]:
    """The Record fields every event-shaped item (error, transaction, feedback) fills alike."""
    return {
        "event_id": _event_id(payload.get("event_id"), env_id, item.where()),
        "timestamp": parse_timestamp(payload.get("timestamp"), received),
        "data": item.payload.decode("utf-8"),
        "environment": _opt(payload.get("environment")),
        "release": _opt(payload.get("release")),
        "user_key": user_key(payload),
        "trace_id": trace_id_of(payload),
    }


def _error_record(item: Item, payload: dict[str, Any], env_id: Any, received: float) -> Record:
    group = group_event(payload)
    return Record(
        type=group.type,
        level=group.level,
        name=_opt(payload.get("transaction")),
        group=group,
        **_event_fields(item, payload, env_id, received),
    )


def _transaction_record(
    item: Item, payload: dict[str, Any], env_id: Any, received: float
) -> Record:
    spans = []
    for span in as_list(payload.get("spans")):
        span = as_dict(span)
        duration = _duration_ms(span, received)
        if duration is not None:
            spans.append(
                (
                    clean(as_str(span.get("op"))[:200]),
                    clean(as_str(span.get("description"))[:500]),
                    duration,
                )
            )
    trace = as_dict(as_dict(payload.get("contexts")).get("trace"))
    return Record(
        type="transaction",
        name=_opt(payload.get("transaction"), 500) or "<unlabeled transaction>",
        status=_opt(trace.get("status")),
        duration_ms=_duration_ms(payload, received),
        spans=spans,
        **_event_fields(item, payload, env_id, received),
    )


def _check_in_record(item: Item, payload: dict[str, Any], received: float) -> Record:
    duration = payload.get("duration")
    return Record(
        type="check_in",
        event_id=_event_id(payload.get("check_in_id"), None, item.where()),
        timestamp=received,
        data=item.payload.decode("utf-8"),
        environment=_opt(payload.get("environment")),
        release=_opt(payload.get("release")),
        name=_opt(payload.get("monitor_slug")) or "<no monitor_slug>",
        status=_opt(payload.get("status")),
        duration_ms=(
            float(duration) * 1000.0
            if isinstance(duration, (int, float)) and not isinstance(duration, bool)
            else None
        ),
    )


def _session_record(item: Item, payload: dict[str, Any], received: float) -> Record:
    attrs = as_dict(payload.get("attrs"))
    return Record(
        type=item.type,
        event_id=uuid.uuid4().hex,
        timestamp=parse_timestamp(payload.get("timestamp"), received),
        data=item.payload.decode("utf-8"),
        environment=_opt(attrs.get("environment")),
        release=_opt(attrs.get("release")),
        status=_opt(payload.get("status")),
    )


def _telemetry_fields(entry: dict[str, Any], received: float) -> dict[str, Any]:
    """The Record fields of one entry of a log or trace metric container: its attributes carry
    environment and release (``sentry.environment``, ``sentry.release``)."""
    attrs = attribute_values(entry.get("attributes"))
    return {
        "event_id": uuid.uuid4().hex,
        "timestamp": parse_timestamp(entry.get("timestamp"), received),
        "data": _dumps(entry),
        "environment": _opt(attrs.get("sentry.environment")),
        "release": _opt(attrs.get("sentry.release")),
        "trace_id": _hex_id(entry.get("trace_id"), _HEX32),
    }


def _log_records(payload: dict[str, Any], received: float, sdk_sent: float | None) -> list[Record]:
    """``log`` items (Relay's ``OurLog``: timestamp, trace_id, level, body, attributes)."""
    records = []
    for entry in as_list(payload.get("items")):
        entry = as_dict(entry)
        normalize_times(entry, "timestamp", (), received, sdk_sent)
        records.append(
            Record(
                type="log",
                level=_opt(entry.get("level")),
                name=_opt(entry.get("body"), 500),
                **_telemetry_fields(entry, received),
            )
        )
    return records


def _hex_id(value: Any, pattern: re.Pattern[str]) -> str | None:
    text = as_str(value).replace("-", "").lower()
    return text if pattern.fullmatch(text) else None


def attribute_values(value: Any) -> dict[str, Any]:
    """Typed attributes (``{"type": "string", "value": ...}``, as span v2, logs and trace
    metrics carry them) as plain values; a bare value is taken as it is."""
    values: dict[str, Any] = {}
    for key, entry in as_dict(value).items():
        values[str(key)] = entry.get("value") if isinstance(entry, dict) else entry
    return values


_USER_ATTRIBUTES = (
    ("user.id", "id"),
    ("user.name", "username"),  # sentry-sdk's name for the username (Sentry's conventions)
    ("user.username", "username"),
    ("user.email", "email"),
    ("user.ip_address", "ip_address"),
)


def _user_from(attrs: dict[str, Any]) -> dict[str, Any]:
    """The event ``user`` of a segment, from its ``user.*`` attributes."""
    return {field: attrs[key] for key, field in _USER_ATTRIBUTES if attrs.get(key) is not None}


def span_event_id(trace_id: str, span_id: str) -> str:
    """A streamed span's row id: 32 hex digits from its trace and span ids, so an SDK's retry
    of the same span is stored once."""
    return trace_id[:16] + span_id


def _segment_event(span: dict[str, Any], attrs: dict[str, Any], event_id: str) -> dict[str, Any]:
    """A segment span as the transaction Sentry would show for it: contexts.trace carries its
    ids, op, status and attributes (``data``), the way a transaction carries its root span."""
    trace: dict[str, Any] = {
        "trace_id": span["trace_id"],
        "span_id": span["span_id"],
        "op": as_str(attrs.get("sentry.op")) or "default",
        "status": as_str(span.get("status")) or "ok",
        "data": attrs,
    }
    if span.get("parent_span_id"):
        trace["parent_span_id"] = span["parent_span_id"]
    event: dict[str, Any] = {
        "event_id": event_id,
        "type": "transaction",
        "transaction": span["segment_name"],
        "transaction_info": {"source": as_str(attrs.get("sentry.segment.name.source")) or None},
        "platform": as_str(attrs.get("sentry.platform")) or "other",
        "start_timestamp": span["start"],
        "timestamp": span["end"],
        "contexts": {"trace": trace},
        "spans": [],
    }
    for key in ("environment", "release"):
        if attrs.get(f"sentry.{key}") is not None:
            event[key] = as_str(attrs[f"sentry.{key}"])
    sdk = {k: as_str(attrs.get(f"sentry.sdk.{k}")) for k in ("name", "version")}
    sdk = {k: v for k, v in sdk.items() if v}
    if sdk:
        event["sdk"] = sdk
    user = _user_from(attrs)
    if user:
        event["user"] = user
    if span.get("links"):
        event["links"] = span["links"]
    if span.get("_meta"):  # a clock correction's note, on start_timestamp in both shapes
        event["_meta"] = span["_meta"]
    return event


def _streamed_span(entry: Any, received: float, sdk_sent: float | None) -> dict[str, Any] | None:
    """The fields a span v2 must have (Relay's ``SpanV2``: trace_id, span_id, name, status,
    start and end timestamps are required); None for a span Relay would drop as invalid."""
    span = as_dict(entry)
    normalize_times(span, "start_timestamp", ("end_timestamp",), received, sdk_sent)
    trace_id = _hex_id(span.get("trace_id"), _HEX32)
    span_id = _hex_id(span.get("span_id"), _HEX16)
    start = parse_timestamp(span.get("start_timestamp"), -1.0)
    end = parse_timestamp(span.get("end_timestamp"), -1.0)
    if trace_id is None or span_id is None or start < 0 or end < start:
        return None
    attrs = attribute_values(span.get("attributes"))
    segment_id = _hex_id(attrs.get("sentry.segment.id"), _HEX16)
    is_segment = span.get("is_segment")
    if not isinstance(is_segment, bool):  # older senders: the segment is its own segment id
        is_segment = segment_id == span_id
    return {
        **span,
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": _hex_id(span.get("parent_span_id"), _HEX16),
        "start": start,
        "end": end,
        "attrs": attrs,
        "is_segment": is_segment,
        "segment_id": segment_id or (span_id if is_segment else None),
        "segment_name": _opt(attrs.get("sentry.segment.name"), 500)
        or (_opt(span.get("name"), 500) if is_segment else None),
    }


def _span_records(payload: dict[str, Any], received: float, sdk_sent: float | None) -> list[Record]:
    """Span v2 items (``{"items": [...]}``): a segment span becomes a transaction, every other
    span a ``span`` row named after its segment, so both count wherever transactions do."""
    entries = as_list(payload.get("items"))
    spans = [s for s in (_streamed_span(e, received, sdk_sent) for e in entries) if s]
    # A child without sentry.segment.name takes it from its segment when that came along.
    names = {s["span_id"]: s["segment_name"] for s in spans if s["is_segment"]}
    records = []
    for span in spans:
        attrs = span["attrs"]
        if span["segment_name"] is None and span["segment_id"] in names:
            span["segment_name"] = names[span["segment_id"]]
        event_id = span_event_id(span["trace_id"], span["span_id"])
        duration = round((span["end"] - span["start"]) * 1000.0, 3)
        common = {
            "event_id": event_id,
            "timestamp": span["end"],
            "environment": _opt(attrs.get("sentry.environment")),
            "release": _opt(attrs.get("sentry.release")),
            "status": _opt(span.get("status")) or "ok",
            "duration_ms": duration,
            "trace_id": span["trace_id"],
        }
        if span["is_segment"]:
            event = _segment_event(span, attrs, event_id)
            records.append(
                Record(
                    type="transaction",
                    data=_dumps(event),
                    name=span["segment_name"] or UNLABELED,
                    user_key=user_key(event),
                    ref_id=span["span_id"],
                    **common,
                )
            )
            continue
        original = {k: v for k, v in span.items() if k in _SPAN_V2_FIELDS}
        records.append(
            Record(
                type="span",
                data=_dumps(original),
                name=span["segment_name"],
                spans=[
                    (
                        clean(as_str(attrs.get("sentry.op"))[:200]),
                        clean(as_str(span.get("name"))[:500]),
                        duration,
                    )
                ],
                ref_id=span["segment_id"],
                **common,
            )
        )
    return records


_SPAN_V2_FIELDS = frozenset(
    {
        "trace_id",
        "span_id",
        "parent_span_id",
        "name",
        "status",
        "is_segment",
        "start_timestamp",
        "end_timestamp",
        "links",
        "attributes",
        "_meta",  # a clock correction's note (see _normalize)
    }
)


def _trace_metric_records(
    payload: dict[str, Any], received: float, sdk_sent: float | None
) -> list[Record]:
    """``trace_metric`` items (Relay's ``TraceMetric``: name, type, value, unit, attributes)."""
    records = []
    for entry in as_list(payload.get("items")):
        entry = as_dict(entry)
        normalize_times(entry, "timestamp", (), received, sdk_sent)
        value = entry.get("value")
        name = _opt(entry.get("name"))
        if name is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # Relay requires a name and a number: it drops the rest
        records.append(
            Record(
                type="trace_metric",
                name=name,
                status=_opt(entry.get("type")),
                **_telemetry_fields(entry, received),
            )
        )
    return records


def _feedback_record(item: Item, payload: dict[str, Any], env_id: Any, received: float) -> Record:
    """A ``feedback`` item: an event whose ``contexts.feedback`` holds the message, contact and
    the event it is about (``associated_event_id``)."""
    feedback = as_dict(as_dict(payload.get("contexts")).get("feedback"))
    return Record(
        type="feedback",
        name=_opt(feedback.get("message"), 500) or "",
        ref_id=_hex_id(feedback.get("associated_event_id"), _HEX32),
        **_event_fields(item, payload, env_id, received),
    )


def _user_report_record(item: Item, payload: dict[str, Any], received: float) -> Record:
    """The older ``user_report`` (Relay's ``UserReport``: event_id, name, email, comments),
    stored in the shape of a ``feedback`` item, as Sentry now shows both as user feedback."""
    event_id = _event_id(payload.get("event_id"), None, item.where())
    feedback = {
        "message": as_str(payload.get("comments")),
        "name": as_str(payload.get("name")),
        "contact_email": as_str(payload.get("email")),
        "associated_event_id": event_id,
        "source": "user_report",
    }
    return Record(
        type="feedback",
        event_id=uuid.uuid4().hex,
        timestamp=received,
        data=_dumps({"contexts": {"feedback": feedback}, "timestamp": received}),
        name=_opt(feedback["message"], 500) or "",
        ref_id=event_id,
    )


def _attachment_record(item: Item, env_id: Any, received: float) -> Record:
    """An attachment keeps its bytes (downloadable from its event's page) and what its header
    says: file name, content type and attachment type."""
    if len(item.payload) > MAX_ATTACHMENT_SIZE:
        raise PayloadTooLargeError(
            f"{item.where().capitalize()} is {len(item.payload)} bytes; the inbox keeps "
            f"attachments up to {MAX_ATTACHMENT_SIZE} bytes ({MAX_ATTACHMENT_SIZE // MIB} MiB). "
            "Attach a smaller file.",
            where=item.where(),
        )
    headers = item.headers
    meta: dict[str, Any] = {
        "filename": as_str(headers.get("filename")),
        "content_type": as_str(headers.get("content_type")),
        "attachment_type": as_str(headers.get("attachment_type")) or "event.attachment",
        "size": len(item.payload),
        "event_id": as_str(env_id),
    }
    return Record(
        type="attachment",
        event_id=uuid.uuid4().hex,
        timestamp=received,
        data=_dumps(meta),
        name=_opt(meta["filename"]),
        raw=item.payload,
        ref_id=_hex_id(env_id, _HEX32),
    )


def _raw_record(item: Item, received: float) -> Record:
    return Record(
        type=item.type,
        event_id=uuid.uuid4().hex,
        timestamp=received,
        data=_dumps({"item_headers": item.headers, "size": len(item.payload)}),
        raw=item.payload,
    )


_EVENT_KINDS = frozenset({"event", "transaction", "feedback"})


def records_from_item(
    item: Item, env_id: Any, received: float, sdk_sent: float | None = None
) -> list[Record]:
    """The rows one item becomes; ``sdk_sent`` is the envelope's ``sent_at`` (clock drift)."""
    kind = item.type
    if kind not in JSON_ITEM_TYPES:
        if kind == "attachment":
            return [_attachment_record(item, env_id, received)]
        return [_raw_record(item, received)]
    if len(item.payload) > MAX_ITEM_SIZE and kind not in CONTAINER_ITEM_TYPES:
        raise PayloadTooLargeError(
            f"{item.where().capitalize()} is {len(item.payload)} bytes after decompression; "
            f"the limit is {MAX_ITEM_SIZE} bytes (1 MiB). Trim the event (fewer breadcrumbs or "
            "smaller extra data).",
            where=item.where(),
        )
    payload = load_json_object(item.payload, item.where())
    if kind in _EVENT_KINDS and normalize_event(payload, received, sdk_sent):
        item = Item(headers=item.headers, payload=_dumps(payload).encode(), index=item.index)
    if kind == "event":
        return [_error_record(item, payload, env_id, received)]
    if kind == "transaction":
        return [_transaction_record(item, payload, env_id, received)]
    if kind == "check_in":
        return [_check_in_record(item, payload, received)]
    if kind == "log":
        return _log_records(payload, received, sdk_sent)
    if kind == "span":
        return _span_records(payload, received, sdk_sent)
    if kind == "trace_metric":
        return _trace_metric_records(payload, received, sdk_sent)
    if kind == "feedback":
        return [_feedback_record(item, payload, env_id, received)]
    if kind == "user_report":
        return [_user_report_record(item, payload, received)]
    if kind in ("session", "sessions"):
        return [_session_record(item, payload, received)]
    return [
        Record(
            type=kind,
            event_id=uuid.uuid4().hex,
            timestamp=received,
            data=item.payload.decode("utf-8"),
        )
    ]


def records_from_envelope(envelope: Envelope, received: float) -> list[Record]:
    env_id = envelope.headers.get("event_id")
    sdk_sent = sent_at(envelope.headers)
    records: list[Record] = []
    for item in envelope.items:
        records.extend(records_from_item(item, env_id, received, sdk_sent))
    return records


def records_from_store_body(body: bytes, received: float) -> list[Record]:
    """The legacy /store/ endpoint: the body is one JSON event (or transaction)."""
    if len(body) > MAX_ITEM_SIZE:
        raise PayloadTooLargeError(
            f"The event is {len(body)} bytes after decompression; the limit is "
            f"{MAX_ITEM_SIZE} bytes (1 MiB). Trim the event.",
            where="body",
        )
    payload = load_json_object(body, "the body")
    kind = "transaction" if payload.get("type") == "transaction" else "event"
    item = Item(headers={"type": kind}, payload=body, index=0)
    return records_from_item(item, None, received)
