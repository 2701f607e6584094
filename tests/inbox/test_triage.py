"""Triage: Sentry's statuses through the API and the issue page's forms, unresolved by default,
regressions, first/last release, and no change without the token or from another site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import sentry_sdk

from fastapi_sentry.inbox import InboxServer, InboxStore
from tests.inbox.monitor_support import post_events
from tests.inbox_support import init_sdk, running_inbox

TOKEN = "triage-" + "t" * 30


def _send(inbox: InboxServer, message: str, release: str) -> str:
    init_sdk(inbox.dsn, release=release, environment="production")
    sentry_sdk.capture_message(message, level="error")
    sentry_sdk.flush()
    return str(next(i["id"] for i in _all(inbox) if i["title"] == message))


def _all(inbox: InboxServer) -> list[dict[str, Any]]:
    issues: list[dict[str, Any]] = httpx.get(
        f"{inbox.url}/api/0/projects/1/issues/?query=", timeout=10
    ).json()
    return issues


def _put(inbox: InboxServer, issue_id: str, status: str, **kwargs: Any) -> httpx.Response:
    return httpx.put(
        f"{inbox.url}/api/0/issues/{issue_id}/", json={"status": status}, timeout=10, **kwargs
    )


def _listed(inbox: InboxServer, query: str | None = None) -> list[str]:
    params = {} if query is None else {"query": query}
    issues = httpx.get(f"{inbox.url}/api/0/projects/1/issues/", params=params, timeout=10).json()
    return sorted(issue["title"] for issue in issues)


def test_statuses_filter_the_list_and_unresolved_is_the_default(inbox: InboxServer) -> None:
    fixed = _send(inbox, "fixed bug", "shop@1.0")
    noise = _send(inbox, "noisy warning", "shop@1.0")
    _send(inbox, "open bug", "shop@1.0")
    assert _put(inbox, fixed, "resolved").json()["status"] == "resolved"
    assert _put(inbox, noise, "ignored").json()["status"] == "ignored"
    assert _listed(inbox) == ["open bug"]
    assert _listed(inbox, "is:unresolved") == ["open bug"]
    assert _listed(inbox, "is:resolved") == ["fixed bug"]
    assert _listed(inbox, "is:ignored") == ["noisy warning"]
    assert _listed(inbox, "is:muted noisy") == ["noisy warning"]
    assert _listed(inbox, "") == ["fixed bug", "noisy warning", "open bug"]
    page = httpx.get(inbox.url + "/", timeout=10).text
    assert "open bug" in page
    assert "fixed bug" not in page
    assert "fixed bug" in httpx.get(inbox.url + "/?query=is:resolved", timeout=10).text
    bad = httpx.get(f"{inbox.url}/api/0/projects/1/issues/?query=is:fixed", timeout=10)
    assert bad.status_code == 400
    assert "is:fixed is not an issue status" in bad.json()["detail"]
    assert _put(inbox, noise, "unresolved").json()["status"] == "unresolved"
    wrong = _put(inbox, noise, "resolvedInNextRelease")
    assert wrong.status_code == 400
    assert (
        httpx.put(f"{inbox.url}/api/0/issues/999/", json={"status": "resolved"}).status_code == 404
    )


def test_a_resolved_issue_that_comes_back_is_unresolved_and_regressed(inbox: InboxServer) -> None:
    issue_id = _send(inbox, "payment timeout", "shop@1.0")
    _send(inbox, "payment timeout", "shop@1.1")
    _put(inbox, issue_id, "resolved")
    _send(inbox, "payment timeout", "shop@1.2")
    issue = httpx.get(f"{inbox.url}/api/0/issues/{issue_id}/", timeout=10).json()
    assert issue["status"] == "unresolved"
    assert issue["isRegressed"] is True
    assert issue["substatus"] == "regressed"
    assert issue["firstRelease"] == "shop@1.0"
    assert issue["lastRelease"] == "shop@1.2"
    assert issue["count"] == "3"
    # an ignored issue stays ignored when events keep coming (it is muted, not fixed)
    _put(inbox, issue_id, "ignored")
    _send(inbox, "payment timeout", "shop@1.2")
    issue = httpx.get(f"{inbox.url}/api/0/issues/{issue_id}/", timeout=10).json()
    assert issue["status"] == "ignored"
    assert issue["isRegressed"] is False


def test_an_older_database_gains_the_status_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with InboxStore(path):
        pass
    with sqlite3.connect(path) as conn:  # as the inbox was before triage: no status columns
        conn.execute("DROP INDEX issues_status")
        for column in ("status", "regressed", "first_release", "last_release", "status_changed"):
            conn.execute(f"ALTER TABLE issues DROP COLUMN {column}")
        conn.execute(
            "INSERT INTO issues (project_id, hash, type, title, culprit, level, metadata, "
            "first_seen, last_seen, count) "
            "VALUES (1, 'h', 'error', 't', 'c', 'error', '{}', 1, 2, 5)"
        )
        conn.execute(
            "INSERT INTO issue_tags VALUES (1, 'release', 'app@2', 1, 1.5, 2), "
            "(1, 'release', 'app@1', 1, 1, 1)"
        )
    with InboxStore(path) as store, InboxStore(path) as again:
        issue = store.get_issue(1)
        assert issue is not None
        assert issue["status"] == "unresolved"
        assert (issue["firstRelease"], issue["lastRelease"]) == ("app@1", "app@2")
        assert again.get_issue(1) == issue


def test_changes_need_the_token_and_json_and_refuse_other_sites(tmp_path: Path) -> None:
    with running_inbox(tmp_path, token=TOKEN) as inbox:
        post_events(inbox, 1, message="guarded")
        issue_id = inbox.issues()[0]["id"]
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert _put(inbox, issue_id, "resolved").status_code == 401
        assert (
            _put(inbox, issue_id, "resolved", headers={"Authorization": "Bearer no"}).status_code
            == 403
        )
        cross = _put(
            inbox, issue_id, "resolved", headers={**bearer, "Origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        # a form-encoded or text/plain body is what a cross-site page could send without a preflight
        simple = httpx.put(
            f"{inbox.url}/api/0/issues/{issue_id}/",
            content='{"status": "resolved"}',
            headers={**bearer, "Content-Type": "text/plain"},
        )
        assert simple.status_code == 415
        form = httpx.post(
            f"{inbox.url}/issues/{issue_id}/status",
            data={"status": "resolved", "csrf": "guess"},
            headers=bearer,
        )
        assert form.status_code == 403
        assert inbox.issues()[0]["status"] == "unresolved"
        ok = _put(inbox, issue_id, "resolved", headers={**bearer, "Origin": inbox.url})
        assert ok.status_code == 200
        assert inbox.issues()[0]["status"] == "resolved"


def test_a_loopback_inbox_refuses_a_rebound_host_name(inbox: InboxServer) -> None:
    post_events(inbox, 1, message="rebinding")
    issue_id = inbox.issues()[0]["id"]
    response = _put(inbox, issue_id, "resolved", headers={"Host": "attacker.example"})
    assert response.status_code == 403
    assert "loopback host name" in response.json()["detail"]
    assert inbox.issues()[0]["status"] == "unresolved"


@pytest.mark.browser
def test_resolve_and_ignore_with_the_issue_page_forms_in_chromium(
    tmp_path: Path, browser: Any
) -> None:
    with running_inbox(tmp_path, token=TOKEN) as inbox:
        post_events(inbox, 1, message="click to resolve")
        issue_id = inbox.issues()[0]["id"]
        context = browser.new_context(java_script_enabled=False)
        page = context.new_page()
        page.goto(f"{inbox.url}/issues/{issue_id}/?token={TOKEN}")
        assert page.locator("#triage .status").first.inner_text() == "unresolved"
        page.click("#triage button:has-text('Resolve')")
        assert page.url.startswith(f"{inbox.url}/issues/{issue_id}/")
        assert page.locator("#triage .status").first.inner_text() == "resolved"
        assert inbox.issues()[0]["status"] == "resolved"
        page.goto(inbox.url + "/")
        assert page.locator("tr.issue").count() == 0
        page.fill("input[name=query]", "is:resolved")
        page.click("button:has-text('Filter')")
        assert page.locator("tr.issue").count() == 1
        page.click("text=click to resolve")
        page.click("#triage button:has-text('Ignore')")
        assert page.locator("#triage .status").first.inner_text() == "ignored"
        # a page on another origin posting the same form is refused, and changes nothing
        evil = context.new_page()
        evil.set_content(
            f'<form method="post" action="{inbox.url}/issues/{issue_id}/status">'
            '<input name="status" value="unresolved"><input name="csrf" value="x">'
            "<button>go</button></form>"
        )
        evil.click("button")
        assert inbox.issues()[0]["status"] == "ignored"
        context.close()
