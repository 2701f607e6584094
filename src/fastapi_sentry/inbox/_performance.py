"""Per transaction name, over a period, the figures Sentry's performance page shows.

- throughput: transactions per minute (count / minutes in the period);
- p50/p75/p95/p99: nearest-rank percentiles of the duration (end - start), in ms;
- failure rate: the share whose status is not ``ok``, ``cancelled`` or ``unknown`` (Sentry's rule;
  no status counts as ok);
- Apdex(T): (satisfied + tolerating / 2) / all, satisfied ≤ T, tolerating ≤ 4T (T = 300 ms unless
  given, as in Sentry).
Plus the slowest spans, the slowest database spans (``db*`` ops) and the slowest trace.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from fastapi_sentry.inbox._errors import MalformedRequestError
from fastapi_sentry.inbox._period import Period
from fastapi_sentry.inbox._store import percentile

DEFAULT_APDEX_THRESHOLD_MS = 300
NOT_FAILED = (None, "ok", "cancelled", "unknown")
PERCENTILES = {"p50": 0.50, "p75": 0.75, "p95": 0.95, "p99": 0.99}


def parse_threshold(raw: str | None) -> int:
    """The ``threshold`` query parameter (Apdex T, in ms); raise when it is not 1 to 600000."""
    if raw is None or raw == "":
        return DEFAULT_APDEX_THRESHOLD_MS
    if not raw.isdigit() or not 1 <= int(raw) <= 600_000:
        raise MalformedRequestError(
            f"threshold={raw!r} is not an Apdex threshold; give milliseconds from 1 to 600000 "
            f"(default {DEFAULT_APDEX_THRESHOLD_MS}).",
            where="query parameter threshold",
        )
    return int(raw)


def apdex(durations: list[float], threshold_ms: float) -> float:
    """Apdex of durations (ms) against T; 1.0 for no transactions is never asked for."""
    satisfied = sum(1 for d in durations if d <= threshold_ms)
    tolerating = sum(1 for d in durations if threshold_ms < d <= 4 * threshold_ms)
    return round((satisfied + tolerating / 2) / len(durations), 4)


def _spans(
    conn: sqlite3.Connection, project_id: int, name: str, since: float, db_only: bool, limit: int
) -> list[dict[str, Any]]:
    db = " AND s.op LIKE 'db%'" if db_only else ""
    rows = conn.execute(
        "SELECT s.op, s.description, s.duration_ms FROM spans s JOIN events e ON e.id = "  # noqa: S608
        "s.event_row WHERE s.project_id = ? AND s.transaction_name = ? AND e.timestamp >= ?"
        + db
        + " ORDER BY s.duration_ms DESC LIMIT ?",
        (project_id, name, since, limit),
    ).fetchall()
    return [{"op": op, "description": desc, "duration_ms": ms} for op, desc, ms in rows]


def transactions(
    conn: sqlite3.Connection,
    project_id: int,
    period: Period,
    *,
    threshold_ms: int = DEFAULT_APDEX_THRESHOLD_MS,
    environment: str | None = None,
    release: str | None = None,
    slowest: int = 5,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """One entry per transaction name seen in the period, slowest p95 first (a streamed
    segment is stored as a transaction, so it counts here like one)."""
    since = (time.time() if now is None else now) - period.seconds
    env_sql, env_params = "", []
    for column, value in (("environment", environment), ("release", release)):
        if value:
            env_sql += f" AND {column} = ?"
            env_params.append(value)
    rows = conn.execute(
        "SELECT name, duration_ms, status, trace_id FROM events WHERE project_id = ? AND type = "  # noqa: S608
        "'transaction' AND duration_ms IS NOT NULL AND timestamp >= ?" + env_sql,
        [project_id, since, *env_params],
    ).fetchall()
    by_name: dict[str, list[tuple[float, str | None, str | None]]] = {}
    for name, duration, status, trace_id in rows:
        by_name.setdefault(name, []).append((duration, status, trace_id))
    result: list[dict[str, Any]] = []
    for name, entries in by_name.items():
        durations = sorted(d for d, _, _ in entries)
        slowest_entry = max(entries, key=lambda entry: entry[0])
        failed = sum(1 for _, status, _ in entries if status not in NOT_FAILED)
        result.append(
            {
                "transaction": name,
                "count": len(entries),
                "tpm": round(len(entries) / period.minutes, 4),
                **{key: percentile(durations, q) for key, q in PERCENTILES.items()},
                "failure_rate": round(failed / len(entries), 4),
                "apdex": apdex(durations, threshold_ms),
                "slowest_trace": slowest_entry[2],
                "slowest_spans": _spans(conn, project_id, name, since, False, slowest),
                "slow_db_queries": _spans(conn, project_id, name, since, True, slowest),
            }
        )
    result.sort(key=lambda entry: (-entry["p95"], entry["transaction"]))
    return result
