"""Health checks: the app registers its own (database, Redis, broker); `GET /health` runs them all.

The registry lives on `app.state`, so each app has its own and tests never share one. Checks run
concurrently, each under its own timeout. A sync check runs in a worker thread that cannot be
killed, so a check still running from an earlier request is reported as failing instead of
starting another thread: a hung database driver costs one thread, not one per probe.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.to_thread
from starlette.applications import Starlette

from fastapi_sentry._errors import ConfigError
from fastapi_sentry._settings import SentrySettings
from fastapi_sentry._state import active_sdk

logger = logging.getLogger(__name__)

#: Attribute of `app.state` that holds the registered checks, by name.
REGISTRY_ATTRIBUTE = "fastapi_sentry_health_checks"
#: Name of the built-in check; an app cannot register its own under it.
SENTRY_CHECK = "sentry"

HealthStatus = Literal["healthy", "degraded", "unhealthy"]
CheckFunction = Callable[[], Any]
"""A sync or async callable: returning False (or raising, or timing out) means failing."""


@dataclass
class HealthCheck:
    """One registered check; `critical` decides whether its failure is unhealthy or degraded."""

    name: str
    check: CheckFunction
    critical: bool = True
    timeout: float = 2.0
    _busy: threading.Event = field(default_factory=threading.Event, repr=False)


@dataclass
class CheckResult:
    name: str
    healthy: bool
    critical: bool
    duration_ms: float
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "critical": self.critical,
            "duration_ms": self.duration_ms,
            "message": self.message,
        }


def add_health_check(
    app: Starlette,
    name: str,
    check: CheckFunction,
    *,
    critical: bool = True,
    timeout: float = 2.0,
) -> None:
    """Register `check` under `name` for `GET /health` on this app.

    `check` is a sync or async callable taking no arguments; it passes unless it returns False,
    raises, or takes longer than `timeout` seconds. Sync checks run in a worker thread; an async
    one must not block the event loop, or its timeout cannot interrupt it. A failing critical
    check makes the service `unhealthy` (HTTP 503); a failing non-critical one makes it
    `degraded` (HTTP 200).
    Raises `ConfigError` for a bad name, a duplicate, a non-callable check or a bad timeout.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"health check name {name!r} is empty; give each check a short name.")
    if name == SENTRY_CHECK:
        raise ConfigError(
            f"health check name {name!r} is taken by the built-in Sentry check; pick another name."
        )
    if not callable(check):
        raise ConfigError(
            f"health check {name!r} got {check!r}, which is not callable; pass a function "
            "that returns True/None when healthy."
        )
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigError(
            f"health check {name!r} has timeout {timeout!r}; it must be a number of seconds > 0."
        )
    registry = health_checks(app)
    if name in registry:
        raise ConfigError(
            f"health check {name!r} is already registered on this app; use another name."
        )
    registry[name] = HealthCheck(name=name, check=check, critical=critical, timeout=float(timeout))


def health_checks(app: Starlette) -> dict[str, HealthCheck]:
    """The app's registry, created on first use."""
    registry: dict[str, HealthCheck] | None = getattr(app.state, REGISTRY_ATTRIBUTE, None)
    if registry is None:
        registry = {}
        setattr(app.state, REGISTRY_ATTRIBUTE, registry)
    return registry


def _in_thread(check: HealthCheck) -> Any:
    # Set here, not before starting the thread: a thread cancelled before it starts never runs.
    check._busy.set()
    try:
        return check.check()
    finally:
        check._busy.clear()


async def _call(check: HealthCheck) -> Any:
    if inspect.iscoroutinefunction(check.check):
        result = await check.check()
    else:
        if check._busy.is_set():
            raise _StillRunningError
        result = await anyio.to_thread.run_sync(_in_thread, check, abandon_on_cancel=True)
    if inspect.isawaitable(result):  # a sync callable that returned a coroutine
        result = await result
    return result


class _StillRunningError(Exception):
    pass


async def run_check(check: HealthCheck) -> CheckResult:
    """Run one check under its timeout; the result never says more than the exception's type.

    Exception messages can hold connection strings and passwords, so they go to the log only.
    """
    start = time.perf_counter()
    healthy = False
    message: str | None = None
    with anyio.move_on_after(check.timeout) as scope:
        try:
            result = await _call(check)
        except _StillRunningError:
            message = "still running from an earlier request (is it hung?)"
        except Exception as exc:
            message = f"raised {type(exc).__name__}"
            # The traceback only at DEBUG: a driver's message can carry the connection password.
            logger.warning("Health check %r failed: %s.", check.name, message)
            logger.debug("Health check %r failed.", check.name, exc_info=True)
        else:
            healthy = result is not False
            if not healthy:
                message = "returned False"
    if scope.cancelled_caught:
        healthy = False
        message = f"timed out after {check.timeout:g} s"
        logger.warning("Health check %r timed out after %g s.", check.name, check.timeout)
    duration_ms = round((time.perf_counter() - start) * 1000, 3)
    return CheckResult(check.name, healthy, check.critical, duration_ms, message)


def sentry_check(settings: SentrySettings) -> CheckResult:
    """Built-in, never critical: errors not reaching Sentry must not take the service down."""
    start = time.perf_counter()
    healthy, message = True, "Sentry is disabled (SENTRY_DSN is not set)"
    if settings.is_active:
        sdk = active_sdk()
        client = sdk.get_client() if sdk is not None else None
        if client is None:
            healthy = False
            message = "SENTRY_DSN is set but the SDK is not initialised; call install(app)"
        elif getattr(client, "transport", None) is None:
            healthy = False
            message = "the Sentry client has no transport; events are not being sent"
        else:
            message = "Sentry client active"
    elif not settings.enabled and settings.dsn is not None:
        message = "Sentry is switched off (SENTRY_ENABLED=false)"
    duration_ms = round((time.perf_counter() - start) * 1000, 3)
    return CheckResult(SENTRY_CHECK, healthy, False, duration_ms, message)


async def run_health_checks(
    app: Starlette, settings: SentrySettings
) -> tuple[HealthStatus, dict[str, CheckResult]]:
    """Run every check concurrently; overall status is the worst of them."""
    checks = list(health_checks(app).values())
    results: dict[str, CheckResult] = {SENTRY_CHECK: sentry_check(settings)}

    async def run_into(check: HealthCheck) -> None:
        results[check.name] = await run_check(check)

    async with anyio.create_task_group() as group:
        for check in checks:
            group.start_soon(run_into, check)

    status: HealthStatus = "healthy"
    for result in results.values():
        if not result.healthy:
            if result.critical:
                status = "unhealthy"
                break
            status = "degraded"
    return status, results
