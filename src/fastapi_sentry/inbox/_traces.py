"""One trace put back together: its transactions and their spans as a tree, and its errors.

Every transaction is a span too (its ``contexts.trace``); a span's parent is found by
``parent_span_id`` across transactions, so a service's transaction nests under the caller's span
that made the request. Rows come out depth-first in start order, each with its offset and duration
from the start of the trace, which is all a waterfall needs.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from fastapi_sentry.inbox._errors import MalformedRequestError
from fastapi_sentry.inbox._grouping import as_dict, as_list, as_str
from fastapi_sentry.inbox._ingest import parse_timestamp
from fastapi_sentry.inbox._store import iso

MAX_SPANS = 5000
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


@dataclass
class _Node:
    span_id: str
    parent_span_id: str
    op: str
    description: str
    start: float
    end: float
    transaction: str
    event_id: str
    is_transaction: bool = False
    status: str = ""
    children: list[_Node] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def check_trace_id(raw: str) -> str:
    """A trace id as stored (32 lowercase hex digits); raise with the expected form."""
    value = raw.replace("-", "").lower()
    if not _TRACE_ID.fullmatch(value):
        raise MalformedRequestError(
            f"{raw!r} is not a trace id; trace ids are 32 hex digits, as in an event's "
            "contexts.trace.trace_id.",
            where="path",
        )
    return value


def _nodes(event_id: str, payload: dict[str, Any]) -> list[_Node]:
    trace = as_dict(as_dict(payload.get("contexts")).get("trace"))
    name = as_str(payload.get("transaction")) or "<unlabeled transaction>"
    end = parse_timestamp(payload.get("timestamp"), 0.0)
    root = _Node(
        span_id=as_str(trace.get("span_id")),
        parent_span_id=as_str(trace.get("parent_span_id")),
        op=as_str(trace.get("op")),
        description=name,
        start=parse_timestamp(payload.get("start_timestamp"), end),
        end=end,
        transaction=name,
        event_id=event_id,
        is_transaction=True,
        status=as_str(trace.get("status")),
    )
    nodes = [root]
    for span in as_list(payload.get("spans")):
        span = as_dict(span)
        span_end = parse_timestamp(span.get("timestamp"), root.end)
        nodes.append(
            _Node(
                span_id=as_str(span.get("span_id")),
                parent_span_id=as_str(span.get("parent_span_id")) or root.span_id,
                op=as_str(span.get("op")),
                description=as_str(span.get("description")),
                start=parse_timestamp(span.get("start_timestamp"), span_end),
                end=span_end,
                transaction=name,
                event_id=event_id,
                status=as_str(span.get("status")),
            )
        )
    return nodes


def _streamed_node(event_id: str, segment: str, span: dict[str, Any]) -> _Node:
    """A streamed (span v2) span that is not a segment: its op is the ``sentry.op`` attribute,
    its description its name; the segment that holds it is a transaction row of its own."""
    end = parse_timestamp(span.get("end_timestamp"), 0.0)
    return _Node(
        span_id=as_str(span.get("span_id")),
        parent_span_id=as_str(span.get("parent_span_id")),
        op=as_str(as_dict(as_dict(span.get("attributes")).get("sentry.op")).get("value")),
        description=as_str(span.get("name")),
        start=parse_timestamp(span.get("start_timestamp"), end),
        end=end,
        transaction=segment,
        event_id=event_id,
        status=as_str(span.get("status")),
    )


def trace(conn: sqlite3.Connection, project_id: int, trace_id: str) -> dict[str, Any] | None:
    """The trace as JSON (spans depth-first with offsets in ms, errors linked), or None.

    Transactions and streamed spans of one trace join in one tree, whichever SDK sent them."""
    rows = conn.execute(
        "SELECT e.type, e.event_id, e.issue_id, e.data, e.name, i.title, i.level FROM events e "
        "LEFT JOIN issues i ON i.id = e.issue_id WHERE e.project_id = ? AND e.trace_id = ? "
        "AND (e.type IN ('transaction', 'span') OR e.issue_id IS NOT NULL) "
        "ORDER BY e.timestamp",
        (project_id, trace_id),
    ).fetchall()
    if not rows:
        return None
    nodes: list[_Node] = []
    errors: list[dict[str, Any]] = []
    for type_, event_id, issue_id, data, name, title, level in rows:
        payload = as_dict(json.loads(data))
        if type_ == "transaction":
            nodes.extend(_nodes(event_id, payload)[: max(0, MAX_SPANS - len(nodes))])
        elif type_ == "span":
            if len(nodes) < MAX_SPANS:
                nodes.append(_streamed_node(event_id, as_str(name), payload))
        elif issue_id is not None:
            span_id = as_str(as_dict(as_dict(payload.get("contexts")).get("trace")).get("span_id"))
            errors.append(
                {
                    "eventID": event_id,
                    "groupID": str(issue_id),
                    "title": title,
                    "level": level,
                    "spanId": span_id or None,
                    "timestamp": iso(parse_timestamp(payload.get("timestamp"), 0.0)),
                }
            )
    by_id = {node.span_id: node for node in nodes if node.span_id}
    roots = []
    for node in nodes:
        parent = by_id.get(node.parent_span_id)
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent.children.append(node)
    for error in errors:
        owner = by_id.get(error["spanId"] or "")
        if owner is not None:
            owner.errors.append(error)
    start = min((n.start for n in nodes), default=0.0)
    end = max((n.end for n in nodes), default=start)
    flat: list[dict[str, Any]] = []

    def walk(node: _Node, depth: int, seen: set[int]) -> None:
        if id(node) in seen:  # a span naming a descendant as its parent: show it once
            return
        seen.add(id(node))
        flat.append(
            {
                "spanId": node.span_id,
                "parentSpanId": node.parent_span_id or None,
                "op": node.op,
                "description": node.description,
                "transaction": node.transaction,
                "eventID": node.event_id,
                "isTransaction": node.is_transaction,
                "status": node.status or None,
                "depth": depth,
                "offsetMs": round((node.start - start) * 1000.0, 3),
                "durationMs": round(max(0.0, node.end - node.start) * 1000.0, 3),
                "errors": [e["eventID"] for e in node.errors],
            }
        )
        for child in sorted(node.children, key=lambda n: n.start):
            walk(child, depth + 1, seen)

    seen: set[int] = set()
    for root in sorted(roots, key=lambda n: n.start):
        walk(root, 0, seen)
    for node in nodes:  # spans in a parent cycle have no root: list them at the top level
        walk(node, 0, seen)
    return {
        "traceId": trace_id,
        "start": iso(start) if nodes else None,
        "durationMs": round((end - start) * 1000.0, 3),
        "transactions": sum(1 for n in nodes if n.is_transaction),
        "spans": flat,
        "errors": errors,
    }
