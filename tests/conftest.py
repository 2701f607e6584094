"""Shared fixtures: a clean environment and SDK state per test, a real receiver, service checks."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sentry_sdk
import sentry_sdk.utils

from tests.support.receiver import Receiver
from tests.support.sdk import forget_sentry

if TYPE_CHECKING:
    from fastapi_sentry.inbox import InboxServer

#: Variables the settings read; a developer's own values must never leak into a test.
SETTINGS_VARIABLES = ("ENVIRONMENT", "APP_VERSION", "VERSION", "HOSTNAME", "DEBUG")

#: Set by tests/fastpath/test_sdk_seam.py: run the install and request-path tests on sentry-sdk's
#: own Starlette/FastAPI integrations and transport, as install() does on an untested sentry-sdk.
FORCE_FALLBACK = os.environ.get("FASTAPI_SENTRY_TEST_FALLBACK") == "1"
FALLBACK_REASON = "forced by the test suite"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under the forced fallback, tests of the lean request path itself are not collected (they
    are run in the main pass), rather than collected and skipped."""
    if not FORCE_FALLBACK:
        return
    lean = [item for item in items if item.get_closest_marker("lean_only") is not None]
    if lean:
        config.hook.pytest_deselected(items=lean)
        items[:] = [item for item in items if item.get_closest_marker("lean_only") is None]


@pytest.fixture(autouse=True)
def request_path_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    if not FORCE_FALLBACK:
        return
    from fastapi_sentry._fastpath import _sdk_seam

    monkeypatch.setattr(_sdk_seam, "PROBLEM", FALLBACK_REASON)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("SENTRY_") or name in SETTINGS_VARIABLES:
            monkeypatch.delenv(name)
    # no stray .env from the developer's working directory
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Loggers as they were: a test that starts a Celery worker in-process (which sets the root
    logger's level) must not silence the log records a later test reports."""
    import logging

    loggers = [logging.getLogger(), *(
        logger for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    )]  # fmt: skip
    saved = [(lg, lg.level, lg.disabled, lg.propagate, lg.handlers[:]) for lg in loggers]
    yield
    for logger, level, disabled, propagate, handlers in saved:
        logger.setLevel(level)
        logger.disabled = disabled
        logger.propagate = propagate
        logger.handlers[:] = handlers


@pytest.fixture(autouse=True)
def reset_sentry(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts without a Sentry client and fails if the SDK swallowed an error."""
    swallowed: list[Any] = []
    original = sentry_sdk.utils.capture_internal_exception

    def record(exc_info: Any) -> None:
        swallowed.append(exc_info)
        original(exc_info)

    sentry_sdk.utils.capture_internal_exception = record
    try:
        yield
    finally:
        sentry_sdk.utils.capture_internal_exception = original
        forget_sentry()
    if swallowed and request.node.get_closest_marker("sdk_errors_expected") is None:
        kinds = ", ".join(repr(info[1]) for info in swallowed)
        pytest.fail(f"sentry-sdk swallowed an internal error during the test: {kinds}")


@pytest.fixture
def inbox(sentry_inbox: InboxServer) -> InboxServer:
    """The shipped `sentry_inbox` (fresh database, free port, client closed at teardown), under
    the short name the inbox's own tests use."""
    return sentry_inbox


@pytest.fixture
def sentry_receiver() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, port: int) -> None:
    """A missing service is a failure, never a skip: a skipped test proves nothing."""
    if not service_reachable("127.0.0.1", port):
        pytest.fail(
            f"{name} is not reachable on 127.0.0.1:{port}; start it with "
            "`bash scripts/services.sh` (make test does)"
        )


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", 6379)
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def postgres_url() -> str:
    require_service("PostgreSQL", 5432)
    return "postgresql+psycopg://postgres@127.0.0.1:5432/test"
