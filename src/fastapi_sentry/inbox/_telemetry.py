"""What the inbox shows of the current protocol's other items: logs, trace metrics, user feedback
and attachments.

Logs are searched like Sentry's log explorer: ``level:error trace:<trace id> text`` (``severity:``
is ``level:``, ``trace_id:`` is ``trace:``); the free text is matched inside the body. Values are
bound, never spliced into the SQL.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

from fastapi_sentry.inbox._errors import MalformedRequestError
from fastapi_sentry.inbox._grouping import as_dict, as_str
from fastapi_sentry.inbox._ingest import attribute_values
from fastapi_sentry.inbox._store import iso

_TOKEN = re.compile(r'(?:(?P<key>[A-Za-z_.]+):)?(?:"(?P<quoted>[^"]*)"|(?P<bare>\S+))')
_LOG_KEYS = {"level": "level", "severity": "level", "trace": "trace", "trace_id": "trace"}
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def parse_log_query(query: str | None) -> tuple[list[str], list[Any]]:
    """SQL clauses and values for a logs search; raise with a sentence for what it cannot do."""
    clauses: list[str] = []
    params: list[Any] = []
    words: list[str] = []
    source = (query or "").strip()
    if source.count('"') % 2:
        raise _refuse(f"The search {source!r} has an unclosed quote; close it or remove it.")
    for match in _TOKEN.finditer(source):
        key, value = match.group("key"), match.group("quoted") or match.group("bare") or ""
        if key is None:
            words.append(value)
            continue
        field = _LOG_KEYS.get(key.lower())
        if field is None:
            raise _refuse(
                f"The logs search cannot filter on {key!r}; use level:<level>, "
                "trace:<trace id> or free text matched in the message."
            )
        if field == "level":
            clauses.append("level = ?")
            params.append(value.lower())
        else:
            trace_id = value.replace("-", "").lower()
            if not _TRACE_ID.fullmatch(trace_id):
                raise _refuse(f"trace:{value!r} is not a trace id; trace ids are 32 hex digits.")
            clauses.append("trace_id = ?")
            params.append(trace_id)
    text = " ".join(words)
    if text:
        clauses.append("instr(lower(name), ?) > 0")
        params.append(text.lower())
    return clauses, params


def _refuse(message: str) -> MalformedRequestError:
    return MalformedRequestError(message, where="query parameter query")


def logs(
    conn: sqlite3.Connection, project_id: int, query: str | None, limit: int = 200
) -> list[dict[str, Any]]:
    """Log records matching a search, newest first, in the shape the SDKs sent them."""
    clauses, params = parse_log_query(query)
    where = "".join(f" AND {clause}" for clause in clauses)
    rows = conn.execute(
        "SELECT event_id, timestamp, level, name, trace_id, environment, release, data "
        "FROM events WHERE project_id = ? AND type = 'log'" + where + " ORDER BY timestamp DESC, "
        "id DESC LIMIT ?",
        [project_id, *params, limit],
    ).fetchall()
    result = []
    for event_id, ts, level, body, trace_id, environment, release, data in rows:
        entry = as_dict(json.loads(data))
        attrs = attribute_values(entry.get("attributes"))
        severity = entry.get("severity_number", attrs.get("sentry.severity_number"))
        result.append(
            {
                "id": event_id,
                "timestamp": iso(ts),
                "level": level or "info",
                "severityNumber": severity if isinstance(severity, int) else None,
                "body": body or "",
                "traceId": trace_id,
                "spanId": as_str(entry.get("span_id")) or None,
                "environment": environment,
                "release": release,
                "attributes": attrs,
            }
        )
    return result


def trace_metrics(
    conn: sqlite3.Connection, project_id: int, name: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Trace metric values, newest first (``name`` keeps one metric)."""
    where, params = (" AND name = ?", [name]) if name else ("", [])
    rows = conn.execute(
        "SELECT event_id, timestamp, name, status, trace_id, environment, release, data "
        "FROM events WHERE project_id = ? AND type = 'trace_metric'"
        + where
        + " ORDER BY timestamp DESC, id DESC LIMIT ?",
        [project_id, *params, limit],
    ).fetchall()
    result = []
    for event_id, ts, metric, kind, trace_id, environment, release, data in rows:
        entry = as_dict(json.loads(data))
        result.append(
            {
                "id": event_id,
                "timestamp": iso(ts),
                "name": metric,
                "type": kind,
                "value": entry.get("value"),
                "unit": as_str(entry.get("unit")) or None,
                "traceId": trace_id,
                "environment": environment,
                "release": release,
                "attributes": attribute_values(entry.get("attributes")),
            }
        )
    return result


