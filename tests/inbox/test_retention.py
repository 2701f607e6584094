"""Retention deletes old events but keeps every issue's totals true."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from fastapi_sentry.inbox import InboxStore
from fastapi_sentry.inbox._envelope import parse_envelope
from fastapi_sentry.inbox._ingest import records_from_envelope
from fastapi_sentry.inbox._retention import Retention
from tests.inbox.monitor_support import post_events, wait_until
from tests.inbox_support import envelope, event_item, running_inbox


def test_max_events_keeps_the_newest_and_the_true_totals(tmp_path: Path) -> None:
    with running_inbox(tmp_path, max_events=50) as inbox:
        store = inbox.store
        assert store is not None
        for user in range(4):
            post_events(inbox, 50, message="same bug", user={"id": f"user-{user}"})
        first = inbox.issues()[0]
        acked = post_events(inbox, 20, message="same bug", user={"id": "late-user"})
        wait_until(lambda: store.count_events() <= 50, 30, "retention down to 50 events")
        kept = {event["eventID"] for event in inbox.events()}
        assert len(kept) == 50
        assert set(acked) <= kept  # the newest survive
        (issue,) = inbox.issues()
        assert issue["count"] == "220"
        assert issue["userCount"] == 5
        assert issue["firstSeen"] == first["firstSeen"]
        page = httpx.get(f"{inbox.url}/issues/{issue['id']}/", timeout=10)
        assert page.status_code == 200


def test_max_age_deletes_events_older_than_the_limit(tmp_path: Path) -> None:
    with InboxStore(tmp_path / "inbox.db") as store:
        project = store.default_project()
        old = time.time() - 3 * 86400

        def records(received: float, message: str) -> list:  # type: ignore[type-arg]
            body = envelope(event_item(message=message, event_id=uuid.uuid4().hex))
            return records_from_envelope(parse_envelope(body), received)

        for _ in range(1200):
            store.ingest(project.id, records(old, "old"), received=old)
        store.ingest(project.id, records(time.time(), "new"), received=time.time())
        retention = Retention(store, max_age_days=2)
        while retention.prune_batch():
            pass
        assert [e["message"] for e in store.events()] == ["new"]
        assert retention.deleted == 1200
        counts = {i["title"]: i["count"] for i in store.list_issues(project.id)}
        assert counts == {"old": "1200", "new": "1"}


def test_the_cli_takes_the_retention_flags() -> None:
    import argparse

    from fastapi_sentry._cli import inbox as command

    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["inbox", "--max-events", "10000", "--max-age", "14"])
    assert (args.max_events, args.max_age) == (10000, 14.0)
