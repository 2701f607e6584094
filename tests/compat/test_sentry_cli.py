"""sentry-cli (npm `@sentry/cli`, whose package carries the binary): `send-event` with a message
and parameters, `monitors run` around a passing and a failing command, `send-envelope` of a
saved envelope (tests/compat/data/saved.envelope)."""

from __future__ import annotations

from pathlib import Path

from fastapi_sentry.inbox import InboxServer
from tests.compat.conftest import (
    DATA,
    EVENTS,
    client_env,
    issue_titled,
    latest_event,
    package_version,
    page,
    run_client,
    wait_for_api,
)


def test_send_event_title_is_the_message_with_its_parameters(
    compat_inbox: InboxServer, sentry_cli: Path, tag: str
) -> None:
    argv = [str(sentry_cli), "send-event", "-m", "Hello %s", "-a", tag, "--no-environ"]
    run_client([*argv, "--release", "cli-compat@1.0"], client_env(compat_inbox.dsn))
    # Sentry's title: logentry.formatted, which Relay fills in from message and params
    issue = issue_titled(compat_inbox, f"Hello {tag}")
    assert issue["type"] == "default"
    event = latest_event(compat_inbox, issue)
    assert event["logentry"] == {"message": "Hello %s", "params": [tag]}
    assert event["sdk"] == {"name": "sentry-cli", "version": package_version("@sentry/cli")}
    assert f"Hello {tag}" in page(compat_inbox, f"/issues/{issue['id']}/")


def test_monitors_run_reports_ok_and_error(
    compat_inbox: InboxServer, sentry_cli: Path, tag: str
) -> None:
    env = client_env(compat_inbox.dsn)
    run_client([str(sentry_cli), "monitors", "run", f"cli-ok-{tag}", "--", "true"], env)
    # the failing command's exit status comes back through sentry-cli
    run_client([str(sentry_cli), "monitors", "run", f"cli-fail-{tag}", "--", "false"], env, 1)
    check_ins = wait_for_api(
        compat_inbox,
        EVENTS,
        lambda e: tag in str(e.get("monitor_slug")),
        "the check-ins",
        count=4,
        type="check_in",
    )
    by_slug: dict[str, list[str]] = {}
    for check_in in reversed(check_ins):  # the API lists newest first
        by_slug.setdefault(check_in["monitor_slug"], []).append(check_in["status"])
    assert by_slug == {
        f"cli-ok-{tag}": ["in_progress", "ok"],
        f"cli-fail-{tag}": ["in_progress", "error"],
    }
    crons = page(compat_inbox, "/crons/")
    assert f"cli-ok-{tag}" in crons
    assert f"cli-fail-{tag}" in crons


def test_send_envelope_of_a_saved_file(compat_inbox: InboxServer, sentry_cli: Path) -> None:
    envelope = DATA / "saved.envelope"
    run_client([str(sentry_cli), "send-envelope", str(envelope)], client_env(compat_inbox.dsn))
    issue = issue_titled(compat_inbox, "saved envelope for sentry-cli")
    event = latest_event(compat_inbox, issue)
    assert event["event_id"] == "5f0d3c2a9b7e4e6f8a1b2c3d4e5f6a7b"
    assert event["tags"] == {"source": "saved-envelope"}
