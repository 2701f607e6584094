"""sentry-python (the installed version), as a service would use it, into the real inbox: errors,
messages, transactions, sessions, cron check-ins, and (once the inbox has them) logs and streamed
spans. Each test asserts what the inbox's JSON API, and where cheap its pages, show."""

from __future__ import annotations

import logging

import pytest
import sentry_sdk
import sentry_sdk.crons
import sentry_sdk.logger
import sentry_sdk.traces
from sentry_sdk.integrations.logging import LoggingIntegration

from fastapi_sentry.inbox import InboxServer
from tests.compat.conftest import (
    EVENTS,
    LOGS,
    PERFORMANCE,
    RELEASES,
    api,
    capture_raised,
    issue_titled,
    latest_event,
    page,
    rows,
    wait_for_api,
)
from tests.inbox_support import init_sdk


class CompatError(Exception):
    pass


def test_exception_title_type_and_value(compat_inbox: InboxServer, tag: str) -> None:
    init_sdk(compat_inbox.dsn, release="py-compat@1.0", environment="compat")
    capture_raised(CompatError(f"python compat {tag}"))
    sentry_sdk.flush()
    issue = issue_titled(compat_inbox, f"CompatError: python compat {tag}")
    assert issue["type"] == "error"
    assert issue["metadata"]["type"] == "CompatError"
    assert issue["metadata"]["value"] == f"python compat {tag}"
    (exception,) = latest_event(compat_inbox, issue)["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("CompatError", f"python compat {tag}")
    assert f"CompatError: python compat {tag}" in page(compat_inbox, f"/issues/{issue['id']}/")


def test_logged_message_title_is_the_formatted_message(compat_inbox: InboxServer, tag: str) -> None:
    # the logging integration sends logentry with message, params and formatted
    init_sdk(compat_inbox.dsn, integrations=[LoggingIntegration(event_level=logging.ERROR)])
    logging.getLogger("compat.orders").error("order %s failed", tag)
    sentry_sdk.flush()
    issue = issue_titled(compat_inbox, f"order {tag} failed")
    assert issue["type"] == "default"
    assert latest_event(compat_inbox, issue)["logentry"]["message"] == "order %s failed"


def test_transaction_in_the_performance_figures(compat_inbox: InboxServer, tag: str) -> None:
    init_sdk(compat_inbox.dsn, traces_sample_rate=1.0, release="py-compat@1.0")
    with (
        sentry_sdk.start_transaction(name=f"py job {tag}", op="task") as transaction,
        sentry_sdk.start_span(op="db", name="SELECT 1"),
    ):
        pass
    sentry_sdk.flush()
    (row,) = wait_for_api(
        compat_inbox, PERFORMANCE, lambda r: r["transaction"] == f"py job {tag}", "transaction"
    )
    assert row["count"] == 1
    trace = api(compat_inbox, f"/api/0/projects/{{p}}/traces/{transaction.trace_id}/")
    assert f"py job {tag}" in str(trace)


def test_session_in_release_health(compat_inbox: InboxServer, tag: str) -> None:
    release = f"py-health@{tag}"
    init_sdk(compat_inbox.dsn, release=release, environment="compat")
    scope = sentry_sdk.get_isolation_scope()
    scope.start_session(session_mode="application")
    capture_raised(CompatError("handled"))  # the session ends errored
    scope.end_session()
    sentry_sdk.flush()
    (health,) = wait_for_api(
        compat_inbox, RELEASES, lambda r: r["version"] == release, f"release {release}"
    )
    data = health["healthData"]
    assert (data["totalSessions"], data["sessionsErrored"], data["sessionsCrashed"]) == (1, 1, 0)
    assert release in page(compat_inbox, "/releases/")


def test_cron_check_ins_ok_and_error(compat_inbox: InboxServer, tag: str) -> None:
    init_sdk(compat_inbox.dsn)
    with sentry_sdk.crons.monitor(monitor_slug=f"py-ok-{tag}"):
        pass
    with pytest.raises(CompatError), sentry_sdk.crons.monitor(monitor_slug=f"py-fail-{tag}"):
        raise CompatError("the nightly job failed")
    sentry_sdk.flush()
    finals = wait_for_api(
        compat_inbox,
        EVENTS,
        lambda e: tag in str(e.get("monitor_slug")) and e["status"] != "in_progress",
        "the final check-ins",
        count=2,
        type="check_in",
    )
    assert {e["monitor_slug"]: e["status"] for e in finals} == {
        f"py-ok-{tag}": "ok",
        f"py-fail-{tag}": "error",
    }
    crons = page(compat_inbox, "/crons/")
    assert f"py-ok-{tag}" in crons
    assert f"py-fail-{tag}" in crons


def test_log_on_the_logs_api(compat_inbox: InboxServer, tag: str) -> None:
    init_sdk(compat_inbox.dsn, enable_logs=True, release="py-compat@1.0")
    sentry_sdk.logger.warning("stock low for {sku}", sku=f"sku-{tag}")
    sentry_sdk.flush()
    (log,) = wait_for_api(
        compat_inbox, LOGS, lambda r: tag in str(r), f"the log of {tag}", query=tag
    )
    assert f"stock low for sku-{tag}" in str(log)
    assert "warn" in str(log.get("level") or log.get("severity"))
    assert tag in page(compat_inbox, "/logs/")


def test_streamed_segment_in_the_performance_figures(compat_inbox: InboxServer, tag: str) -> None:
    init_sdk(compat_inbox.dsn, traces_sample_rate=1.0, trace_lifecycle="stream")
    with (
        sentry_sdk.traces.start_span(name=f"py streamed {tag}") as segment,
        sentry_sdk.traces.start_span(name="SELECT 1"),
    ):
        pass
    sentry_sdk.flush()
    wait_for_api(
        compat_inbox, PERFORMANCE, lambda r: r["transaction"] == f"py streamed {tag}", "segment"
    )
    trace = api(compat_inbox, f"/api/0/projects/{{p}}/traces/{segment.trace_id}/")
    assert f"py streamed {tag}" in str(trace)
    assert rows(api(compat_inbox, EVENTS, type="transaction", query=f"py streamed {tag}"))
