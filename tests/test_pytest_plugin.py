"""The pytest plugin, tested the way pytest tests plugins: real inner pytest runs (pytester).

The inner runs load the plugin only through its `pytest11` entry point: no conftest, no `-p`.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INNER_INI = """
[pytest]
addopts = -p no:cacheprovider
filterwarnings = error
timeout = 60
"""


def run_inner(
    pytester: pytest.Pytester, source: str, passed: list[str], failed: str, error: str
) -> None:
    """Run `source` as a test module in a new pytest; exactly `failed` fails, with `error`."""
    pytester.makeini(INNER_INI)
    pytester.makepyfile(source)
    result = pytester.runpytest_subprocess("-v", timeout=120)
    result.assert_outcomes(passed=len(passed), failed=1)
    result.stdout.fnmatch_lines(
        [*(f"*::{name} PASSED*" for name in passed), f"*::{failed} FAILED*", f"*{error}*"]
    )


def test_fixtures_are_registered_through_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    result = pytester.runpytest_subprocess("--fixtures", timeout=120)
    result.stdout.re_match_lines(
        [
            r"sentry_events -- .*fastapi_sentry[/\\]pytest_plugin\.py:\d+",
            r"\s+What sentry-sdk would",
        ]
    )
    result.stdout.re_match_lines([r"sentry_inbox -- .*fastapi_sentry[/\\]pytest_plugin\.py:\d+"])


SENTRY_EVENTS_TESTS = """
import asyncio

import pytest
import sentry_sdk
from fastapi import FastAPI

import fastapi_sentry

DSN = "http://publickey@127.0.0.1:9/1"  # nothing listens: capture must keep it off the wire


def get(app, path):
    # one GET through the ASGI app, the way a server would call it
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"testserver")], "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
    }
    with pytest.raises(KeyError):  # the server sees the error after the 500 went out
        asyncio.run(app(scope, receive, send))
    return sent[0]["status"]


@pytest.fixture
def app_installed_first():
    app = FastAPI()

    @app.get("/boom")
    def boom():
        raise KeyError("order-42")

    fastapi_sentry.install(app, dsn=DSN, environment="test", traces_sample_rate=1.0)
    return app


def test_install_before_the_fixture(app_installed_first, sentry_events):
    assert get(app_installed_first, "/boom") == 500
    [error] = sentry_events.errors
    assert error["exception"]["values"][-1]["type"] == "KeyError"
    assert error["environment"] == "test"
    assert [t["transaction"] for t in sentry_events.transactions] == ["/boom"]
    assert sentry_events.messages == []


def test_init_after_the_fixture_and_the_helpers(sentry_events):
    assert sentry_events.events == []  # nothing leaks in from the previous test
    sentry_sdk.init(dsn=DSN, traces_sample_rate=1.0)
    sentry_sdk.capture_message("hello", level="warning")
    from sentry_sdk.crons import capture_checkin

    capture_checkin(monitor_slug="nightly", status="ok")
    with sentry_sdk.start_transaction(name="job"):
        pass
    assert [m["message"] for m in sentry_events.messages] == ["hello"]
    assert sentry_events.errors == []
    assert [c["monitor_slug"] for c in sentry_events.check_ins] == ["nightly"]
    assert [t["transaction"] for t in sentry_events.transactions] == ["job"]
    sentry_events.clear()
    assert sentry_events.events == [] and sentry_events.transactions == []


def test_a_missing_error_fails(sentry_events):
    sentry_sdk.init(dsn=DSN)
    sentry_sdk.capture_message("only a message")
    assert len(sentry_events.errors) == 1, "expected an error event"
"""


def test_sentry_events_captures_before_or_after_init(pytester: pytest.Pytester) -> None:
    run_inner(
        pytester,
        SENTRY_EVENTS_TESTS,
        passed=["test_install_before_the_fixture", "test_init_after_the_fixture_and_the_helpers"],
        failed="test_a_missing_error_fails",
        error="AssertionError: expected an error event",
    )


SENTRY_INBOX_TESTS = """
import json
import urllib.request

import pytest
import sentry_sdk

seen = {}


