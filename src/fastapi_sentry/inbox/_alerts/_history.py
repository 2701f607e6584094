"""Every firing and the result of each of its deliveries, kept in the inbox database so the Alerts
page and ``GET /api/0/projects/<id>/alerts/`` can show what was sent, when, and what failed."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi_sentry.inbox._store import InboxStore, iso


@dataclass(frozen=True)
class Firing:
    """One notification-worthy moment: a rule's condition began (a new episode)."""

    rule: str
    kind: str
    project_id: int
    project: str
    title: str
    count: int
    url: str
    issue_id: int | None = None
    severity: str = "warning"


def shown_target(target: str) -> str:
    """A target as pages show it: a webhook's path often is its secret (Slack's is), so only the
    scheme and host are kept; e-mail addresses are shown whole."""
    if target.startswith("mailto:"):
        return target
    parts = urlsplit(target)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.path.strip("/") else target


def record_firing(store: InboxStore, firing: Firing, targets: tuple[str, ...]) -> list[int]:
    """Store a firing with one pending delivery per target; returns the delivery ids."""
    now = time.time()

    def insert(conn: sqlite3.Connection) -> list[int]:
        cur = conn.execute(
            "INSERT INTO alert_firings (project_id, rule, kind, title, issue_id, count, fired, "
            "url, severity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                firing.project_id,
                firing.rule,
                firing.kind,
                firing.title,
                firing.issue_id,
                firing.count,
                now,
                firing.url,
                firing.severity,
            ),
        )
        firing_id = cur.lastrowid
        return [
            int(
                conn.execute(
                    "INSERT INTO alert_deliveries (firing_id, target, status, updated) "
                    "VALUES (?, ?, 'pending', ?)",
                    (firing_id, shown_target(target), now),
                ).lastrowid
                or 0
            )
            for target in targets
        ]

    return store.write(insert)


def update_delivery(
    store: InboxStore, delivery_id: int, status: str, attempts: int, error: str | None
) -> None:
    def update(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE alert_deliveries SET status = ?, attempts = ?, error = ?, updated = ? "
            "WHERE id = ?",
            (status, attempts, error, time.time(), delivery_id),
        )

    store.write(update)


def list_firings(store: InboxStore, project_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """A project's firings, newest first, each with its deliveries (Sentry-style field names)."""

    def query(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        rows = conn.execute(
            "SELECT id, rule, kind, title, issue_id, count, fired, url, severity "
            "FROM alert_firings WHERE project_id = ? ORDER BY id DESC LIMIT ?",
            (project_id, limit),
        ).fetchall()
        result = []
        for firing_id, rule, kind, title, issue_id, count, fired, url, severity in rows:
            deliveries = [
                {
                    "target": target,
                    "status": status,
                    "attempts": attempts,
                    "error": error,
                    "dateUpdated": iso(updated),
                }
                for target, status, attempts, error, updated in conn.execute(
                    "SELECT target, status, attempts, error, updated FROM alert_deliveries "
                    "WHERE firing_id = ? ORDER BY id",
                    (firing_id,),
                )
            ]
            result.append(
                {
                    "id": str(firing_id),
                    "rule": rule,
                    "kind": kind,
                    "severity": severity or "warning",
                    "title": title,
                    "issueId": None if issue_id is None else str(issue_id),
                    "count": count,
                    "dateFired": iso(fired),
                    "url": url,
                    "deliveries": deliveries,
                }
            )
        return result

    return store.read(query)
