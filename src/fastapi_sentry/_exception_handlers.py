"""Errors the app answers itself still reported: once, with the original exception.

Starlette's `ExceptionMiddleware` hands an exception to the app's handler and sends what it
returns; nothing escapes, so the request path never sees it. `install()` builds the app's
middleware stack with a copy of `app.exception_handlers` (the app's own dict is left alone) in
which every handler is wrapped: when the exception carries a failed status (`HTTPException(503)`,
sentry-sdk's rule) or the handler answers one (a `DomainError` handler returning a 500 JSON body,
FastAPI's 422 for a validation error when 422 is listed), the exception is reported with its own
traceback after the handler returned. A handler that raises reports nothing here: what it raises
escapes to the request path, which reports it once.

On the fallback path sentry-sdk's patched `ExceptionMiddleware` already applies its rule (the
exception's own `status_code`) to class-keyed handlers; the wrapper then reports only what that
rule misses. Handlers of 500/`Exception` belong to `ServerErrorMiddleware`, which re-raises:
the request path reports those, unless `SENTRY_ERROR_RESPONSE_IDS` needs the event id in the
answer, when the report is made here and the exception marked so it is not reported again.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Container
from http import HTTPStatus
from typing import Any

import sentry_sdk
from sentry_sdk.utils import event_from_exception
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException, WebSocketException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fastapi_sentry._context import current_request, get_request_id
from fastapi_sentry._pipeline import CAPTURED_MARK, add_global_processor

MECHANISM = "starlette"
#: The header that carries the event id when the app's own JSON body is kept.
EVENT_ID_HEADER = "X-Sentry-Event-ID"

Handler = Callable[..., Any]


def report_exception(exc: BaseException, *, handled: bool) -> str | None:
    """Report an exception with the mechanism sentry-sdk's Starlette integration uses, unless
    it was reported already (a 500 handler that needed the event id); the event id."""
    if getattr(exc, CAPTURED_MARK, None) is not None:
        return None
    client = sentry_sdk.get_client()
    event, hint = event_from_exception(
        exc, client_options=client.options, mechanism={"type": MECHANISM, "handled": handled}
    )
    return sentry_sdk.capture_event(event, hint=hint)


async def _default_http_exception(request: Request, exc: Exception) -> Response:
    # ExceptionMiddleware's own handler, which it adds when the app has none
    return await ExceptionMiddleware.http_exception(None, request, exc)  # type: ignore[arg-type]


async def _default_websocket_exception(websocket: Any, exc: Exception) -> None:
    await ExceptionMiddleware.websocket_exception(None, websocket, exc)  # type: ignore[arg-type]


def reporting_handlers(
    handlers: dict[Any, Handler],
    failed_status_codes: Container[int],
    *,
    sdk_applies_status_rule: bool = False,
    response_ids: bool = False,
) -> dict[Any, Handler]:
    """A copy of an app's `exception_handlers` whose handlers report the failed statuses."""
    wrapped: dict[Any, Handler] = {
        HTTPException: _default_http_exception,
        WebSocketException: _default_websocket_exception,
    }
    wrapped.update(handlers)
    server_error_keys = [key for key in wrapped if key in (500, Exception)]
    for key, handler in wrapped.items():
        if key in server_error_keys:
            if response_ids:
                wrapped[key] = _server_error_with_ids(handler)
            continue
        # sentry-sdk wraps class-keyed handlers only (not status-keyed ones)
        by_sdk = sdk_applies_status_rule and isinstance(key, type)
        wrapped[key] = _reporting(
            handler,
            failed_status_codes,
            sdk_applies_status_rule=by_sdk,
            response_ids=response_ids,
            framework_json=handler in _framework_handlers(),
        )
    if response_ids and not server_error_keys:
        wrapped[Exception] = _server_error_with_ids(None)
    return wrapped


def _framework_handlers() -> tuple[Handler, ...]:
    """Handlers whose JSON is the framework's `{"detail": ...}`, not the app's own."""
    try:
        from fastapi.exception_handlers import http_exception_handler
    except ImportError:  # pragma: no cover - fastapi is a dependency
        return ()
    return (http_exception_handler,)


