"""Helpers for what services kept writing by hand: capture with context, tracing, business tracking.

Three rules hold for every helper here:

* **Off means free.** This module never imports sentry_sdk. If nothing imported it, nothing can have
  initialised it, so each helper returns at once (a dict lookup); the same when it is imported but
  has no active client (called before `install`, or with Sentry disabled).
* **Never raises into the caller.** Each step runs inside `_guard`, which logs a warning with the
  traceback and carries on, so a bad tag or context value costs that value, not the event; each
  public helper is wrapped once more (`_never_raises`) for what even that cannot catch.
  (A warning, not an error: with the logging integration on, an error log would become an event.)
* **Nothing leaks.** Tags, levels and contexts are set on a `sentry_sdk.new_scope()` fork, so they
  land on that one event only; breadcrumbs go to the isolation scope on purpose (that is their job).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
import itertools
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast, overload
from urllib.parse import urlsplit, urlunsplit

from fastapi_sentry._context import current_request, safe_text
from fastapi_sentry._pipeline import CAPTURED_MARK, add_global_processor
from fastapi_sentry._state import active_sdk as _sdk
from fastapi_sentry._state import remember_event_id

if TYPE_CHECKING:
    from types import ModuleType

    from sentry_sdk.scope import Scope
    from sentry_sdk.tracing import Span

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

Level = Literal["fatal", "error", "warning", "info", "debug"]
LEVELS: frozenset[str] = frozenset({"fatal", "error", "warning", "info", "debug"})

#: The context that `capture_exception(**context)` / `capture_message(**context)` fill.
CONTEXT_NAME = "details"

NO_EXCEPTION_MESSAGE = (
    "capture_exception() was called with no exception outside an except block, so there is "
    "nothing to report; pass the exception, or call it inside `except`."
)

#: Bounds for values handed to the helpers. Sentry rejects events over 1 MB, and the SDK only
#: trims "databags" (extra, breadcrumbs), not contexts, and no string at all by default.
MAX_STRING = 8192
MAX_ITEMS = 100
MAX_DEPTH = 8
MAX_TAG = 200


# --- plumbing -------------------------------------------------------------------------------


def _swallowed(what: str) -> None:
    """Log the exception being handled as a warning, with its traceback."""
    logger.warning("fastapi_sentry could not %s; carrying on without it.", what, exc_info=True)


@contextlib.contextmanager
def _guard(what: str) -> Iterator[None]:
    """Run a step that must never break the caller: log a warning with the traceback instead."""
    try:
        yield
    except Exception:
        try:
            _swallowed(what)
        except Exception:  # logging failed too (at the recursion limit): stay silent
            return


T = TypeVar("T")


def _never_raises(func: Callable[P, T]) -> Callable[P, T | None]:
    """The outermost guard of each public helper: whatever goes wrong inside, return None.

    Plain try/except rather than `_guard`: near the recursion limit even entering a context
    manager can fail, and the caller must still not see it.
    """

    @functools.wraps(func)
    def safe(*args: P.args, **kwargs: P.kwargs) -> T | None:
        if "sentry_sdk" not in sys.modules:  # off: not even a call
            return None
        try:
            return func(*args, **kwargs)
        except Exception:
            try:
                _swallowed(f"finish {func.__name__}()")
            except Exception:  # logging failed too (at the recursion limit): stay silent
                return None
            return None

    return safe


def _text(value: object) -> str:
    """`str(value)` that survives objects whose `__str__` raises."""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} object that cannot be shown>"


def _cut(text: str, limit: int = MAX_STRING) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def _bounded(value: object, depth: int = 0) -> object:
    """A copy of `value` small enough to send: strings cut, containers trimmed, odd objects repr'd.

    Cycles and very deep nesting stop at MAX_DEPTH; nothing here can raise (reprs are guarded).
    """
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, (bytes, bytearray)):
        return _cut(bytes(value[: MAX_STRING + 1]).decode("utf-8", "replace"))
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        if depth >= MAX_DEPTH:
            return f"[{type(value).__name__} nested deeper than {MAX_DEPTH} levels]"
        if isinstance(value, Mapping):
            items = list(itertools.islice(value.items(), MAX_ITEMS))
            return {_cut(_text(k), 200): _bounded(v, depth + 1) for k, v in items}
        return [_bounded(v, depth + 1) for v in itertools.islice(value, MAX_ITEMS)]
    if isinstance(value, (datetime.date, datetime.time)):
        return value
    try:
        return _cut(repr(value))
    except Exception:
        return f"<{type(value).__name__} object that cannot be shown>"


def _enrich(
    scope: Scope,
    *,
    level: object = None,
    tags: Mapping[str, object] | None = None,
    contexts: Mapping[str, Mapping[str, object]] | None = None,
    fingerprint: list[str] | None = None,
) -> None:
    """Put level, tags, contexts and fingerprint on `scope`, each value on its own guard."""
    if level is not None:
        if level in LEVELS:
            scope.set_level(cast(Level, level))
        else:
            logger.warning(
                "fastapi_sentry ignored level '%s'; use one of %s.",
                safe_text(level),
                ", ".join(sorted(LEVELS)),
            )
    if tags:
        with _guard("read the tags"):
            for key, value in dict(tags).items():
                with _guard(f"set tag {safe_text(key)!r}"):
                    scope.set_tag(safe_text(key, MAX_TAG), safe_text(value, MAX_TAG))
    for name, values in (contexts or {}).items():
        with _guard(f"set context {name!r}"):
            scope.set_context(name, cast(dict[str, Any], _bounded(values)))
    if fingerprint:
        scope.fingerprint = fingerprint


def _send(
    sdk: ModuleType,
    *,
    exc: BaseException | None = None,
    message: str | None = None,
    level: object = None,
    tags: Mapping[str, object] | None = None,
    contexts: Mapping[str, Mapping[str, object]] | None = None,
    fingerprint: list[str] | None = None,
) -> str | None:
    """Capture one exception or message on a forked scope; return its id (None if dropped)."""
    event_id: str | None = None
    with _guard("send the event"), sdk.new_scope() as scope:
        _enrich(scope, level=level, tags=tags, contexts=contexts, fingerprint=fingerprint)
        if exc is not None:
            add_global_processor("drop_already_captured")
            event_id = sdk.capture_exception(exc)
            if event_id:
                with _guard("mark the exception as reported"):
                    setattr(exc, CAPTURED_MARK, event_id)
        else:
            event_id = sdk.capture_message(_cut(message or ""), level=None)
    remember_event_id(event_id)
    return event_id


def _context(values: Mapping[str, object]) -> dict[str, Mapping[str, object]]:
    """The keyword context as one named context; seed 004's `context={...}` is taken as-is."""
    if not values:
        return {}
    only = values.get("context")
    if len(values) == 1 and isinstance(only, Mapping):
        return {CONTEXT_NAME: only}
    return {CONTEXT_NAME: values}


