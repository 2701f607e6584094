"""The inbox receives what sentry-sdk itself sends over its real HTTP transport and stores it."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
import uuid
import zlib
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sentry_sdk
from sentry_sdk.crons import capture_checkin
from sentry_sdk.integrations.logging import LoggingIntegration

from fastapi_sentry.inbox import InboxServer
from tests.inbox_support import auth_headers, envelope, error_event, init_sdk


def _fail(value: int) -> None:
    local_value = value * 10  # noqa: F841 - shown as a local variable on the issue page
    raise ValueError(f"bad value {value}")


def _fail_elsewhere() -> None:
    raise KeyError("missing")


def _capture(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        sentry_sdk.capture_exception()


def _api(inbox: InboxServer, path: str) -> Any:
    response = httpx.get(inbox.url + path, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_errors_are_grouped_into_issues_with_counts_users_environments_and_releases(
    inbox: InboxServer,
) -> None:
    init_sdk(inbox.dsn, environment="staging", release="app@1.0")
    for value, user in ((1, "alice"), (2, "bob"), (3, "alice")):
        sentry_sdk.set_user({"id": user})
        _capture(_fail, value)
    sentry_sdk.init(dsn=inbox.dsn, environment="production", release="app@1.1")
    sentry_sdk.set_user({"id": "carol"})
    _capture(_fail, 4)
    _capture(_fail_elsewhere)
    sentry_sdk.flush()
    inbox.wait_for(5)

    project = inbox.project
    assert project is not None
    issues = _api(inbox, f"/api/0/projects/{project.id}/issues/")
    titles = [issue["title"] for issue in issues]
    assert titles == ["KeyError: 'missing'", "ValueError: bad value 4"]
    value_error = issues[1]
    assert value_error["count"] == "4"
    assert value_error["userCount"] == 3
    assert value_error["level"] == "error"
    assert value_error["culprit"] == "tests.test_inbox_ingest in _fail"
    assert sorted(value_error["environments"]) == ["production", "staging"]
    assert sorted(value_error["releases"]) == ["app@1.0", "app@1.1"]
    assert value_error["firstSeen"] < value_error["lastSeen"]
    assert issues[0]["lastSeen"] >= value_error["lastSeen"]  # sorted by last seen

    detail = _api(inbox, f"/api/0/issues/{value_error['id']}/")
    assert detail == value_error
    latest = _api(inbox, f"/api/0/issues/{value_error['id']}/events/latest/")
    assert latest["groupID"] == value_error["id"]
    assert latest["user"]["id"] == "carol"
    frame = latest["exception"]["values"][-1]["stacktrace"]["frames"][-1]
    assert frame["function"] == "_fail"
    assert frame["vars"]["local_value"] == "40"

    filtered = _api(inbox, f"/api/0/projects/{project.id}/issues/?environment=staging")
    assert [issue["id"] for issue in filtered] == [value_error["id"]]
    assert _api(inbox, f"/api/0/projects/{project.id}/issues/?query=KeyErr")[0]["title"] == (
        "KeyError: 'missing'"
    )


def test_message_events_group_by_their_template_not_their_parameters(inbox: InboxServer) -> None:
    init_sdk(inbox.dsn, integrations=[LoggingIntegration(event_level=logging.ERROR)])
    log = logging.getLogger("tests.inbox.messages")
    for order in (17, 18, 19):
        log.error("payment for order %s failed", order)
    log.error("a different message")
    sentry_sdk.flush()
    events = inbox.wait_for(4, type="default")

    assert len({event["groupID"] for event in events}) == 2
    issues = inbox.issues()
    by_title = {issue["title"]: issue for issue in issues}
    assert by_title["payment for order 19 failed"]["count"] == "3"
    assert by_title["a different message"]["count"] == "1"


def test_a_transaction_with_spans_is_stored_and_summarised(inbox: InboxServer) -> None:
    init_sdk(inbox.dsn, traces_sample_rate=1.0)
    for _ in range(3):
        with sentry_sdk.start_transaction(name="GET /orders/{id}", op="http.server"):
            with sentry_sdk.start_span(op="db.query", name="SELECT * FROM orders"):
                time.sleep(0.02)
            with sentry_sdk.start_span(op="http.client", name="GET https://payments"):
                time.sleep(0.005)
    sentry_sdk.flush()
    transactions = inbox.wait_for(3, type="transaction")

    assert {t["transaction"] for t in transactions} == {"GET /orders/{id}"}
    assert [len(t["spans"]) for t in transactions] == [2, 2, 2]
    project = inbox.project
    assert project is not None
    listed = _api(inbox, f"/api/0/projects/{project.id}/events/?type=transaction")
    assert len(listed) == 3
    assert all(event["type"] == "transaction" for event in listed)
    assert inbox.store is not None
    (summary,) = inbox.store.performance(project.id)
    assert summary["count"] == 3
    assert 25 <= summary["p50"] <= summary["p95"] <= summary["p99"] < 5000
    assert summary["slowest_spans"][0]["op"] == "db.query"
    assert summary["slowest_spans"][0]["duration_ms"] >= 20
    page = httpx.get(f"{inbox.url}/performance/", timeout=10).text
    assert "GET /orders/{id}" in page
    assert "SELECT * FROM orders" in page


def test_a_celery_beat_check_in_is_stored(inbox: InboxServer) -> None:
    from celery import Celery
    from celery.beat import ScheduleEntry, Scheduler
    from celery.schedules import schedule
    from sentry_sdk.integrations.celery import CeleryIntegration

    init_sdk(inbox.dsn, integrations=[CeleryIntegration(monitor_beat_tasks=True)])
    app = Celery("inbox_beat_test", broker="memory://", set_as_current=False)
    app.conf.task_always_eager = True

    @app.task(name="tests.inbox.nightly", shared=False)
    def nightly() -> str:
        return "done"

    # Beat's own apply_entry, which sentry-sdk patches to open the check-in; the eager task's
    # success signal closes it.
    scheduler = Scheduler(app, lazy=True)
    entry = ScheduleEntry(
        name="nightly-report",
        task="tests.inbox.nightly",
        schedule=schedule(run_every=timedelta(minutes=10)),
        app=app,
    )
    scheduler.apply_entry(entry, producer=None)
    sentry_sdk.flush()
    check_ins = inbox.wait_for(2, type="check_in")

    assert [c["monitor_slug"] for c in check_ins] == ["nightly-report", "nightly-report"]
    assert [c["status"] for c in check_ins] == ["in_progress", "ok"]
    assert check_ins[0]["check_in_id"] == check_ins[1]["check_in_id"]
    assert check_ins[0]["monitor_config"]["schedule"] == {
        "type": "interval",
        "value": 10,
        "unit": "minute",
    }
    page = httpx.get(f"{inbox.url}/crons/", timeout=10).text
    assert page.count('class="check-in"') == 2
    assert "nightly-report" in page


def test_a_plain_crons_check_in_and_a_session_are_stored(inbox: InboxServer) -> None:
    init_sdk(inbox.dsn, release="app@2.0", environment="ci")
    capture_checkin(monitor_slug="hourly-sync", status="error", duration=1.5)
    scope = sentry_sdk.get_isolation_scope()
    scope.start_session(session_mode="application")
    scope.end_session()
    sentry_sdk.flush()

    (check_in,) = inbox.wait_for(1, type="check_in")
    assert (check_in["monitor_slug"], check_in["status"], check_in["duration"]) == (
        "hourly-sync",
        "error",
        1.5,
    )
    sessions = inbox.wait_for(1, type="session")
    assert sessions[-1]["status"] == "exited"
    assert sessions[-1]["attrs"] == {"release": "app@2.0", "environment": "ci"}


@pytest.mark.parametrize(
    "experiments",
    [
        pytest.param({"transport_compression_algo": "gzip"}, id="gzip"),
        pytest.param({"transport_compression_algo": "br"}, id="br"),
        pytest.param({"transport_compression_level": 0}, id="plain"),
    ],
)
def test_every_body_encoding_sentry_sdk_uses_is_accepted(
    inbox: InboxServer, experiments: dict[str, Any]
) -> None:
    init_sdk(inbox.dsn, _experiments=experiments)
    sentry_sdk.capture_message("encoded")
    sentry_sdk.flush()
    (event,) = inbox.wait_for(1, type="default")
    assert event["message"] == "encoded"


def test_deflate_and_the_sentry_key_query_parameter_are_accepted(inbox: InboxServer) -> None:
    assert inbox.project is not None
    body = zlib.compress(error_event(value="deflated"))
    response = httpx.post(
        f"{inbox.url}/api/{inbox.project.id}/envelope/?sentry_key={inbox.project.public_key}",
        content=body,
        headers={"Content-Encoding": "deflate"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    (event,) = inbox.events(type="error")
    assert event["exception"]["values"][0]["value"] == "deflated"
    assert response.json() == {"id": event["eventID"]}


def test_spotlight_option_sends_to_the_stream_endpoint(inbox: InboxServer) -> None:
    sentry_sdk.init(spotlight=f"{inbox.url}/stream", default_integrations=False)
    sentry_sdk.capture_message("via spotlight")
    sentry_sdk.flush()
    (event,) = inbox.wait_for(1, type="default")
    assert event["message"] == "via spotlight"


def test_the_legacy_store_endpoint_accepts_a_json_event(inbox: InboxServer) -> None:
    assert inbox.project is not None
    event_id = uuid.uuid4().hex
    response = httpx.post(
        f"{inbox.url}/api/{inbox.project.id}/store/",
        json={"event_id": event_id, "message": "stored the old way"},
        headers={"X-Sentry-Auth": f"Sentry sentry_key={inbox.project.public_key}"},
        timeout=10,
    )
    assert response.json() == {"id": event_id}
    assert [e["message"] for e in inbox.events(type="default")] == ["stored the old way"]


def test_attachments_keep_metadata_and_unknown_items_are_kept_raw(inbox: InboxServer) -> None:
    init_sdk(inbox.dsn)
    sentry_sdk.get_isolation_scope().add_attachment(
        bytes=b"x" * 1000, filename="dump.txt", content_type="text/plain"
    )
    sentry_sdk.capture_message("with attachment")
    sentry_sdk.flush()
    inbox.wait_for(1, type="default")
    (attachment,) = inbox.events(type="attachment")
    assert attachment["filename"] == "dump.txt"
    assert attachment["content_type"] == "text/plain"
    assert attachment["size"] == 1000

    assert inbox.project is not None
    body = envelope(({"type": "future_item"}, b"\x00\x01 not json \xff"))
    response = httpx.post(
        f"{inbox.url}/api/{inbox.project.id}/envelope/",
        content=body,
        headers=auth_headers(inbox.project.public_key),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    (raw,) = inbox.events(type="future_item")
    assert raw["raw_size"] == len(b"\x00\x01 not json \xff")
    assert inbox.store is not None
    with contextlib.closing(sqlite3.connect(inbox.db_path)) as conn:
        (stored,) = conn.execute("SELECT raw FROM events WHERE type = 'future_item'").fetchone()
    assert stored == b"\x00\x01 not json \xff"


def test_a_200_means_the_event_is_already_committed(inbox: InboxServer) -> None:
    """Read with a separate SQLite connection right after each answer: no waiting allowed."""
    assert inbox.project is not None
    url = f"{inbox.url}/api/{inbox.project.id}/envelope/"
    with (
        httpx.Client(headers=auth_headers(inbox.project.public_key), timeout=10) as client,
        contextlib.closing(sqlite3.connect(inbox.db_path)) as conn,
    ):
        for number in range(30):
            response = client.post(url, content=error_event(value=f"committed {number}"))
            event_id = response.json()["id"]
            row = conn.execute("SELECT type FROM events WHERE event_id = ?", (event_id,)).fetchone()
            assert row == ("error",), f"event {number} was answered 200 before it was committed"


def test_a_retried_event_is_stored_once(inbox: InboxServer) -> None:
    assert inbox.project is not None
    body = error_event(value="sent twice")
    for _ in range(2):
        response = httpx.post(
            f"{inbox.url}/api/{inbox.project.id}/envelope/",
            content=body,
            headers=auth_headers(inbox.project.public_key),
            timeout=10,
        )
        assert response.status_code == 200
    assert len(inbox.events(type="error")) == 1
    assert inbox.issues()[0]["count"] == "1"


def test_wait_for_names_the_count_it_saw(inbox: InboxServer) -> None:
    with pytest.raises(TimeoutError, match=r"stored 0 event\(s\) of type 'error' within 0.2 s"):
        inbox.wait_for(1, timeout=0.2)


def test_logs_and_client_reports_are_stored(inbox: InboxServer) -> None:
    from sentry_sdk import logger as sentry_logger

    init_sdk(inbox.dsn, enable_logs=True, environment="ci", before_send=lambda event, hint: None)
    sentry_logger.info("order {order_id} shipped", order_id=7)
    sentry_logger.error("disk almost full")
    sentry_sdk.capture_message("dropped by before_send")
    sentry_sdk.flush()

    logs = inbox.wait_for(2, type="log")
    assert [log["body"] for log in logs] == ["order 7 shipped", "disk almost full"]
    assert [log["level"] for log in logs] == ["info", "error"]
    assert logs[0]["attributes"]["sentry.message.template"]["value"] == "order {order_id} shipped"
    (report,) = inbox.wait_for(1, type="client_report")
    assert {"reason": "before_send", "category": "error", "quantity": 1} in report[
        "discarded_events"
    ]
    assert inbox.events(type="error,default") == []


def test_the_inbox_does_not_trace_itself_when_the_sdk_shares_its_process(
    inbox: InboxServer,
) -> None:
    """Under the pytest plugin the SDK (with its auto-enabled Starlette integration and tracing)
    runs in the inbox's process; tracing the inbox's own requests would feed back forever."""
    sentry_sdk.init(dsn=inbox.dsn, traces_sample_rate=1.0)
    sentry_sdk.capture_message("one")
    sentry_sdk.flush()
    inbox.wait_for(1, type="default")
    assert httpx.get(inbox.url + "/", timeout=10).status_code == 200
    assert httpx.get(inbox.url + "/api/0/projects/", timeout=10).status_code == 200
    assert httpx.get(inbox.url + "/no-such-page", timeout=10).status_code == 404
    # A marker sent after those requests: a transaction of theirs would be queued ahead of it in
    # the SDK's worker, so once the marker is stored and the SDK flushed, it would be stored too.
    sentry_sdk.capture_message("marker")
    sentry_sdk.flush()
    inbox.wait_for(2, type="default")
    sentry_sdk.flush()
    assert [e["transaction"] for e in inbox.events(type="transaction")] == []
    assert len(inbox.events(type="default")) == 2


def test_integers_past_64_bits_come_back_exact(inbox: InboxServer) -> None:
    """The fast JSON parser turns such integers into floats; the inbox must not lose a digit of an
    order number or a snowflake id an app put into extra data. The over-long transaction name is
    trimmed, so the stored event is the parsed one written again, not the bytes received."""
    from tests.inbox_support import post_envelope

    big = 123456789012345678901234567890
    body = error_event(value="big ids", extra={"order": big, "n": 7}, transaction="/t" * 200)
    response = post_envelope(inbox, body)
    assert response.status_code == 200, response.text
    (event,) = inbox.events(type="error")
    assert event["transaction"].endswith("...")  # rewritten from the parsed payload
    assert event["extra"] == {"order": big, "n": 7}
