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
    JSON_ITEM_TYPES,
    MAX_ITEM_SIZE,
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

_HEX32 = re.compile(r"[0-9a-f]{32}")


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


def _error_record(item: Item, payload: dict[str, Any], env_id: Any, received: float) -> Record:
    group = group_event(payload)
    return Record(
        type=group.type,
        event_id=_event_id(payload.get("event_id"), env_id, item.where()),
        timestamp=parse_timestamp(payload.get("timestamp"), received),
        data=item.payload.decode("utf-8"),
        environment=_opt(payload.get("environment")),
        release=_opt(payload.get("release")),
        level=group.level,
        name=_opt(payload.get("transaction")),
        group=group,
        user_key=user_key(payload),
        trace_id=trace_id_of(payload),
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
        event_id=_event_id(payload.get("event_id"), env_id, item.where()),
        timestamp=parse_timestamp(payload.get("timestamp"), received),
        data=item.payload.decode("utf-8"),
        environment=_opt(payload.get("environment")),
        release=_opt(payload.get("release")),
        name=_opt(payload.get("transaction"), 500) or "<unlabeled transaction>",
        status=_opt(trace.get("status")),
        duration_ms=_duration_ms(payload, received),
        spans=spans,
        user_key=user_key(payload),
        trace_id=trace_id_of(payload),
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


def _log_records(item: Item, payload: dict[str, Any], received: float) -> list[Record]:
    records = []
    for entry in as_list(payload.get("items")):
        entry = as_dict(entry)
        attributes = as_dict(entry.get("attributes"))

        def attr(key: str, attributes: dict[str, Any] = attributes) -> str | None:
            return _opt(as_dict(attributes.get(key)).get("value"))

        records.append(
            Record(
                type="log",
                event_id=uuid.uuid4().hex,
                timestamp=parse_timestamp(entry.get("timestamp"), received),
                data=_dumps(entry),
                environment=attr("sentry.environment"),
                release=attr("sentry.release"),
                level=_opt(entry.get("level")),
                name=_opt(entry.get("body"), 500),
            )
        )
    return records


def _attachment_record(item: Item, env_id: Any, received: float) -> Record:
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
    )


def _raw_record(item: Item, received: float) -> Record:
    return Record(
        type=item.type,
        event_id=uuid.uuid4().hex,
        timestamp=received,
        data=_dumps({"item_headers": item.headers, "size": len(item.payload)}),
        raw=item.payload,
    )


def records_from_item(item: Item, env_id: Any, received: float) -> list[Record]:
    kind = item.type
    if kind not in JSON_ITEM_TYPES:
        if kind == "attachment":
            return [_attachment_record(item, env_id, received)]
        return [_raw_record(item, received)]
    if len(item.payload) > MAX_ITEM_SIZE:
        raise PayloadTooLargeError(
            f"{item.where().capitalize()} is {len(item.payload)} bytes after decompression; "
            f"the limit is {MAX_ITEM_SIZE} bytes (1 MiB). Trim the event (fewer breadcrumbs or "
            "smaller extra data).",
            where=item.where(),
        )
    payload = load_json_object(item.payload, item.where())
    if kind == "event":
        return [_error_record(item, payload, env_id, received)]
    if kind == "transaction":
        return [_transaction_record(item, payload, env_id, received)]
    if kind == "check_in":
        return [_check_in_record(item, payload, received)]
    if kind == "log":
        return _log_records(item, payload, received)
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
    records: list[Record] = []
    for item in envelope.items:
        records.extend(records_from_item(item, env_id, received))
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
