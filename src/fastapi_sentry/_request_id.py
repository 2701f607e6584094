"""The current request's id, for logs and for code that has no request object at hand.

Kept apart from the middleware so that reading it never imports sentry_sdk.
"""

from __future__ import annotations

import logging

from fastapi_sentry._request_state import current_request


def get_request_id() -> str | None:
    """The id of the request being handled in this context, or None outside a request."""
    state = current_request.get()
    return None if state is None else state.request_id


class RequestIdLogFilter(logging.Filter):
    """Adds `record.request_id` so a log format can show it (`%(request_id)s`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        state = current_request.get()
        record.request_id = "-" if state is None else state.request_id
        return True
