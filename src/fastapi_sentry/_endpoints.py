"""The operational router: `GET /health`, `GET /sentry/status`, `/sentry-debug` in development,
and `GET /metrics` when asked for.

Nothing here imports sentry_sdk: with Sentry disabled the status reads the settings alone, and
with it enabled the SDK is already in `sys.modules` (install imported it).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from fastapi_sentry._errors import SentryDebugError
from fastapi_sentry._health import run_health_checks
from fastapi_sentry._helpers import capture_exception
from fastapi_sentry._pipeline import latest_event_id
from fastapi_sentry._settings import SentrySettings, dsn_summary
from fastapi_sentry._state import active_sdk

logger = logging.getLogger(__name__)

DEBUG_ERROR_MESSAGE = (
    "Test error raised on purpose by GET /sentry-debug, to check that errors reach Sentry."
)
DEBUG_SENT_DETAIL = "Test error raised and reported to Sentry; look for the event id there."
DEBUG_DISABLED_DETAIL = (
    "Test error raised, but Sentry is disabled (no SENTRY_DSN, or not installed), so it was "
    "not reported; set SENTRY_DSN and call fastapi_sentry.install(app)."
)


def build_router(settings: SentrySettings) -> APIRouter:
    """The router `install` mounts (under `settings.endpoints_prefix`).

    `/sentry-debug` is only added when `settings.debug_endpoint_enabled` (SENTRY_DEBUG/DEBUG true
    or a development environment); elsewhere the path does not exist, so it answers 404.
    """
    router = APIRouter(tags=["operations"])

    @router.get("/health", summary="Service health with per-check results")
    async def health(request: Request) -> JSONResponse:
        """`healthy`, `degraded` (a non-critical check failed) or `unhealthy` (HTTP 503)."""
        status, results = await run_health_checks(request.app, settings)
        body = {
            "status": status,
            "version": settings.effective_release or getattr(request.app, "version", None),
            "environment": settings.environment,
            "checks": {name: result.as_dict() for name, result in sorted(results.items())},
        }
        return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)

    @router.get("/sentry/status", summary="What the Sentry SDK is configured to do")
    async def sentry_status() -> dict[str, Any]:
        """Configuration as the SDK sees it; the DSN shows as host and project id, never the key."""
        return status_report(settings)

    if settings.metrics_endpoint:
        from fastapi_sentry import _metrics

        _metrics.require_prometheus()

        @router.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            """The integration's state for Prometheus: sent, dropped, queued, paused."""
            body, content_type = _metrics.render()
            return Response(body, media_type=content_type)

    if settings.debug_endpoint_enabled:

        @router.get("/sentry-debug", include_in_schema=False)
        async def sentry_debug() -> JSONResponse:
            """Raise and report a test error; the 500 body carries the event id.

            Caught and reported here rather than left to the framework, because only then can the
            response carry the id; nothing else reports it, so it arrives exactly once.
            """
            try:
                raise SentryDebugError(DEBUG_ERROR_MESSAGE)
            except SentryDebugError as exc:
                event_id = capture_exception(exc, level="error")
            logger.info("GET /sentry-debug raised its test error (event id %s).", event_id)
            detail = DEBUG_SENT_DETAIL if event_id else DEBUG_DISABLED_DETAIL
            return JSONResponse({"detail": detail, "event_id": event_id}, status_code=500)

    return router


def status_report(settings: SentrySettings) -> dict[str, Any]:
    """Values from the live client when there is one, else from the settings."""
    sdk = active_sdk()
    if sdk is not None:
        client = sdk.get_client()
        options = client.options
        dsn = dsn_summary(options.get("dsn"))
        return {
            "enabled": True,
            "environment": options.get("environment"),
            "release": options.get("release"),
            "error_sample_rate": options.get("sample_rate"),
            "traces_sample_rate": _traces_rate(options, settings),
            "profiles_sample_rate": options.get("profiles_sample_rate")
            or options.get("profile_session_sample_rate")
            or 0.0,
            # the SDK's starlette/fastapi integrations are disabled: our request path is them
            "integrations": sorted(
                {*(getattr(client, "integrations", {}) or {}), "fastapi", "starlette"}
            ),
            "dsn_host": dsn["host"],
            "project_id": dsn["project_id"],
            "last_event_id": latest_event_id(),
            "debug_endpoint": settings.debug_endpoint_enabled,
        }
    dsn = dsn_summary(settings.dsn_value)
    return {
        "enabled": False,
        "environment": settings.environment,
        "release": settings.effective_release,
        "error_sample_rate": settings.error_sample_rate,
        "traces_sample_rate": settings.effective_traces_sample_rate,
        "profiles_sample_rate": settings.effective_profiles_sample_rate,
        "integrations": [],
        "dsn_host": dsn["host"],
        "project_id": dsn["project_id"],
        "last_event_id": None,
        "debug_endpoint": settings.debug_endpoint_enabled,
    }


def _traces_rate(options: dict[str, Any], settings: SentrySettings) -> float:
    """`install` traces through a sampler (to skip health probes), so the rate is the settings'."""
    rate = options.get("traces_sample_rate")
    if rate is not None:
        return float(rate)
    if options.get("traces_sampler") is not None:
        return settings.effective_traces_sample_rate
    return 0.0
