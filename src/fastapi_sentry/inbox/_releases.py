"""Release health from the session items and aggregates sentry-sdk sends, as Sentry computes it.

A ``session`` item is one update of one session (``sid``): the last update wins, and a session that
ever crashed stays crashed. A ``sessions`` item carries per-minute counts (``exited``, ``errored``,
``abnormal``, ``crashed``) of request-mode sessions, which name no user. Outcomes are exclusive:
crashed, else abnormal, else errored (``errors`` > 0 or status ``errored``), else healthy.
Crash-free sessions = 1 - crashed / all sessions; crash-free users = 1 - users with a crashed
session / users (a user is a session's ``did``). Adoption = the release's share of the sessions
(and users) of the environment(s) shown, over the period.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi_sentry.inbox._charts import bucket_counts
from fastapi_sentry.inbox._grouping import as_dict, as_list, as_str
from fastapi_sentry.inbox._ingest import parse_timestamp
from fastapi_sentry.inbox._period import Period
from fastapi_sentry.inbox._store import iso

OUTCOMES = ("healthy", "errored", "abnormal", "crashed")
ADOPTION_BUCKETS = 12
_AGGREGATE_KEYS = ("exited", "errored", "abnormal", "crashed")  # in OUTCOMES' order


@dataclass
class _Health:
    """Counts for one release (in the environments shown)."""

    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    users: set[str] = field(default_factory=set)
    crashed_users: set[str] = field(default_factory=set)
    started: list[tuple[float, int]] = field(default_factory=list)  # (minute, sessions)

    def add(self, outcome: str, count: int, started: float, user: str | None = None) -> None:
        self.outcomes[outcome] += count
        self.started.append((started, count))
        if user:
            self.users.add(user)
            if outcome == "crashed":
                self.crashed_users.add(user)

    @property
    def sessions(self) -> int:
        return sum(self.outcomes.values())


def _outcome(status: str, errors: int) -> str:
    if status in ("crashed", "abnormal"):
        return status
    return "errored" if errors > 0 or status == "errored" else "healthy"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _collect(rows: Iterable[tuple[str, str, float, str]]) -> dict[str, _Health]:
    health: dict[str, _Health] = {}
    latest: dict[str, tuple[float, str, str, float, str | None]] = {}  # sid → last update
    for type_, release, timestamp, data in rows:
        payload = as_dict(json.loads(data))
        if type_ == "sessions":
            for bucket in as_list(payload.get("aggregates")):
                bucket = as_dict(bucket)
                started = parse_timestamp(bucket.get("started"), timestamp)
                for outcome, key in zip(OUTCOMES, _AGGREGATE_KEYS, strict=True):
                    count = _count(bucket.get(key))
                    if count:
                        health.setdefault(release, _Health()).add(outcome, count, started)
            continue
        sid = as_str(payload.get("sid"))
        if not sid:
            continue
        outcome = _outcome(as_str(payload.get("status")), _count(payload.get("errors")))
        previous = latest.get(sid)
        if previous is not None and (previous[2] == "crashed" or previous[0] > timestamp):
            continue  # crashed is final, and an older update never replaces a newer one
        started = parse_timestamp(payload.get("started"), timestamp)
        latest[sid] = (timestamp, release, outcome, started, as_str(payload.get("did")) or None)
    for _, release, outcome, started, user in latest.values():
        health.setdefault(release, _Health()).add(outcome, 1, started, user)
    return health


def _rate(bad: int, total: int) -> float | None:
    return None if total == 0 else round(100.0 * (total - bad) / total, 4)


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100.0 * part / whole, 4)


def _first_seen_issues(
    conn: sqlite3.Connection, project_id: int
) -> dict[str, list[dict[str, Any]]]:
    """Issues by the release of their first event (the release tag seen first)."""
    rows = conn.execute(
        "SELECT t.value, i.id, i.title, i.level FROM issue_tags t JOIN issues i ON i.id = "
        "t.issue_id WHERE i.project_id = ? AND t.key = 'release' AND t.first_seen = (SELECT "
        "MIN(f.first_seen) FROM issue_tags f WHERE f.issue_id = t.issue_id AND f.key = 'release') "
        "ORDER BY i.first_seen DESC",
        (project_id,),
    ).fetchall()
    result: dict[str, list[dict[str, Any]]] = {}
    for release, issue_id, title, level in rows:
        result.setdefault(release, []).append({"id": str(issue_id), "title": title, "level": level})
    return result


def environments(conn: sqlite3.Connection, project_id: int) -> list[str]:
    """Every environment a release was seen in (sessions included, unlike the issue facets)."""
    rows = conn.execute(
        "SELECT DISTINCT environment FROM events WHERE project_id = ? AND environment IS NOT NULL "
        "AND release IS NOT NULL ORDER BY environment",
        (project_id,),
    )
    return [row[0] for row in rows]


def releases(
    conn: sqlite3.Connection,
    project_id: int,
    period: Period,
    *,
    environment: str | None = None,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """Every release of the project, newest first, in the shape of Sentry's releases API."""
    end = time.time() if now is None else now
    since = end - period.seconds
    env_sql, env_params = (" AND environment = ?", [environment]) if environment else ("", [])
    known = conn.execute(
        "SELECT release, MIN(timestamp), MAX(timestamp), GROUP_CONCAT(DISTINCT environment) "
        "FROM events WHERE project_id = ? AND release IS NOT NULL" + env_sql + " GROUP BY release",
        [project_id, *env_params],
    ).fetchall()
    sessions = conn.execute(
        "SELECT type, release, timestamp, data FROM events WHERE project_id = ? AND type IN "  # noqa: S608
        "('session', 'sessions') AND release IS NOT NULL AND timestamp >= ?" + env_sql,
        [project_id, since, *env_params],
    ).fetchall()
    health = _collect(sessions)
    new_issues = _first_seen_issues(conn, project_id)
    all_sessions = sum(h.sessions for h in health.values())
    all_users = len(set().union(*(h.users for h in health.values())))
    bucket_totals = bucket_counts(
        (pair for h in health.values() for pair in h.started), since, end, ADOPTION_BUCKETS
    )
    result = []
    for version, first, last, environments in known:
        h = health.get(version, _Health())
        per_bucket = bucket_counts(h.started, since, end, ADOPTION_BUCKETS)
        issues = new_issues.get(version, [])
        result.append(
            {
                "version": version,
                "shortVersion": version,
                "dateCreated": iso(first),
                "lastEvent": iso(last),
                "environments": sorted(set((environments or "").split(",")) - {""}),
                "newGroups": len(issues),
                "newIssues": issues,
                "healthData": {
                    "hasHealthData": h.sessions > 0,
                    "totalSessions": h.sessions,
                    "totalUsers": len(h.users),
                    "sessionsCrashed": h.outcomes["crashed"],
                    "sessionsAbnormal": h.outcomes["abnormal"],
                    "sessionsErrored": h.outcomes["errored"],
                    "sessionsHealthy": h.outcomes["healthy"],
                    "usersCrashed": len(h.crashed_users),
                    "crashFreeSessions": _rate(h.outcomes["crashed"], h.sessions),
                    "crashFreeUsers": _rate(len(h.crashed_users), len(h.users)),
                    "sessionsAdoption": _share(h.sessions, all_sessions),
                    "adoption": _share(len(h.users), all_users),
                    "stats": {
                        period.label: [
                            [int(since + i * period.seconds / ADOPTION_BUCKETS), int(n)]
                            for i, n in enumerate(per_bucket)
                        ]
                    },
                    "adoptionStats": [
                        _share(int(n), int(total)) or 0.0
                        for n, total in zip(per_bucket, bucket_totals, strict=True)
                    ],
                },
            }
        )
    result.sort(key=lambda r: r["dateCreated"], reverse=True)
    return result
