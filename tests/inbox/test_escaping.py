"""Release names, transaction names, span descriptions and tags reach the new pages escaped."""

from __future__ import annotations

import time

import sentry_sdk

from fastapi_sentry.inbox import InboxServer
from tests.inbox.conftest import page
from tests.inbox_support import init_sdk
from tests.test_inbox_web import IMG, SCRIPT


def test_hostile_values_are_escaped_on_releases_performance_and_trace_pages(
    inbox: InboxServer,
) -> None:
    init_sdk(inbox.dsn, traces_sample_rate=1.0, release=IMG, environment=SCRIPT)
    start = time.time() - 5
    tx = sentry_sdk.start_transaction(name=SCRIPT, op=IMG, start_timestamp=start)
    span = tx.start_child(op="db.query", name=IMG, start_timestamp=start)
    sentry_sdk.get_current_scope().span = span
    sentry_sdk.capture_message(SCRIPT + IMG, tags={"payload": IMG})
    sentry_sdk.get_current_scope().span = None
    span.finish(end_timestamp=start + 0.1)
    tx.finish(end_timestamp=start + 0.2)
    sentry_sdk.flush()
    inbox.wait_for(1, type="transaction")
    inbox.wait_for(1, type="default")
    for path in (
        "/releases/",
        "/performance/",
        f"/traces/{tx.trace_id}/",
        "/?query=payload:%22" + IMG.replace('"', "%22") + "%22",
    ):
        html = page(inbox, path)
        assert "<img src=x" not in html, path
        assert "<script>window" not in html, path
        assert "&lt;img src=x onerror=" in html or "&lt;script&gt;window" in html, path
