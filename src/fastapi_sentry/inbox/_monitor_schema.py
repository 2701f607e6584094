"""Additive, idempotent schema changes for release health, traces and the issue list.

Run on every start after the base schema; each step checks before it changes anything, so an
inbox database written by an older version opens and keeps its data.
"""

from __future__ import annotations

import sqlite3

_MONITOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS project_users (
    project_id INTEGER NOT NULL,
    user_key TEXT NOT NULL,
    PRIMARY KEY (project_id, user_key)
) WITHOUT ROWID;
"""


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def migrate(conn: sqlite3.Connection) -> None:
    """Tables and indexes the monitor pages read; users seen before the upgrade are backfilled."""
    existed = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'project_users'"
    ).fetchone()
    conn.executescript(_MONITOR_SCHEMA)
    if not existed:
        conn.execute(
            "INSERT OR IGNORE INTO project_users (project_id, user_key) "
            "SELECT i.project_id, u.user_key FROM issue_users u JOIN issues i ON i.id = u.issue_id"
        )
    if "trace_id" not in _columns(conn, "events"):
        conn.execute("ALTER TABLE events ADD COLUMN trace_id TEXT")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS events_trace ON events (project_id, trace_id) "
        "WHERE trace_id IS NOT NULL"
    )
    add_issue_status(conn)


# --- issue 13 owns this column: drop this function when merging its branch ---------------------
def add_issue_status(conn: sqlite3.Connection) -> None:
    """``issues.status`` (unresolved|resolved|ignored), which the ``is:`` search filters on."""
    if "status" not in _columns(conn, "issues"):
        conn.execute("ALTER TABLE issues ADD COLUMN status TEXT NOT NULL DEFAULT 'unresolved'")
