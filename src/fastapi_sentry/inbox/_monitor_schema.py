"""The tables and columns the monitor adds to an inbox database: triage, alerts and retention;
release health, traces, the issue list's share of users; attachments, feedback and streamed
spans linked to their event or segment.

Additive and idempotent: run on every open, it adds what an older database lacks and leaves
existing rows as they were (an issue stored before triage existed is ``unresolved``).
"""

from __future__ import annotations

import sqlite3

#: Sentry's issue statuses; ``ignored`` is what Sentry's UI calls "archived" or "muted".
STATUSES = ("unresolved", "resolved", "ignored")

_ISSUE_COLUMNS = (
    ("status", "TEXT NOT NULL DEFAULT 'unresolved'"),
    ("regressed", "INTEGER NOT NULL DEFAULT 0"),
    ("first_release", "TEXT"),
    ("last_release", "TEXT"),
    ("status_changed", "REAL"),
)

_TABLES = """
CREATE INDEX IF NOT EXISTS issues_status ON issues (project_id, status, last_seen);
CREATE TABLE IF NOT EXISTS issue_activity (
    id INTEGER PRIMARY KEY,
    issue_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS issue_activity_issue ON issue_activity (issue_id, id);
CREATE TABLE IF NOT EXISTS alert_firings (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    issue_id INTEGER,
    count INTEGER NOT NULL,
    fired REAL NOT NULL,
    url TEXT NOT NULL,
    severity TEXT
);
CREATE INDEX IF NOT EXISTS alert_firings_project ON alert_firings (project_id, id);
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id INTEGER PRIMARY KEY,
    firing_id INTEGER NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_deliveries_firing ON alert_deliveries (firing_id);
CREATE INDEX IF NOT EXISTS spans_event_row ON spans (event_row);
CREATE TABLE IF NOT EXISTS project_users (
    project_id INTEGER NOT NULL,
    user_key TEXT NOT NULL,
    PRIMARY KEY (project_id, user_key)
) WITHOUT ROWID;
"""


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def migrate(conn: sqlite3.Connection) -> None:
    """Bring an inbox database up to the monitor's schema (safe to run again)."""
    event_columns = _columns(conn, "events")
    # users_affected rules read who an event affected without loading the event's JSON
    if "user_key" not in event_columns:
        conn.execute("ALTER TABLE events ADD COLUMN user_key TEXT")
    # the trace view finds a trace's events without reading every event's JSON
    if "trace_id" not in event_columns:
        conn.execute("ALTER TABLE events ADD COLUMN trace_id TEXT")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS events_trace ON events (project_id, trace_id) "
        "WHERE trace_id IS NOT NULL"
    )
    # an event's attachments and feedback, a streamed span's segment (see Record.ref_id)
    if "ref_id" not in event_columns:
        conn.execute("ALTER TABLE events ADD COLUMN ref_id TEXT")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS events_ref ON events (project_id, ref_id) "
        "WHERE ref_id IS NOT NULL"
    )
    existing = _columns(conn, "issues")
    added = set()
    for name, definition in _ISSUE_COLUMNS:
        if name not in existing:
            conn.execute(f"ALTER TABLE issues ADD COLUMN {name} {definition}")
            added.add(name)
    if "first_release" in added:
        # Issues stored before the columns existed: their releases are in issue_tags.
        conn.execute(
            "UPDATE issues SET "
            "first_release = (SELECT value FROM issue_tags t WHERE t.issue_id = issues.id "
            "AND t.key = 'release' ORDER BY t.first_seen LIMIT 1), "
            "last_release = (SELECT value FROM issue_tags t WHERE t.issue_id = issues.id "
            "AND t.key = 'release' ORDER BY t.last_seen DESC LIMIT 1)"
        )
    had_project_users = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'project_users'"
    ).fetchone()
    conn.executescript(_TABLES)
    # firings stored before rules had a severity read as the default, warning
    if "severity" not in _columns(conn, "alert_firings"):
        conn.execute("ALTER TABLE alert_firings ADD COLUMN severity TEXT")
    if not had_project_users:  # users seen before the upgrade count in the share of users
        conn.execute(
            "INSERT OR IGNORE INTO project_users (project_id, user_key) "
            "SELECT i.project_id, u.user_key FROM issue_users u JOIN issues i ON i.id = u.issue_id"
        )


def record_activity(conn: sqlite3.Connection, issue_id: int, kind: str, at: float) -> None:
    """Append to an issue's activity log (status changes, regressions), which alerts read."""
    conn.execute(
        "INSERT INTO issue_activity (issue_id, kind, at) VALUES (?, ?, ?)", (issue_id, kind, at)
    )


def regress(conn: sqlite3.Connection, issue_id: int, at: float) -> None:
    """A resolved issue got a new event: it is unresolved again and marked regressed."""
    conn.execute(
        "UPDATE issues SET status = 'unresolved', regressed = 1, status_changed = ? WHERE id = ?",
        (at, issue_id),
    )
    record_activity(conn, issue_id, "regression", at)
