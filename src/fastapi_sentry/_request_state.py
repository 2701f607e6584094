"""What the request path notes about a request: a few cheap fields, read later only if needed.

Kept apart from the middleware so that reading the request id (helpers, log filters) never
imports sentry_sdk.
"""

from __future__ import annotations

import contextvars
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi_sentry._request_event import RequestEnricher


class RequestState:
    """One per request. Filled by the request path; read when an event is actually sent."""

    __slots__ = (
        "asgi_scope",
        "body_chunks",
        "body_size",
        "enricher",
        "outcome",
        "request_id",
        "status",
        "user",
        "user_resolved",
    )

    def __init__(
        self, asgi_scope: MutableMapping[str, Any], request_id: str, enricher: RequestEnricher
    ) -> None:
        self.asgi_scope = asgi_scope
        self.request_id = request_id
        #: what turns this state into event fields (the installed app's settings)
        self.enricher = enricher
        self.status = 0
        #: the request body as the app read it, kept (not copied) while within the size limit
        self.body_chunks: list[bytes] | None = None
        self.body_size = 0
        self.user: dict[str, Any] | None = None
        self.user_resolved = False
        #: release health: "exited" unless an error event was sent ("errored", "crashed")
        self.outcome = "exited"


current_request: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar(
    "fastapi_sentry_request", default=None
)
