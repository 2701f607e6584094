"""Group commit: one request's failing write must not take the others of its batch down."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from fastapi_sentry.inbox import InboxStore
from fastapi_sentry.inbox._envelope import parse_envelope
from fastapi_sentry.inbox._ingest import records_from_envelope
from fastapi_sentry.inbox._store import WriteJob
from tests.inbox_support import error_event


class _Refused(Exception):
    pass


def _failing(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO projects (name, public_key, created) VALUES ('half', 'k', 0)")
    raise _Refused("this request fails after a write")


def test_a_failing_job_in_a_batch_keeps_the_others_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    with InboxStore(tmp_path / "inbox.db") as store:
        project = store.default_project().id
        now = time.time()
        jobs: list[WriteJob] = [
            store.ingest_job(project, records_from_envelope(parse_envelope(body), now), now)
            for body in (error_event(value="first"), error_event(value="second"))
        ]
        results = store.write_many([jobs[0], _failing, jobs[1]])

        assert [error is None for _, error in results] == [True, False, True]
        assert isinstance(results[1][1], _Refused)
        assert sorted(e["exception"]["values"][0]["value"] for e in store.events()) == [
            "first",
            "second",
        ]
        assert [p.name for p in store.list_projects()] == ["default"]
        assert store.list_issues(project, limit=None)[0]["count"] == "2"
