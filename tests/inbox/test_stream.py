"""The issue list read at a glance (sparkline, users as a share, relative times, status badges)
and the issue page's stack trace (in-app frames open, library frames folded, long values cut)."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.types import Event

from fastapi_sentry.inbox import InboxServer
from tests.inbox.conftest import api, page, set_status
from tests.inbox_support import init_sdk


def _fill(inbox: InboxServer) -> dict[str, str]:
    """ "login broken" hit by u-1 and u-2 (one event 2 h ago), "report empty" by u-3 (resolved);
    u-4 only ran a transaction: 4 users seen in all."""
    init_sdk(inbox.dsn, traces_sample_rate=1.0)
    old = time.time() - 7200
    for user, stamp in (("u-1", old), ("u-2", None), ("u-1", None)):
        sentry_sdk.set_user({"id": user})
        event: Event = {"message": "login broken", "level": "error"}
        if stamp is not None:
            event["timestamp"] = datetime.fromtimestamp(stamp, tz=timezone.utc)
        sentry_sdk.capture_event(event)
    sentry_sdk.set_user({"id": "u-3"})
    sentry_sdk.capture_message("report empty", level="warning")
    sentry_sdk.set_user({"id": "u-4"})
    with sentry_sdk.start_transaction(name="GET /home"):
        pass
    sentry_sdk.flush()
    inbox.wait_for(4, type="default")
    inbox.wait_for(1, type="transaction")
    ids = {issue["title"]: issue["id"] for issue in inbox.issues()}
    set_status(inbox, ids["report empty"], "resolved")
    return ids


def _row(html: str, title: str) -> str:
    rows = re.findall(r'<tr class="issue">.*?</tr>', html, re.S)
    (row,) = [str(r) for r in rows if title in r]
    return row


def test_the_list_shows_sparklines_user_share_relative_times_and_status(
    inbox: InboxServer,
) -> None:
    _fill(inbox)
    day = page(inbox, "/?statsPeriod=24h&query=")  # every status, the resolved one too
    login, report = _row(day, "login broken"), _row(day, "report empty")
    assert 'aria-label="events in the last 24h: 3"' in login
    assert "<polyline" in login
    assert '2 <span class="muted share">(50.0% of 4)</span>' in login
    assert "(25.0% of 4)" in report
    assert re.search(
        r'<time class="first-seen" datetime="[^"]+Z" title="[^"]+Z">2 hr ago</time>', login
    )
    assert re.search(r'<time class="last-seen" [^>]*>just now</time>', login)
    assert '<span class="status status-unresolved">unresolved</span>' in login
    assert '<span class="status status-resolved">resolved</span>' in report

    hour = page(inbox, "/?statsPeriod=1h&query=")
    assert 'aria-label="events in the last 1h: 2"' in _row(hour, "login broken")


def _parse_config(raw: str) -> Any:
    note = "x" * 700  # noqa: F841 - a long local variable the page must cut and show whole
    return json.loads(raw)


def _send_library_error(inbox: InboxServer) -> str:
    init_sdk(inbox.dsn, in_app_include=["tests"], max_value_length=2000)
    try:
        _parse_config("{not json")
    except ValueError:
        sentry_sdk.capture_exception()
    sentry_sdk.flush()
    (event,) = inbox.wait_for(1)
    return str(event["groupID"])


def test_issue_page_folds_library_frames_without_javascript(inbox: InboxServer) -> None:
    issue_id = _send_library_error(inbox)
    html = page(inbox, f"/issues/{issue_id}/")
    frames = re.findall(r'<details class="frame (in-app|system)" ?(open)?>', html)
    assert ("in-app", "open") in frames
    assert ("system", "") in frames  # json's own frames start folded
    assert all(opened == "open" for kind, opened in frames if kind == "in-app")
    assert '<details class="long">' in html


@pytest.mark.browser
def test_issue_stream_and_stack_trace_in_chromium(inbox: InboxServer, browser: Any) -> None:
    ids = _fill(inbox)
    issue_id = _send_library_error(inbox)
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    tab.goto(inbox.url + "/?query=")
    row = tab.locator("tr.issue", has_text="login broken")
    assert row.locator("svg.sparkline").is_visible()
    first_seen = row.locator("time.first-seen")
    assert first_seen.inner_text() == "2 hr ago"
    assert (first_seen.get_attribute("title") or "").endswith("Z")  # the exact time on hover
    assert tab.locator("tr.issue", has_text="report empty").locator(".status").inner_text() == (
        "resolved"
    )
    tab.fill("input[name=query]", "is:resolved")
    tab.click("button:has-text('Filter')")
    assert tab.locator("tr.issue").count() == 1
    assert ids["report empty"] in (tab.locator("tr.issue a").get_attribute("href") or "")

    tab.goto(f"{inbox.url}/issues/{issue_id}/")
    system = tab.locator("details.frame.system").first
    assert system.get_attribute("open") is None
    assert not system.locator(".context").is_visible()
    system.locator("summary").click()
    assert system.get_attribute("open") == ""
    assert tab.locator("details.frame.in-app").first.locator("summary").is_visible()
    long_value = tab.locator("details.long").first
    assert "702 characters" in long_value.locator("summary").inner_text()
    assert not long_value.locator("pre").is_visible()
    long_value.locator("summary").click()
    assert "x" * 700 in long_value.locator("pre").inner_text()


def test_the_issues_api_is_the_list_s_json_twin(inbox: InboxServer) -> None:
    ids = _fill(inbox)
    listed = api(inbox, "/api/0/projects/{p}/issues/", statsPeriod="24h", query="login")
    (login,) = listed
    assert login["id"] == ids["login broken"]
    buckets = login["stats"]["24h"]
    assert len(buckets) == 24
    assert sum(count for _, count in buckets) == 3
    assert buckets[-1][1] == 2  # the two recent events; the 2 h old one sits further left
    assert login["userShare"] == 50.0
    assert "stats" not in api(inbox, "/api/0/projects/{p}/issues/")[0]
    assert (
        "is not a period"
        in api(inbox, "/api/0/projects/{p}/issues/", 400, statsPeriod="soon")["detail"]
    )
