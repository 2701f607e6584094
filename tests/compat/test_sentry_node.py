"""The JavaScript SDK `@sentry/node` (latest from npm, run by the machine's node): one small
script per case in tests/compat/node/, taking the DSN from the environment, flushing and exiting.
"""

from __future__ import annotations

from pathlib import Path

from fastapi_sentry.inbox import InboxServer
from tests.compat.conftest import (
    EVENTS,
    ISSUES,
    LOGS,
    NODE_SCRIPTS,
    PERFORMANCE,
    api,
    client_env,
    issue_titled,
    latest_event,
    package_version,
    page,
    run_client,
    run_node,
    wait_for_api,
)


def test_exception_title_type_and_value(
    compat_inbox: InboxServer, node_modules: Path, tag: str
) -> None:
    run_node("exception.cjs", compat_inbox.dsn, tag)
    issue = issue_titled(compat_inbox, f"TypeError: node compat {tag}")
    assert (issue["type"], issue["level"]) == ("error", "error")
    assert issue["metadata"] == {"type": "TypeError", "value": f"node compat {tag}"}
    event = latest_event(compat_inbox, issue)
    (exception,) = event["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("TypeError", f"node compat {tag}")
    assert event["sdk"]["version"] == package_version("@sentry/node")
    assert (event["release"], event["environment"]) == ("node-compat@1.0", "compat")
    assert f"TypeError: node compat {tag}" in page(compat_inbox, f"/issues/{issue['id']}/")


def test_message_is_titled_as_sentry_titles_it(
    compat_inbox: InboxServer, node_modules: Path, tag: str
) -> None:
    # The SDK attaches a synthetic stack trace to a message: Sentry titles such an issue by the
    # crash location's function (here the script's `main`), not by the message.
    run_node("message.cjs", compat_inbox.dsn, tag)
    text = f"node message {tag}"
    (issue,) = wait_for_api(
        compat_inbox,
        ISSUES,
        lambda i: i["metadata"].get("value") == text,
        f"issue of {text!r}",
        query="",
    )
    assert (issue["title"], issue["level"], issue["culprit"]) == ("main", "warning", "")
    assert latest_event(compat_inbox, issue)["message"] == text


def test_log_is_stored_with_level_and_body(
    compat_inbox: InboxServer, node_modules: Path, tag: str
) -> None:
    run_node("log.cjs", compat_inbox.dsn, tag)
    (log,) = wait_for_api(
        compat_inbox, EVENTS, lambda e: e.get("body") == f"node log {tag}", "the log", type="log"
    )
    assert log["level"] == "warn"
    assert log["attributes"]["answer"] == {"value": 42, "type": "integer"}


def test_log_on_the_logs_api(compat_inbox: InboxServer, node_modules: Path, tag: str) -> None:
    run_node("log.cjs", compat_inbox.dsn, tag)
    (log,) = wait_for_api(
        compat_inbox, LOGS, lambda r: f"node log {tag}" in str(r), "the log", query=tag
    )
    assert "warn" in str(log.get("level") or log.get("severity"))
    assert f"node log {tag}" in page(compat_inbox, "/logs/")


def test_streamed_span_in_performance_and_trace_view(
    compat_inbox: InboxServer, node_modules: Path, tag: str
) -> None:
    # @sentry/node 11 sends no transaction: a span v2 segment with its child
    done = run_client(
        ["node", str(NODE_SCRIPTS / "span.cjs")], client_env(compat_inbox.dsn, COMPAT_TAG=tag)
    )
    trace_id = done.stdout.strip().splitlines()[-1]
    wait_for_api(
        compat_inbox, PERFORMANCE, lambda r: r["transaction"] == f"node job {tag}", "segment"
    )
    trace = api(compat_inbox, f"/api/0/projects/{{p}}/traces/{trace_id}/")
    assert f"node job {tag}" in str(trace)
    assert "SELECT 1" in str(trace)
    assert f"node job {tag}" in page(compat_inbox, f"/traces/{trace_id}/")
