"""The current request's id, for logs and for code that has no request object at hand.

Kept apart from the middleware so that reading it never imports sentry_sdk.
"""

from __future__ import annotations

import contextvars
import logging

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "fastapi_sentry_request_id", default=None
)


def get_request_id() -> str | None:
    """The id of the request being handled in this context, or None outside a request."""
    return current_request_id.get()


class RequestIdLogFilter(logging.Filter):
    """Adds `record.request_id` so a log format can show it (`%(request_id)s`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get() or "-"
        return True
