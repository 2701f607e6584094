"""What the README promises about logging holds under Python's default logging configuration.

The app runs under the plain `uvicorn module:app` command (no logging configured: root at WARNING,
no handlers) and sends to a real receiver. Its INFO records become breadcrumbs; what it prints is
what it printed before: an app that configured WARNING prints no INFO line. Our start-up line
shows once, and never the DSN's key.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import fastapi_sentry
from fastapi_sentry import _logs, load_settings
from tests.support.plain_uvicorn import plain_uvicorn
from tests.support.receiver import Receiver

APP = """
import logging, os
from fastapi import FastAPI
import fastapi_sentry
from fastapi_sentry import ConfigError, load_settings

if os.environ.get("BASIC_LEVEL"):
    logging.basicConfig(level=os.environ["BASIC_LEVEL"])
log = logging.getLogger(__name__)
app = FastAPI()
fastapi_sentry.install(app)

@app.get("/boom")
def boom() -> None:
    log.debug("debug-record-7 %s", "never")
    log.info("info-record-7 order=%s", 42)
    log.warning("warning-record-7")
    raise RuntimeError("boom-7")
"""

STARTUP = "Sentry is on:"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def _run(tmp_path: Path, receiver: Receiver, basic_level: str | None) -> tuple[str, dict[str, Any]]:
    """Serve the app, raise once, wait for the error event; the full stderr and the event."""
    (tmp_path / "svc.py").write_text(APP)
    env = {"SENTRY_DSN": receiver.dsn, "SENTRY_ENVIRONMENT": "test"}
    if basic_level:
        env["BASIC_LEVEL"] = basic_level
    with plain_uvicorn("svc:app", cwd=tmp_path, env=env) as server:
        assert httpx.get(server.url + "/boom", timeout=10).status_code == 500
        (event,) = [e for e in receiver.wait_for_items("event", 1) if "exception" in e]
        stderr = server.stop()
    return stderr, event


def _app_breadcrumbs(event: dict[str, Any]) -> list[str]:
    crumbs = event["breadcrumbs"]["values"]
    return [b.get("message", "") for b in crumbs if b.get("category") == "svc"]


def test_default_logging_info_becomes_a_breadcrumb_and_prints_nothing_new(
    tmp_path: Path, receiver: Receiver
) -> None:
    stderr, event = _run(tmp_path, receiver, None)

    assert _app_breadcrumbs(event) == ["info-record-7 order=42", "warning-record-7"]
    # printed as before: the warning (Python's last-resort handler), no INFO, no DEBUG
    assert stderr.count("warning-record-7") == 1
    assert "info-record-7" not in stderr
    assert "debug-record-7" not in stderr
    # the start-up line, once, without the DSN's key
    assert stderr.count(STARTUP) == 1, stderr
    assert "publickey" not in stderr


def test_basic_config_warning_prints_no_info_line_and_still_gets_breadcrumbs(
    tmp_path: Path, receiver: Receiver
) -> None:
    stderr, event = _run(tmp_path, receiver, "WARNING")

    assert _app_breadcrumbs(event) == ["info-record-7 order=42", "warning-record-7"]
    assert "WARNING:svc:warning-record-7" in stderr
    # neither the app's INFO nor ours: the app asked for WARNING
    assert "info-record-7" not in stderr
    assert STARTUP not in stderr


def test_basic_config_info_prints_the_startup_line_once_through_the_app_configuration(
    tmp_path: Path, receiver: Receiver
) -> None:
    stderr, event = _run(tmp_path, receiver, "INFO")

    assert stderr.count(STARTUP) == 1, stderr
    assert f"INFO:fastapi_sentry._setup:{STARTUP}" in stderr
    assert stderr.count("INFO:svc:info-record-7 order=42") == 1
    assert _app_breadcrumbs(event) == ["info-record-7 order=42", "warning-record-7"]


# --- in process: the rules behind it --------------------------------------------------------


def test_debug_records_are_still_refused_before_a_record_is_built(receiver: Receiver) -> None:
    """Records below the breadcrumb level cost what they cost before: the level check says no."""
    app_logger = logging.getLogger("tests.app_module")
    fastapi_sentry.install(FastAPI(), dsn=receiver.dsn)

    assert app_logger.isEnabledFor(logging.INFO)
    assert not app_logger.isEnabledFor(logging.DEBUG)
    # other libraries are left alone (SQLAlchemy logs every statement once INFO is enabled)
    assert not logging.getLogger("sqlalchemy.engine.Engine").isEnabledFor(logging.INFO)


def test_the_apps_levels_decide_what_is_printed_and_a_later_set_level_wins(
    receiver: Receiver,
) -> None:
    app_logger = logging.getLogger("tests")
    app_logger.setLevel(logging.ERROR)
    try:
        fastapi_sentry.install(FastAPI(), dsn=receiver.dsn)
        # breadcrumbs from INFO, printing from the app's ERROR
        assert app_logger.isEnabledFor(logging.INFO)
        assert _logs.printed_level(logging.getLogger("tests.app_module")) == logging.ERROR
        # the app's own setLevel after install() is obeyed as it is
        app_logger.setLevel(logging.WARNING)
        assert not app_logger.isEnabledFor(logging.INFO)
    finally:
        app_logger.setLevel(logging.NOTSET)


def test_breadcrumb_loggers_and_level_settings(receiver: Receiver) -> None:
    fastapi_sentry.install(
        FastAPI(), dsn=receiver.dsn, breadcrumb_loggers=["billing"], breadcrumb_level="debug"
    )
    assert logging.getLogger("billing.jobs").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("tests").isEnabledFor(logging.INFO)
    # what prints is what root lets through (WARNING by default; another test may have left more)
    assert _logs.printed_level(logging.getLogger("billing.jobs")) == logging.getLogger().level


def test_reset_gives_the_levels_back(receiver: Receiver) -> None:
    before = logging.getLogger().level
    fastapi_sentry.install(FastAPI(), dsn=receiver.dsn, breadcrumb_loggers=["root"])
    assert logging.getLogger().level == logging.INFO
    _logs.reset()
    assert logging.getLogger().level == before
    assert type(logging.getLogger().level) is int


@pytest.mark.parametrize(
    ("caller", "package"),
    [
        ("shop.api.orders", "shop"),
        ("app", "app"),
        ("__main__", "__main__"),
        ("fastapi_sentry.examples.shop.app", "fastapi_sentry.examples.shop"),
        ("fastapi_sentry._cli.demo", None),
        (None, None),
    ],
)
def test_the_apps_package_is_the_callers_top_level_package(
    caller: str | None, package: str | None
) -> None:
    assert _logs.app_package(caller) == package


def test_settings_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_BREADCRUMB_LEVEL", "debug")
    monkeypatch.setenv("SENTRY_BREADCRUMB_LOGGERS", "shop, billing.jobs")
    monkeypatch.setenv("SENTRY_IN_APP_INCLUDE", "shop")
    monkeypatch.setenv("SENTRY_IN_APP_EXCLUDE", "shop.vendored,legacy")
    settings = load_settings()
    assert settings.breadcrumb_level == "DEBUG"
    assert settings.breadcrumb_loggers == ["shop", "billing.jobs"]
    assert settings.in_app_include == ["shop"]
    assert settings.in_app_exclude == ["shop.vendored", "legacy"]
