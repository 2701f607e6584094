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


def test_alerts_fired_before_rules_had_a_severity_read_as_warning(tmp_path: Path) -> None:
    from fastapi_sentry.inbox._alerts._history import list_firings

    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(_SCHEMA)
        conn.execute(  # the table as the monitor first created it
            "CREATE TABLE alert_firings (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, "
            "rule TEXT NOT NULL, kind TEXT NOT NULL, title TEXT NOT NULL, issue_id INTEGER, "
            "count INTEGER NOT NULL, fired REAL NOT NULL, url TEXT NOT NULL)"
        )
        assert "severity" not in _columns(conn, "alert_firings")
        conn.execute(
            "INSERT INTO alert_firings (project_id, rule, kind, title, count, fired, url) "
            "VALUES (1, 'errors', 'event_count', 'many errors', 12, 0, 'http://x/')"
        )
        conn.commit()
    with InboxStore(path) as store:
        (firing,) = list_firings(store, 1)
    assert firing["rule"] == "errors"
    assert firing["severity"] == "warning"
