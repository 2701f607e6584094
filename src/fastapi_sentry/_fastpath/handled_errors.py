"""Errors the app turns into a response itself, such as `HTTPException(503)`, still reported.

Starlette's `ExceptionMiddleware` answers them, so they never reach the request path. sentry-sdk
patches that class process-wide and wraps every handler on every app; we wrap the handlers of
the installed app, once, when its middleware stack is built. The wrapper runs only when such an
exception is raised; it reports the exception when its `status_code` is one of
`SENTRY_FAILED_REQUEST_STATUS_CODES` (the SDK's rule), then lets the app's handler answer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Container
from typing import Any

import sentry_sdk
from sentry_sdk.utils import event_from_exception
from starlette.exceptions import HTTPException, WebSocketException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response

MECHANISM = "starlette"


def report_exception(exc: BaseException, *, handled: bool) -> None:
    """Report an exception with the mechanism sentry-sdk's Starlette integration uses."""
    client = sentry_sdk.get_client()
    event, hint = event_from_exception(
        exc, client_options=client.options, mechanism={"type": MECHANISM, "handled": handled}
    )
    sentry_sdk.capture_event(event, hint=hint)


async def _default_http_exception(request: Request, exc: Exception) -> Response:
    # ExceptionMiddleware's own handler, which it adds when the app has none
    return await ExceptionMiddleware.http_exception(None, request, exc)  # type: ignore[arg-type]


async def _default_websocket_exception(websocket: Any, exc: Exception) -> None:
    await ExceptionMiddleware.websocket_exception(None, websocket, exc)  # type: ignore[arg-type]


def with_failed_status_reporting(
    handlers: dict[Any, Callable[..., Any]], failed_status_codes: Container[int]
) -> dict[Any, Callable[..., Any]]:
    """A copy of an app's `exception_handlers` whose class handlers report failed statuses."""
    wrapped: dict[Any, Callable[..., Any]] = {
        HTTPException: _default_http_exception,
        WebSocketException: _default_websocket_exception,
    }
    wrapped.update(handlers)
    for key, handler in wrapped.items():
        # 500/Exception go to ServerErrorMiddleware, which re-raises: the request path reports them
        if isinstance(key, type) and key is not Exception:
            wrapped[key] = _reporting(handler, failed_status_codes)
    return wrapped


def _reporting(
    handler: Callable[..., Any], failed_status_codes: Container[int]
) -> Callable[..., Any]:
    from starlette._utils import is_async_callable

    is_async = is_async_callable(handler)

    def report(exc: Any) -> None:
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and status in failed_status_codes:
            report_exception(exc, handled=True)

    if is_async:

        @functools.wraps(handler)
        async def async_handler(conn: Any, exc: Any) -> Any:
            report(exc)
            return await handler(conn, exc)

        return async_handler

    @functools.wraps(handler)
    def sync_handler(conn: Any, exc: Any) -> Any:
        report(exc)
        return handler(conn, exc)

    return sync_handler
