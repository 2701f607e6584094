"""pytest fixtures for services using fastapi-sentry, registered through the `pytest11` entry point.

* `sentry_events`: every envelope the SDK would send during the test, kept in memory.
* `sentry_inbox`: a real inbox on a free 127.0.0.1 port, for tests that want the HTTP path.

Imports are lazy: loading the plugin must cost nothing in test suites that use neither fixture,
and `sentry_inbox` needs the `inbox` extra (uvicorn), which a project may not install.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fastapi_sentry.inbox import InboxServer
    from fastapi_sentry.testing import CapturedEnvelopes

__all__ = ["sentry_events", "sentry_inbox"]

#: How long teardown waits for a client still pointing at the inbox to send what it holds.
TEARDOWN_FLUSH_SECONDS = 2.0


@pytest.fixture
def sentry_events() -> Iterator[CapturedEnvelopes]:
    """What sentry-sdk would send during the test, as parsed dicts, without a network.

    Works whether Sentry is initialised (`install()`, `sentry_sdk.init()`) before or after the
    fixture is requested. Use `.events`, `.errors`, `.messages`, `.transactions`, `.check_ins`,
    `.logs` and `.clear()`.
    """
    from fastapi_sentry import _state
    from fastapi_sentry.testing import capture_envelopes

    try:
        with capture_envelopes() as captured:
            yield captured
    finally:
        # the next test's install() initialises again instead of reusing this test's client
        _state.reset()


@pytest.fixture
def sentry_inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InboxServer]:
    """A fastapi-sentry inbox on a free 127.0.0.1 port, on a fresh database, for this test.

    Point the SDK at `sentry_inbox.dsn`; `sentry_inbox.wait_for(count, timeout)` returns the
    stored events once there are enough. At teardown a Sentry client still sending to the inbox
    is flushed and closed, so nothing is sent to a stopped server.
    """
    try:
        from fastapi_sentry.inbox import InboxServer
    except ImportError as exc:
        from fastapi_sentry._errors import MissingExtraError

        raise MissingExtraError(
            f"The sentry_inbox fixture needs the inbox extra ({exc}); "
            "install it with: pip install 'fastapi-sentry[inbox]'"
        ) from exc

    db_path = Path(tmp_path_factory.mktemp("sentry_inbox")) / "inbox.sqlite3"
    with InboxServer(db_path) as inbox:
        try:
            yield inbox
        finally:
            _close_client_sending_to(inbox.dsn)
            from fastapi_sentry import _state

            _state.reset()


def _close_client_sending_to(dsn: str) -> None:
    import sys

    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is None:
        return
    client = sentry_sdk.get_client()
    if client.is_active() and client.dsn == dsn:
        client.close(timeout=TEARDOWN_FLUSH_SECONDS)
