"""The JSON API (Sentry's paths and field names) and who may read it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sentry_sdk

from fastapi_sentry.inbox import InboxServer, InboxStore
from fastapi_sentry.inbox._auth import is_loopback
from fastapi_sentry.inbox._server import _resolve_token
from tests.inbox_support import auth_headers, error_event, init_sdk, running_inbox

ISSUE_FIELDS = {"id", "title", "culprit", "level", "count", "userCount", "firstSeen", "lastSeen"}


def _fill(inbox: InboxServer) -> None:
    init_sdk(inbox.dsn, traces_sample_rate=1.0, environment="ci")
    sentry_sdk.set_user({"email": "a@example.com"})
    settings: dict[str, str] = {}
    try:
        settings["missing"]
    except KeyError:
        sentry_sdk.capture_exception()
    with sentry_sdk.start_transaction(name="task", op="queue.task"):
        pass
    sentry_sdk.flush()
    inbox.wait_for(1)
    inbox.wait_for(1, type="transaction")


def test_issue_and_event_endpoints_use_sentry_field_names(inbox: InboxServer) -> None:
    _fill(inbox)
    assert inbox.project is not None
    base = f"{inbox.url}/api/0"
    (issue,) = httpx.get(f"{base}/projects/{inbox.project.id}/issues/", timeout=10).json()
    assert issue.keys() >= ISSUE_FIELDS
    assert issue["title"] == "KeyError: 'missing'"
    assert issue["count"] == "1"
    assert issue["userCount"] == 1
    assert issue["firstSeen"].endswith("Z")
    assert issue["project"]["id"] == str(inbox.project.id)

    assert httpx.get(f"{base}/issues/{issue['id']}/", timeout=10).json() == issue
    latest = httpx.get(f"{base}/issues/{issue['id']}/events/latest/", timeout=10).json()
    assert latest["exception"]["values"][0]["type"] == "KeyError"
    assert latest["groupID"] == issue["id"]
    listed = httpx.get(f"{base}/issues/{issue['id']}/events/", timeout=10).json()
    assert [e["eventID"] for e in listed] == [latest["eventID"]]

    events = f"{base}/projects/{inbox.project.id}/events/"
    assert {e["type"] for e in httpx.get(events, timeout=10).json()} == {"error", "transaction"}
    (transaction,) = httpx.get(events, params={"type": "transaction"}, timeout=10).json()
    assert transaction["transaction"] == "task"
    assert transaction["groupID"] is None
    both = httpx.get(events, params={"type": "error,transaction"}, timeout=10).json()
    assert len(both) == 2
    assert len(httpx.get(events, params={"environment": "ci"}, timeout=10).json()) == 2
    assert httpx.get(events, params={"environment": "prod"}, timeout=10).json() == []
    by_level = httpx.get(events, params={"level": "error"}, timeout=10).json()
    assert [e["type"] for e in by_level] == ["error"]

    (project,) = httpx.get(f"{base}/projects/", timeout=10).json()
    assert project["id"] == str(inbox.project.id)


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/api/0/issues/999/", 404, "There is no issue 999."),
        ("/api/0/issues/abc/events/latest/", 404, "There is no issue 'abc'"),
        ("/api/0/projects/42/issues/", 404, "There is no project 42"),
        ("/api/0/projects/1/events/?limit=0", 400, "limit='0' must be an integer from 1 to 10000"),
        ("/api/1/envelope//", 404, "There is no GET '/api/1/envelope//' on this inbox"),
        ("/api/1/envelope/", 405, "'/api/1/envelope/' does not accept GET."),
    ],
)
def test_api_errors_are_json_sentences(
    inbox: InboxServer, path: str, status: int, detail: str
) -> None:
    response = httpx.get(inbox.url + path, timeout=10)
    assert response.status_code == status
    assert detail in response.json()["detail"]


def test_a_token_protects_reading_but_not_ingest(tmp_path: Path) -> None:
    with running_inbox(tmp_path, token="s3cret-token") as inbox:
        assert inbox.project is not None
        ingest = httpx.post(
            f"{inbox.url}/api/{inbox.project.id}/envelope/",
            content=error_event(),
            headers=auth_headers(inbox.project.public_key),
            timeout=10,
        )
        assert ingest.status_code == 200
        issues = f"{inbox.url}/api/0/projects/{inbox.project.id}/issues/"

        missing = httpx.get(issues, timeout=10)
        assert missing.status_code == 401
        assert "requires its token" in missing.json()["detail"]
        assert "s3cret" not in missing.text
        wrong = httpx.get(issues, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 403
        good = httpx.get(issues, headers={"Authorization": "Bearer s3cret-token"}, timeout=10)
        assert good.status_code == 200
        assert len(good.json()) == 1

        assert httpx.get(inbox.url + "/", timeout=10).status_code == 401
        with httpx.Client(timeout=10) as browser_like:
            first = browser_like.get(inbox.url + "/?token=s3cret-token")
            assert first.status_code == 200
            assert "ValueError: boom" in first.text
            # the cookie set by ?token= lets the following pages in without the query
            assert browser_like.get(inbox.url + "/performance/").status_code == 200


def test_beyond_loopback_a_token_is_always_required() -> None:
    assert _resolve_token("127.0.0.1", None) is None
    assert _resolve_token("::1", None) is None
    assert _resolve_token("localhost", None) is None
    generated = _resolve_token("0.0.0.0", None)
    assert generated is not None
    assert len(generated) >= 24
    assert _resolve_token("0.0.0.0", None) != generated
    assert _resolve_token("192.168.1.5", "mine") == "mine"
    assert is_loopback("127.0.0.5")
    assert not is_loopback("10.0.0.1")


def test_projects_get_their_own_dsn_and_issues(tmp_path: Path) -> None:
    with running_inbox(tmp_path) as inbox:
        assert inbox.store is not None
        other = inbox.store.create_project("billing")
        with pytest.raises(ValueError, match="A project named 'billing' already exists"):
            inbox.store.create_project("billing")
        init_sdk(other.dsn(inbox.url))
        sentry_sdk.capture_message("billing failed")
        sentry_sdk.flush()
        inbox.wait_for(1, type="default")
        assert inbox.issues() == []
        assert [i["title"] for i in inbox.issues(other.id)] == ["billing failed"]
    with InboxStore(tmp_path / "inbox.db") as store:
        assert [p.name for p in store.list_projects()] == ["default", "billing"]
        assert store.default_project().name == "default"


def test_project_dsn_format() -> None:
    from fastapi_sentry.inbox import Project

    project = Project(id=3, name="x", public_key="abc123")
    assert project.dsn("http://127.0.0.1:8969") == "http://abc123@127.0.0.1:8969/3"
    assert project.dsn("http://[::1]:8969/") == "http://abc123@[::1]:8969/3"


def test_browser_sdks_may_post_cross_origin_but_not_read(inbox: InboxServer) -> None:
    assert inbox.project is not None
    url = f"{inbox.url}/api/{inbox.project.id}/envelope/"
    origin = {"Origin": "http://localhost:5173"}
    preflight = httpx.request(
        "OPTIONS",
        url,
        headers={**origin, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "x-sentry-auth" in preflight.headers["access-control-allow-headers"].lower()
    posted = httpx.post(
        f"{url}?sentry_key={inbox.project.public_key}",
        content=error_event(),
        headers=origin,
        timeout=10,
    )
    assert posted.status_code == 200
    assert posted.headers["access-control-allow-origin"] == "*"
    refused = httpx.post(url, content=error_event(), headers=origin, timeout=10)
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"  # the page can read why
    read = httpx.get(f"{inbox.url}/api/0/projects/", headers=origin, timeout=10)
    assert "access-control-allow-origin" not in read.headers
