"""An inbox database written before the monitor opens, keeps its data and gains what it needs."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from fastapi_sentry.inbox import InboxStore
from fastapi_sentry.inbox._store import _SCHEMA


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def test_an_older_database_is_migrated_once_and_its_users_backfilled(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(_SCHEMA)
        conn.execute(
            "INSERT INTO issues (id, project_id, hash, type, title, culprit, level, metadata, "
            "first_seen, last_seen, count, user_count) "
            "VALUES (1, 1, 'h', 'error', 't', 'c', 'error', '{}', 0, 0, 1, 1)"
        )
        conn.execute("INSERT INTO issue_users VALUES (1, 'id:u-1')")
        conn.commit()
        assert "status" not in _columns(conn, "issues")
    for _ in range(2):  # the second open finds everything in place and changes nothing
        InboxStore(path).close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert "status" in _columns(conn, "issues")
        assert "trace_id" in _columns(conn, "events")
        assert conn.execute("SELECT status FROM issues").fetchall() == [("unresolved",)]
        assert conn.execute("SELECT * FROM project_users").fetchall() == [(1, "id:u-1")]