# --- capture --------------------------------------------------------------------------------


@_never_raises
def capture_exception(
    exc: BaseException | None = None,
    *,
    level: Level | None = None,
    tags: Mapping[str, object] | None = None,
    **context: object,
) -> str | None:
    """Report `exc` (or the exception being handled) with keyword context on that event only.

    The keywords land in one context named `details`; `tags` and `level` also apply to this
    event only. Returns the event id, or None when Sentry is off or the event was dropped.
    """
    current: object = exc if exc is not None else sys.exc_info()[1]
    sdk = _sdk()
    if sdk is None:
        return None
    if current is None:
        logger.warning(NO_EXCEPTION_MESSAGE)
        return None
    if not isinstance(current, BaseException):
        # Misuse (e.g. a string): still tell Sentry something went wrong, as a message.
        return _send(
            sdk,
            message=f"capture_exception() got a {type(current).__name__}, not an exception: "
            f"{_text(current)}",
            level=level or "error",
            tags=tags,
            contexts=_context(context),
        )
    return _send(sdk, exc=current, level=level, tags=tags, contexts=_context(context))


@_never_raises
def capture_message(
    message: str,
    level: Level = "info",
    *,
    tags: Mapping[str, object] | None = None,
    **context: object,
) -> str | None:
    """Send a message event with keyword context (in `details`) on that event only."""
    sdk = _sdk()
    if sdk is None:
        return None
    return _send(sdk, message=_text(message), level=level, tags=tags, contexts=_context(context))


# --- tracing --------------------------------------------------------------------------------


@_never_raises
def _start_span(op: str, name: str, *, transaction: bool = True) -> Span | None:
    """A child span of the active span; with none active, a new transaction (or nothing).

    Never a new transaction inside a request the request path chose not to trace: that request
    was not sampled, and its parts must not be sampled on their own.
    """
    sdk = _sdk()
    if sdk is None:
        return None
    span: Span
    if sdk.get_current_span() is not None:
        span = sdk.start_span(op=op, name=name)
    elif transaction and current_request.get() is None:
        span = sdk.start_transaction(op=op, name=name, source="custom")
    else:
        return None
    span.__enter__()
    return span