def _reporting(
    handler: Handler,
    failed_status_codes: Container[int],
    *,
    sdk_applies_status_rule: bool,
    response_ids: bool,
    framework_json: bool,
) -> Handler:
    from starlette._utils import is_async_callable

    def after(exc: Any, response: Any) -> Any:
        status = getattr(exc, "status_code", None)
        answered = getattr(response, "status_code", None)
        by_status = isinstance(status, int) and status in failed_status_codes
        by_answer = isinstance(answered, int) and answered in failed_status_codes
        event_id = None
        if by_status and sdk_applies_status_rule:
            event_id = sentry_sdk.last_event_id()  # reported before the handler ran
        elif by_status or by_answer:
            event_id = _report_answered(exc, answered)
        if response_ids and isinstance(answered, int) and answered >= 500:
            return with_ids(response, event_id, framework_json=framework_json)
        return response

    if is_async_callable(handler):

        @functools.wraps(handler)
        async def async_handler(conn: Any, exc: Any) -> Any:
            return after(exc, await handler(conn, exc))

        return async_handler

    @functools.wraps(handler)
    def sync_handler(conn: Any, exc: Any) -> Any:
        return after(exc, handler(conn, exc))

    return sync_handler


def _report_answered(exc: BaseException, status: int | None) -> str | None:
    """Report an exception a handler answered; its status is known before the response starts."""
    state = current_request.get()
    if state is not None and isinstance(status, int):
        state.status = status  # the `http.status_code` tag and response context of the event
    return report_exception(exc, handled=True)


def _server_error_with_ids(handler: Handler | None) -> Handler:
    """`ServerErrorMiddleware`'s handler when 5xx answers carry ids: the event is sent before the
    answer (its id goes in it), and the exception marked so the request path does not resend it."""
    from starlette._utils import is_async_callable

    async def server_error(request: Request, exc: Exception) -> Response:
        response: Any = None
        if handler is not None:
            if is_async_callable(handler):
                response = await handler(request, exc)
            else:
                response = await run_in_threadpool(handler, request, exc)
        state = current_request.get()
        if state is not None:
            state.status = 500
        event_id = report_exception(exc, handled=False)
        add_global_processor("drop_already_captured")  # the fallback's SDK middleware resends
        # an exception type with __slots__ cannot be marked: reported twice, not lost
        with contextlib.suppress(AttributeError):
            setattr(exc, CAPTURED_MARK, event_id or "")
        if response is None:
            response = Response(status_code=500)  # answered as JSON by `with_ids`
        answered: Response = with_ids(response, event_id)
        return answered

    return server_error


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # 599 and other unnamed codes
        return "Server Error"


def with_ids(response: Any, event_id: str | None, *, framework_json: bool = False) -> Any:
    """A 5xx answer that carries the ids, always as an `X-Sentry-Event-ID` header and in the body
    where that changes nothing the app wrote: a text or empty body becomes
    `{"detail": <the text or the status phrase>, "event_id": ..., "request_id": ...}`, and the
    framework's own `{"detail": ...}` (`framework_json`) gains the two ids.
    A JSON body the app wrote itself, or a streamed one, is kept as it is."""
    if not isinstance(response, Response):
        return response
    body = getattr(response, "body", None)
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = media == "application/json" or media.endswith("+json")
    content: dict[str, Any] | None = None
    if isinstance(body, bytes) and not is_json:
        detail = _phrase(response.status_code)
        if body and media.startswith("text/"):
            detail = body.decode(response.charset or "utf-8", "replace")
        content = {"detail": detail}
    elif isinstance(body, bytes) and framework_json:
        content = _json_object(body)
    if content is not None:
        response = _rebuilt(
            response, {**content, "event_id": event_id, "request_id": get_request_id()}
        )
    if event_id:
        response.headers[EVENT_ID_HEADER] = event_id
    return response


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _rebuilt(response: Response, content: dict[str, Any]) -> JSONResponse:
    """`content` as JSON with the answer's status, other headers and background tasks."""
    answer = JSONResponse(content, status_code=response.status_code)
    answer.raw_headers += [
        (name, value)
        for name, value in response.raw_headers
        if name not in (b"content-length", b"content-type")
    ]
    answer.background = response.background
    return answer