def feedback(
    conn: sqlite3.Connection,
    project_id: int,
    *,
    event_ids: list[str] | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """User feedback, newest first; ``event_ids`` keeps the feedback about those events."""
    where, params = "", []
    if event_ids is not None:
        if not event_ids:
            return []
        where = f" AND f.ref_id IN ({', '.join('?' * len(event_ids))})"
        params = list(event_ids)
    rows = conn.execute(
        "SELECT f.event_id, f.timestamp, f.name, f.ref_id, f.data, "  # noqa: S608
        "(SELECT e.issue_id FROM events e WHERE e.project_id = f.project_id AND "
        "e.event_id = f.ref_id AND e.issue_id IS NOT NULL LIMIT 1) FROM events f "
        "WHERE f.project_id = ? AND f.type = 'feedback'"
        + where
        + " ORDER BY f.timestamp DESC, f.id DESC LIMIT ?",
        [project_id, *params, limit],
    ).fetchall()
    result = []
    for event_id, ts, message, ref_id, data, issue_id in rows:
        context = as_dict(as_dict(as_dict(json.loads(data)).get("contexts")).get("feedback"))
        result.append(
            {
                "id": event_id,
                "timestamp": iso(ts),
                "message": message or "",
                "name": as_str(context.get("name")) or None,
                "contactEmail": as_str(context.get("contact_email")) or None,
                "url": as_str(context.get("url")) or None,
                "source": as_str(context.get("source")) or "feedback",
                "eventID": ref_id,
                "groupID": None if issue_id is None else str(issue_id),
            }
        )
    return result


def issue_event_ids(conn: sqlite3.Connection, issue_id: int, limit: int = 500) -> list[str]:
    """The newest event ids of an issue (what its feedback is attached to)."""
    rows = conn.execute(
        "SELECT event_id FROM events WHERE issue_id = ? ORDER BY id DESC LIMIT ?",
        (issue_id, limit),
    ).fetchall()
    return [str(row[0]) for row in rows]


def attachments(conn: sqlite3.Connection, project_id: int, event_id: str) -> list[dict[str, Any]]:
    """An event's attachments as Sentry's API lists them: id, name, size, mimetype, type."""
    rows = conn.execute(
        "SELECT event_id, data, received FROM events WHERE project_id = ? AND ref_id = ? "
        "AND type = 'attachment' ORDER BY id",
        (project_id, event_id),
    ).fetchall()
    result = []
    for attachment_id, data, received in rows:
        meta = as_dict(json.loads(data))
        result.append(
            {
                "id": attachment_id,
                "name": as_str(meta.get("filename")) or "attachment",
                "size": meta.get("size"),
                "mimetype": as_str(meta.get("content_type")) or "application/octet-stream",
                "type": as_str(meta.get("attachment_type")) or "event.attachment",
                "eventID": event_id,
                "dateCreated": iso(received),
            }
        )
    return result


def attachment_file(
    conn: sqlite3.Connection, project_id: int, event_id: str, attachment_id: str
) -> tuple[dict[str, Any], bytes] | None:
    """One attachment's listing entry and bytes, or None."""
    row = conn.execute(
        "SELECT raw FROM events WHERE project_id = ? AND ref_id = ? AND event_id = ? "
        "AND type = 'attachment'",
        (project_id, event_id, attachment_id),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    entry = next(a for a in attachments(conn, project_id, event_id) if a["id"] == attachment_id)
    return entry, bytes(row[0])