@_never_raises
def _finish_span(
    span: Span | None,
    exc_type: type[BaseException] | None = None,
    exc: BaseException | None = None,
    tb: TracebackType | None = None,
) -> None:
    if span is not None:
        span.__exit__(exc_type, exc, tb)


class Trace:
    """What `trace(op=..., name=...)` returns: a context manager and a decorator in one.

    As a context manager it yields the span (None while Sentry is off). It only times: errors
    mark the span failed and propagate; reporting them is the integrations' or `operation`'s job.
    """

    __slots__ = ("_spans", "name", "op")

    def __init__(self, op: str | None = None, name: str | None = None) -> None:
        self.op = op
        self.name = name
        self._spans: list[Span | None] = []

    def __enter__(self) -> Span | None:
        span = _start_span(self.op or "function", self.name or self.op or "trace")
        self._spans.append(span)
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _finish_span(self._spans.pop() if self._spans else None, exc_type, exc, tb)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        return _traced(func, self.op, self.name)


def _traced(func: Callable[P, R], op: str | None, name: str | None) -> Callable[P, R]:
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        logger.warning(
            "trace() left %r untraced: a span around a generator function would time only its "
            "creation; use `with trace(name=...)` inside it instead.",
            getattr(func, "__qualname__", func),
        )
        return cast(Callable[P, R], func)
    op = op or "function"
    name = name or f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', func)}"

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            if "sentry_sdk" not in sys.modules:
                return await func(*args, **kwargs)
            span = _start_span(op, name)
            try:
                result = await func(*args, **kwargs)
            except BaseException as error:
                _finish_span(span, type(error), error, error.__traceback__)
                raise
            _finish_span(span)
            return result

        return cast(Callable[P, R], async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if "sentry_sdk" not in sys.modules:
            return func(*args, **kwargs)
        span = _start_span(op, name)
        try:
            result = func(*args, **kwargs)
        except BaseException as error:
            _finish_span(span, type(error), error, error.__traceback__)
            raise
        _finish_span(span)
        return result

    return wrapper


@overload
def trace(op: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def trace(op: str | None = None, name: str | None = None) -> Trace: ...


def trace(
    op: Callable[P, R] | str | None = None, name: str | None = None
) -> Callable[P, R] | Trace:
    """Time a function or a block as a span: `@trace`, `@trace(op=...)`, `with trace(name=...):`.

    Inside a request (or any active span) it adds a child span; with none active, as in a script or
    a task, it starts a transaction, so the work is traced either way. Signatures are preserved.
    A decorated function's default name is its dotted path; a block's is `op` or "trace".
    """
    if callable(op):
        return _traced(op, None, name)
    return Trace(op, name)


# --- tracking -------------------------------------------------------------------------------


def _breadcrumb(message: str, category: str, data: Mapping[str, object], level: str) -> None:
    sdk = _sdk()
    if sdk is None:
        return
    with _guard(f"add a {category} breadcrumb"):
        sdk.add_breadcrumb(
            message=_cut(message), category=category, data=_bounded(dict(data)), level=level
        )


@_never_raises
def track_business_event(name: str, **properties: object) -> None:
    """Record a business step (order placed, credits spent) as a breadcrumb, not an event.

    It shows on whatever error happens next in the same request or task, which is when it is
    useful; seed 002's `event_type` tag is not set, as it leaked onto every later error.
    """
    _breadcrumb(_text(name), "business", properties, "info")


def _number(value: object, what: str) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        logger.warning(
            "fastapi_sentry ignored %s='%s'; it must be a number.", what, safe_text(value)
        )
        return None


def _slow(
    sdk: ModuleType,
    operation: str,
    duration_ms: float,
    threshold_ms: float,
    context: Mapping[str, object],
) -> str | None:
    details: dict[str, object] = {
        "operation": operation,
        "duration_ms": round(duration_ms, 3),
        "threshold_ms": threshold_ms,
        "slowdown_factor": round(duration_ms / threshold_ms, 3) if threshold_ms > 0 else None,
        **context,
    }
    return _send(
        sdk,
        message=f"Slow operation: {operation} took {duration_ms:.0f} ms "
        f"(threshold {threshold_ms:.0f} ms)",
        level="warning",
        tags={"performance_issue": "true", "operation": operation},
        contexts={"performance": details},
        # One issue per operation, not one per distinct duration in the message.
        fingerprint=["slow-operation", operation],
    )


@_never_raises
def track_slow_operation(
    operation: str, duration_ms: float, threshold_ms: float = 1000
) -> str | None:
    """Send a warning when `duration_ms` exceeds `threshold_ms`; returns its event id, else None.

    Grouped by operation (fingerprint), with a `performance` context and a `performance_issue` tag
    on that event only.
    """
    sdk = _sdk()
    if sdk is None:
        return None
    duration = _number(duration_ms, "duration_ms")
    threshold = _number(threshold_ms, "threshold_ms")
    if duration is None or threshold is None or duration <= threshold:
        return None
    return _slow(sdk, _text(operation), duration, threshold, {})


def _safe_endpoint(endpoint: str) -> str:
    """An endpoint without query string, fragment or credentials: those carry tokens."""
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host if parts.netloc else "", parts.path, "", ""))
    except ValueError:
        return endpoint.split("?", 1)[0]


