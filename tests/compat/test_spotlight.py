"""Spotlight's sidecar protocol (getsentry/spotlight: `POST /stream` with an envelope, no key) with
a real sentry-python `spotlight=` client and no DSN: what a developer running Spotlight's setup
against the inbox gets."""

from __future__ import annotations

import sentry_sdk

from fastapi_sentry.inbox import InboxServer
from tests.compat.conftest import (
    PERFORMANCE,
    capture_raised,
    issue_titled,
    latest_event,
    page,
    wait_for_api,
)


class SpotlightError(Exception):
    pass


def test_error_and_transaction_through_stream(compat_inbox: InboxServer, tag: str) -> None:
    sentry_sdk.init(
        spotlight=f"{compat_inbox.url}/stream",
        traces_sample_rate=1.0,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    with sentry_sdk.start_transaction(name=f"spotlight job {tag}", op="task"):
        capture_raised(SpotlightError(f"seen in spotlight {tag}"))
    sentry_sdk.flush()
    issue = issue_titled(compat_inbox, f"SpotlightError: seen in spotlight {tag}")
    (exception,) = latest_event(compat_inbox, issue)["exception"]["values"]
    assert exception["type"] == "SpotlightError"
    assert f"seen in spotlight {tag}" in page(compat_inbox, f"/issues/{issue['id']}/")
    wait_for_api(
        compat_inbox,
        PERFORMANCE,
        lambda r: r["transaction"] == f"spotlight job {tag}",
        "the transaction",
    )
