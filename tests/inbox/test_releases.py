"""Release health from sentry-sdk's own session objects and aggregates, and from real requests.

The hand-computed case (release shop@1.0 in production):
- application sessions: ann healthy, ann crashed (sent as an ok update, then the crash), bob
  errored (1 error, exited), cat healthy;
- request-mode sessions, which the SDK sends as one aggregate: 3 healthy, 1 errored, 1 crashed.
So 9 sessions, 2 crashed: crash-free sessions 7/9 = 77.7778 %; 3 users, ann crashed: crash-free
users 2/3 = 66.6667 %. A staging session of the same release (eve, crashed) counts only when no
environment is chosen: 10 sessions, 3 crashed (70 %), 4 users, 2 crashed (50 %). Release shop@0.9
has one healthy production session (dan), so shop@1.0 holds 9/10 of production's sessions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI
from sentry_sdk.session import Session

import fastapi_sentry
from fastapi_sentry._fastpath import sessions as _sessions
from fastapi_sentry.inbox import InboxServer
from tests.inbox.conftest import api, colourful, page, serve
from tests.inbox_support import init_sdk
from tests.support.sdk import forget_sentry

RELEASES = "/api/0/projects/{p}/releases/"


def _send_sessions(
    inbox: InboxServer, release: str, environment: str, plan: list[tuple[str | None, str, int]]
) -> None:
    """Send sessions through sentry-sdk: (did, final status, errors); did None = request mode."""
    init_sdk(inbox.dsn, release=release, environment=environment)
    client = sentry_sdk.get_client()
    for did, status, errors in plan:
        mode = "application" if did else "request"
        session = Session(release=release, environment=environment, did=did, session_mode=mode)
        if status == "crashed" and did:
            client.capture_session(session)  # the first update (ok); the crash replaces it
        session.update(errors=errors)
        session.close(None if status == "exited" else status)  # type: ignore[arg-type]
        client.capture_session(session)
    sentry_sdk.flush()
    forget_sentry()


def _by_version(inbox: InboxServer, **params: str) -> dict[str, Any]:
    return {r["version"]: r for r in api(inbox, RELEASES, **params)}


def _fill(inbox: InboxServer) -> None:
    _send_sessions(
        inbox,
        "shop@1.0",
        "production",
        [
            ("ann", "exited", 0),
            ("ann", "crashed", 0),
            ("bob", "exited", 1),
            ("cat", "exited", 0),
            (None, "exited", 0),
            (None, "exited", 0),
            (None, "exited", 0),
            (None, "exited", 1),
            (None, "crashed", 0),
        ],
    )
    _send_sessions(inbox, "shop@1.0", "staging", [("eve", "crashed", 0)])
    _send_sessions(inbox, "shop@0.9", "production", [("dan", "exited", 0)])
    inbox.wait_for(1, type="sessions")
    inbox.wait_for(7, type="session")  # ann x3 updates, bob, cat, eve x2 ... at least these


def test_crash_free_rates_match_the_hand_computed_case(inbox: InboxServer) -> None:
    _fill(inbox)
    inbox.wait_for(8, type="session")
    production = _by_version(inbox, environment="production")
    health = production["shop@1.0"]["healthData"]
    assert health["totalSessions"] == 9
    assert health["sessionsCrashed"] == 2
    assert health["sessionsErrored"] == 2
    assert health["sessionsHealthy"] == 5
    assert health["crashFreeSessions"] == pytest.approx(100 * 7 / 9, abs=1e-3)
    assert health["totalUsers"] == 3
    assert health["crashFreeUsers"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert health["sessionsAdoption"] == pytest.approx(90.0)
    assert health["adoption"] == pytest.approx(75.0)  # 3 of ann, bob, cat, dan
    assert production["shop@0.9"]["healthData"]["crashFreeSessions"] == 100.0

    everywhere = _by_version(inbox)["shop@1.0"]["healthData"]
    assert everywhere["totalSessions"] == 10
    assert everywhere["crashFreeSessions"] == pytest.approx(70.0)
    assert everywhere["totalUsers"] == 4
    assert everywhere["crashFreeUsers"] == pytest.approx(50.0)


def test_releases_api_uses_sentry_field_names_and_counts_new_issues(inbox: InboxServer) -> None:
    _send_sessions(inbox, "shop@1.0", "production", [("ann", "exited", 0)])
    for release, message in (
        ("shop@1.0", "old bug"),
        ("shop@1.1", "new bug"),
        ("shop@1.1", "old bug"),
    ):
        init_sdk(inbox.dsn, release=release, environment="production")
        sentry_sdk.capture_message(message)
        sentry_sdk.flush()
        forget_sentry()
    inbox.wait_for(3, type="default")
    releases = api(inbox, RELEASES)
    assert [r["version"] for r in releases] == ["shop@1.1", "shop@1.0"]  # newest first
    newest, oldest = releases
    assert newest.keys() >= {"version", "dateCreated", "newGroups", "healthData"}
    assert newest["dateCreated"].endswith("Z")
    assert newest["newGroups"] == 1
    assert [i["title"] for i in newest["newIssues"]] == ["new bug"]
    assert oldest["newGroups"] == 1
    assert newest["healthData"]["hasHealthData"] is False
    assert newest["healthData"]["crashFreeSessions"] is None
    assert oldest["healthData"].keys() >= {
        "crashFreeSessions",
        "crashFreeUsers",
        "totalSessions",
        "totalUsers",
    }
    assert oldest["healthData"]["crashFreeSessions"] == 100.0


def test_sessions_from_real_requests_count_crashed_and_errored(inbox: InboxServer) -> None:
    app = FastAPI()

    @app.get("/ok")
    def ok() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/handled")
    def handled() -> dict[str, str]:
        try:
            raise KeyError("coupon")
        except KeyError:
            sentry_sdk.capture_exception()
        return {"ok": "despite"}

    @app.get("/boom")
    def boom() -> dict[str, str]:
        raise RuntimeError("card service down")

    fastapi_sentry.install(app, dsn=inbox.dsn, release="web@1", environment="ci")
    with serve(app) as url:
        for path in ("/ok", "/ok", "/ok", "/handled", "/boom"):
            httpx.get(url + path, timeout=10)
    _sessions.flush()
    sentry_sdk.flush()
    inbox.wait_for(1, type="sessions")
    inbox.wait_for(2, type="error")
    release = _by_version(inbox)["web@1"]
    health = release["healthData"]
    assert health["totalSessions"] == 5
    assert health["sessionsCrashed"] == 1
    assert health["sessionsErrored"] == 1
    assert health["crashFreeSessions"] == pytest.approx(80.0)
    assert release["newGroups"] == 2
    assert release["environments"] == ["ci"]


def test_bad_period_is_a_400_on_the_api_and_the_page(inbox: InboxServer) -> None:
    answer = api(inbox, RELEASES, 400, statsPeriod="0d")
    assert answer["detail"].startswith("statsPeriod='0d' is not a period;")
    assert "statsPeriod=&#39;100d&#39; is not a period" in page(
        inbox, "/releases/?statsPeriod=100d", 400
    )


@pytest.mark.browser
def test_releases_page_shows_health_in_chromium(
    inbox: InboxServer, browser: Any, tmp_path: Path
) -> None:
    _fill(inbox)
    inbox.wait_for(8, type="session")
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    tab.goto(inbox.url + "/")
    tab.click("header >> text=Releases")
    tab.select_option("select[name=environment]", "production")
    tab.click("button:has-text('Show')")
    assert "environment=production" in tab.url
    rows = tab.locator("tr.release")
    assert rows.count() == 2
    row = tab.locator("tr.release", has_text="shop@1.0")
    assert row.locator(".crash-free-sessions").inner_text() == "77.78%"
    assert row.locator(".crash-free-users").inner_text() == "66.67%"
    assert "2 crashed" in row.locator(".sessions").inner_text()
    assert "90.0% of sessions" in row.locator(".adoption").inner_text()
    assert row.locator(".adoption svg.sparkline polyline").count() == 1
    table = tab.locator("#releases")
    box = table.bounding_box()
    assert box is not None
    assert box["width"] > 600
    png = table.screenshot(path=str(tmp_path / "releases.png"))
    assert colourful(png) > 100, "the releases table screenshot is (nearly) blank"
