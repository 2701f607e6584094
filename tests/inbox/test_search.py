"""Sentry's search syntax on the issue list, the issues API and the events API.

Every token is checked against a case it must include and one it must exclude; the three issues
come from sentry-sdk itself, each with its own environment, release, user and tags.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI

import fastapi_sentry
from fastapi_sentry.inbox import InboxServer
from tests.inbox.conftest import api, page, set_status
from tests.inbox_support import init_sdk, running_inbox
from tests.support.sdk import forget_sentry
from tests.support.server import serve

SENT: list[dict[str, Any]] = [
    {
        "message": "checkout failed",
        "level": "error",
        "environment": "production",
        "release": "shop@1.0",
        "user": {"id": "u-1", "email": "ann@example.com"},
        "tags": {"endpoint": "/checkout", "request_id": "req-1"},
    },
    {
        "message": "slow payment gateway",
        "level": "warning",
        "environment": "staging",
        "release": "shop@1.1",
        "user": {"id": "u-2", "email": "bob@example.com"},
        "tags": {"endpoint": "/pay", "celery.task_name": "tasks.charge"},
    },
    {
        "message": "cache miss storm",
        "level": "info",
        "environment": "production",
        "release": "shop 2.0 beta",
        "tags": {"request_id": "req-3"},
    },
]
A, B, C = (sent["message"] for sent in SENT)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InboxServer]:
    """One inbox holding the three issues (B ignored, C resolved), shared by the search cases."""
    with running_inbox(tmp_path_factory.mktemp("search")) as inbox:
        for sent in SENT:
            init_sdk(inbox.dsn, environment=sent["environment"], release=sent["release"])
            if "user" in sent:
                sentry_sdk.set_user(sent["user"])
            if sent["message"] == A:
                sentry_sdk.get_current_scope().set_transaction_name("GET /checkout")
            sentry_sdk.capture_message(sent["message"], level=sent["level"], tags=sent["tags"])
            sentry_sdk.flush()
            forget_sentry()
        inbox.wait_for(3, type="default")
        ids = {issue["title"]: issue["id"] for issue in inbox.issues()}
        set_status(inbox, ids[B], "ignored")
        set_status(inbox, ids[C], "resolved")
        yield inbox


CASES = [
    ("is:unresolved", {A}),
    ("is:resolved", {C}),
    ("is:ignored", {B}),
    ("level:warning", {B}),
    ("level:error", {A}),
    ("environment:production", {A, C}),
    ("environment:staging", {B}),
    ("release:shop@1.1", {B}),
    ('release:"shop 2.0 beta"', {C}),
    ("user.id:u-1", {A}),
    ("user.email:bob@example.com", {B}),
    ("endpoint:/checkout", {A}),
    ("request_id:req-3", {C}),
    ("celery.task_name:tasks.charge", {B}),
    ('transaction:"GET /checkout"', {A}),
    ("user.username:nobody", set()),
    ("!environment:production", {B}),
    ("!endpoint:/checkout", {B, C}),
    ("!is:unresolved", {B, C}),
    ("checkout", {A}),
    ('"payment gateway"', {B}),
    ("environment:production level:info", {C}),
    ("environment:production storm", {C}),
]


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[q for q, _ in CASES])
def test_each_token_includes_its_issues_and_excludes_the_others(
    searched: InboxServer, query: str, expected: set[str]
) -> None:
    assert expected < {A, B, C}  # every case excludes at least one issue
    assert expected or query == "user.username:nobody"  # and all but one include one
    listed = api(searched, "/api/0/projects/{p}/issues/", query=query)
    assert {issue["title"] for issue in listed} == expected
    html = httpx.get(searched.url + "/", params={"query": query}, timeout=10).text
    assert {title for title in (A, B, C) if title in html} == expected


def test_issue_json_carries_the_status_the_search_filters_on(searched: InboxServer) -> None:
    everything = api(searched, "/api/0/projects/{p}/issues/", query="")  # every status
    statuses = {i["title"]: i["status"] for i in everything}
    assert statuses == {A: "unresolved", B: "ignored", C: "resolved"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("endpoint:/pay", {B}),
        ("user.email:ann@example.com", {A}),
        ("!request_id:req-1", {B, C}),
        ("is:resolved", {C}),
        ("environment:staging", {B}),
        ("gateway", {B}),
    ],
)
def test_the_events_api_takes_the_same_query(
    searched: InboxServer, query: str, expected: set[str]
) -> None:
    events = api(searched, "/api/0/projects/{p}/events/", query=query)
    assert {e["message"] for e in events} == expected


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("level:", "The search token 'level:' has no value; write it as level:value"),
        ("is:open", "is:open is not an issue status; use is:unresolved, is:resolved or is:ignored"),
        ("level:severe", "level:severe is not a level; use one of fatal, error"),
        ('release:"shop', "has an unclosed quote; close it or remove it"),
        ("user.phone:1", "user.phone: is not a user field; use one of user.id"),
    ],
)
def test_a_bad_query_is_a_400_that_says_what_to_write(
    searched: InboxServer, query: str, says: str
) -> None:
    for path in ("/api/0/projects/{p}/issues/", "/api/0/projects/{p}/events/"):
        answer = api(searched, path, 400, query=query)
        assert says in answer["detail"]
        assert answer["where"] == "query parameter query"
    html = httpx.get(searched.url + "/", params={"query": query}, timeout=10)
    assert html.status_code == 400
    assert 'id="search-error"' in html.text
    assert says.replace("'", "&#39;").replace('"', "&#34;") in html.text
    assert 'name="query"' in html.text  # the form stays, to fix the query


def test_unknown_period_on_the_issue_list_is_a_400(searched: InboxServer) -> None:
    text = page(searched, "/?statsPeriod=fortnight", 400)
    assert "statsPeriod=&#39;fortnight&#39; is not a period" in text


def test_the_readmes_examples_find_what_install_sends(tmp_path: Path) -> None:
    """`endpoint` is the method and the route template, `transaction` the template alone: the
    README's search examples are checked against an event `install()` really sent."""
    app = FastAPI()

    @app.post("/checkout/{cart_id}")
    async def checkout(cart_id: str) -> None:
        raise RuntimeError("card declined")

    with running_inbox(tmp_path) as inbox:
        fastapi_sentry.install(app, dsn=inbox.dsn, environment="test", enable_tracing=False)
        with serve(app) as url:
            assert httpx.post(url + "/checkout/c-1", timeout=10).status_code == 500
        inbox.wait_for(1, type="error")
        for query in ('endpoint:"POST /checkout/{cart_id}"', "transaction:/checkout/{cart_id}"):
            titles = [i["title"] for i in api(inbox, "/api/0/projects/{p}/issues/", query=query)]
            assert titles == ["RuntimeError: card declined"], query
        for query in ("endpoint:/checkout/{cart_id}", 'transaction:"POST /checkout/{cart_id}"'):
            assert api(inbox, "/api/0/projects/{p}/issues/", query=query) == [], query