def test_events_reach_the_inbox_over_http(sentry_inbox):
    assert sentry_inbox.url.startswith("http://127.0.0.1:")
    assert sentry_inbox.dsn.startswith("http://") and sentry_inbox.dsn.endswith("/1")
    sentry_sdk.init(dsn=sentry_inbox.dsn, environment="ci")
    try:
        1 / 0
    except ZeroDivisionError as exc:
        event_id = sentry_sdk.capture_exception(exc)
    sentry_sdk.flush(timeout=5)
    [event] = sentry_inbox.wait_for(1, timeout=5)
    assert event["eventID"] == event_id
    assert event["environment"] == "ci"
    assert [issue["title"] for issue in sentry_inbox.issues()] == [
        "ZeroDivisionError: division by zero"
    ]
    with urllib.request.urlopen(sentry_inbox.url + "/api/0/projects/1/events/") as response:
        assert [e["eventID"] for e in json.loads(response.read())] == [event_id]
    seen["url"] = sentry_inbox.url


def test_each_test_gets_a_fresh_inbox_and_a_closed_client(sentry_inbox):
    assert sentry_sdk.get_client().transport is None  # closed at the last teardown
    assert sentry_inbox.url != seen["url"]
    assert sentry_inbox.events() == []
    with pytest.raises(OSError):
        urllib.request.urlopen(seen["url"] + "/api/0/projects/", timeout=2)


def test_waiting_for_more_than_was_sent_fails(sentry_inbox):
    sentry_sdk.init(dsn=sentry_inbox.dsn)
    sentry_sdk.capture_exception(ValueError("just one"))
    sentry_sdk.flush(timeout=5)
    sentry_inbox.wait_for(2, timeout=1)
"""


def test_sentry_inbox_is_a_real_server_per_test(pytester: pytest.Pytester) -> None:
    run_inner(
        pytester,
        SENTRY_INBOX_TESTS,
        passed=[
            "test_events_reach_the_inbox_over_http",
            "test_each_test_gets_a_fresh_inbox_and_a_closed_client",
        ],
        failed="test_waiting_for_more_than_was_sent_fails",
        error="TimeoutError: The inbox stored 1 event(s) of type 'error' within 1 s, expected at "
        "least 2",
    )


def test_sentry_inbox_without_the_extra_names_it(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makeconftest("import sys\nsys.modules['fastapi_sentry.inbox'] = None\n")
    pytester.makepyfile("def test_needs_the_inbox(sentry_inbox):\n    pass\n")
    result = pytester.runpytest_subprocess(timeout=120)
    result.assert_outcomes(errors=1)
    result.stdout.re_match_lines(
        [
            r"E\s+fastapi_sentry\._errors\.MissingExtraError: The sentry_inbox fixture needs "
            r"the inbox extra \(.*\); install it with: pip install 'fastapi-sentry\[inbox\]'$"
        ]
    )


#: The README's two example tests, verbatim: they must keep passing as documented.
README_EXAMPLES = """
import pytest
import sentry_sdk
from fastapi import FastAPI
from fastapi.testclient import TestClient

import fastapi_sentry


@pytest.fixture
def app() -> FastAPI:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, int]:
        raise LookupError(f"order {order_id} is missing")

    # any DSN will do: sentry_events keeps the envelopes in memory, nothing is sent
    fastapi_sentry.install(app, dsn="https://public@sentry.invalid/1", traces_sample_rate=1.0)
    return app


def test_a_failing_endpoint_is_reported(app, sentry_events) -> None:
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/orders/42").status_code == 500

    [error] = sentry_events.errors
    assert error["exception"]["values"][-1]["type"] == "LookupError"
    assert error["transaction"] == "/orders/{order_id}"
    assert [t["transaction"] for t in sentry_events.transactions] == ["/orders/{order_id}"]


def test_errors_arrive_over_http(sentry_inbox) -> None:
    sentry_sdk.init(dsn=sentry_inbox.dsn)
    try:
        {}["missing"]
    except KeyError as exc:
        sentry_sdk.capture_exception(exc)
    sentry_sdk.flush()

    [event] = sentry_inbox.wait_for(1, timeout=5)
    assert event["exception"]["values"][0]["type"] == "KeyError"
    assert sentry_inbox.issues()[0]["count"] == "1"
"""


def test_readme_examples_pass(pytester: pytest.Pytester) -> None:
    # Starlette 1.10 warns that its TestClient wants httpx2; the README shows the usual client.
    pytester.makeini(
        INNER_INI.replace(
            "filterwarnings = error",
            "filterwarnings =\n    error\n    ignore:Using `httpx` with `starlette.testclient`",
        )
    )
    pytester.makepyfile(README_EXAMPLES)
    result = pytester.runpytest_subprocess("-v", timeout=120)
    result.assert_outcomes(passed=2)
