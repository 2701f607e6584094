"""What is not worth sending: expected errors, and transactions for health/static/docs paths.

Transactions are refused in `traces_sampler`, before they exist, not discarded after the
fact: a discarded transaction has already cost its spans. The sampler decides on
`asgi_scope["path"]`, because the transaction name it is given is still the raw URL.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from fastapi_sentry._settings import SentrySettings

logger = logging.getLogger(__name__)

TracesSampler = Callable[[dict[str, Any]], float]


def is_untraced(path: str, prefixes: tuple[str, ...]) -> bool:
    """`/static` covers `/static` and `/static/app.js`, not `/statics`."""
    for prefix in prefixes:
        if path == prefix or (path.startswith(prefix) and path[len(prefix)] == "/"):
            return True
    return False


def make_traces_sampler(settings: SentrySettings) -> TracesSampler:
    rate = settings.effective_traces_sample_rate
    paths = list(settings.untraced_paths)
    if settings.endpoints_prefix:  # our own probes, wherever they are mounted
        paths += [settings.endpoints_prefix + p for p in ("/health", "/sentry/status")]
    prefixes = tuple(p.rstrip("/") or "/" for p in paths)

    def traces_sampler(sampling_context: dict[str, Any]) -> float:
        asgi_scope = sampling_context.get("asgi_scope")
        if asgi_scope is not None and is_untraced(asgi_scope.get("path", ""), prefixes):
            return 0.0
        parent_sampled = sampling_context.get("parent_sampled")
        if parent_sampled is not None:
            return 1.0 if parent_sampled else 0.0
        return rate

    return traces_sampler


def _resolve(name: str) -> type[BaseException] | None:
    module_name, _, attr = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name or "builtins"), attr)
    except (ImportError, AttributeError, ValueError):
        logger.warning("SENTRY_IGNORED_EXCEPTIONS names %r, which cannot be imported", name)
        return None
    if isinstance(found, type) and issubclass(found, BaseException):
        return found
    logger.warning("SENTRY_IGNORED_EXCEPTIONS names %r, which is not an exception class", name)
    return None


def _validation_errors(failed_status_codes: frozenset[int]) -> tuple[type[BaseException], ...]:
    """The client's validation errors, not reported unless 422 is a failed status (a websocket's
    have no status: never reported)."""
    found: list[type[BaseException]] = []
    try:
        from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError

        found.append(WebSocketRequestValidationError)
        if 422 not in failed_status_codes:
            found.append(RequestValidationError)
    except ImportError:  # pragma: no cover - fastapi is a dependency
        pass
    return tuple(found)


class ExpectedErrorFilter:
    """Drops events for errors a client caused; tags the status code of the ones it keeps."""

    def __init__(
        self,
        failed_status_codes: Iterable[int],
        ignored: Iterable[str | type[BaseException]] = (),
    ) -> None:
        self.failed_status_codes = frozenset(failed_status_codes)
        types: list[type[BaseException]] = list(_validation_errors(self.failed_status_codes))
        for item in ignored:
            resolved = _resolve(item) if isinstance(item, str) else item
            if resolved is not None:
                types.append(resolved)
        self.ignored_types = tuple(types)

    def __call__(self, event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        exc_info = hint.get("exc_info")
        exc = exc_info[1] if exc_info else None
        if exc is None:
            return event
        if self.ignored_types and isinstance(exc, self.ignored_types):
            return None
        status = _http_status(exc)
        if status is not None:
            if status not in self.failed_status_codes:
                return None
            tags = event.setdefault("tags", {})
            if isinstance(tags, dict):
                tags["http.status_code"] = str(status)
        return event


def _http_status(exc: BaseException) -> int | None:
    """The status of a Starlette/FastAPI `HTTPException` (FastAPI's subclasses Starlette's)."""
    from starlette.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return exc.status_code
    return None