@_never_raises
def track_external_api_error(
    service: str, endpoint: str, status_code: int, response_time_ms: float
) -> str | None:
    """Report a failed call to another service as an error, grouped by service, endpoint, status.

    The endpoint loses its query string and any `user:password@` before it is sent.
    """
    sdk = _sdk()
    if sdk is None:
        return None
    service = _text(service)
    endpoint = _safe_endpoint(_text(endpoint))
    return _send(
        sdk,
        message=f"External API error: {service} {endpoint} returned {_text(status_code)}",
        level="error",
        tags={
            "external_api_error": "true",
            "external_service": service,
            "external_status": _text(status_code),
        },
        contexts={
            "external_api": {
                "service": service,
                "endpoint": endpoint,
                "status_code": status_code,
                "response_time_ms": response_time_ms,
            }
        },
        fingerprint=["external-api-error", service, endpoint, _text(status_code)],
    )


class Operation:
    """What `operation()` yields: add result context while it runs, read the duration after."""

    __slots__ = ("context", "duration_ms", "name")

    def __init__(self, name: str, context: dict[str, object]) -> None:
        self.name = name
        self.context = context
        self.duration_ms: float | None = None

    def set(self, **context: object) -> None:
        """Add context that the breadcrumb, the slow warning or the error event will carry."""
        self.context.update(context)


@contextlib.contextmanager
def operation(name: str, *, threshold_ms: float = 2000, **context: object) -> Iterator[Operation]:
    """Give a block (a service method, a job step) timing, a breadcrumb and error capture.

    Inside a transaction (a request, a task) it is also a child span; it never starts one. On
    success: a `service` breadcrumb with the duration, and a `track_slow_operation` warning when
    it took longer than `threshold_ms`. On an exception: it is reported once, with an `operation`
    context, then re-raised unchanged (the framework will not report it a second time).
    Cancellation and exit are re-raised without a report. This is seed 002's
    `EnhancedBaseService` without the base class.
    """
    op = Operation(_text(name), dict(context))
    span = _start_span("function", op.name, transaction=False)
    start = time.perf_counter()
    try:
        yield op
    except Exception as error:
        op.duration_ms = (time.perf_counter() - start) * 1000
        try:
            _operation_failed(op, error)
            _finish_span(span, type(error), error, error.__traceback__)
        except Exception:  # noqa: S110  # at the recursion limit: lose the report, not the error
            pass
        raise
    except BaseException as error:  # cancellation, exit: not an error worth reporting
        op.duration_ms = (time.perf_counter() - start) * 1000
        _finish_span(span, type(error), error, error.__traceback__)
        raise
    op.duration_ms = (time.perf_counter() - start) * 1000
    _finish_span(span)
    _operation_done(op, threshold_ms)


@_never_raises
def _operation_failed(op: Operation, error: Exception) -> None:
    sdk = _sdk()
    if sdk is not None:
        _send(
            sdk,
            exc=error,
            tags={"operation": op.name},
            contexts={
                "operation": {
                    "name": op.name,
                    "duration_ms": round(op.duration_ms or 0.0, 3),
                    **op.context,
                }
            },
        )


@_never_raises
def _operation_done(op: Operation, threshold_ms: float) -> None:
    sdk = _sdk()
    if sdk is None or op.duration_ms is None:
        return
    _breadcrumb(
        f"{op.name} completed",
        "service",
        {"duration_ms": round(op.duration_ms, 3), **op.context},
        "info",
    )
    threshold = _number(threshold_ms, "threshold_ms")
    if threshold is not None and op.duration_ms > threshold:
        _slow(sdk, op.name, op.duration_ms, threshold, op.context)
