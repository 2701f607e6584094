"""The request path on a sentry-sdk the lean path was not tested with: the SDK's own integrations.

sentry-sdk's Starlette and FastAPI integrations then do the request path (scopes, transactions,
request data, handled HTTP errors, sessions). This ASGI middleware adds what they lack, with
public API only: the request id (incoming `X-Request-ID` or a new one, echoed on the response),
the `request_id` and `endpoint` tags and the user from the app's resolvers, on events only
(an event processor on the isolation scope the SDK forked for the request). With
`trace_lifecycle="stream"` the request id and user also go on the SDK's segment span (set here, as
the segment ends after this middleware) and on its child spans (the pipeline's `before_send_span`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sentry_sdk
import sentry_sdk.traces
from sentry_sdk.traces import NoOpStreamedSpan
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastapi_sentry._context import (
    RequestState,
    add_request_timing,
    current_request,
    new_request_id,
    sane_request_id,
)
from fastapi_sentry._routes import add_request_tags
from fastapi_sentry._users import UserResolver, add_request_span_attributes, fill_user


class FallbackEnricher:
    """Request id, endpoint, elapsed time and user for an event; the SDK's integrations add
    the rest."""

    def __init__(self, *, user_resolvers: Sequence[UserResolver], send_default_pii: bool) -> None:
        self.user_resolvers = tuple(user_resolvers)
        self.send_default_pii = send_default_pii

    def __call__(self, event: dict[str, Any], state: RequestState) -> dict[str, Any]:
        add_request_tags(event, state)
        add_request_timing(event, state)
        fill_user(event, state, self.user_resolvers, send_default_pii=self.send_default_pii)
        return event

    def add_span_attributes(self, attributes: dict[str, Any], state: RequestState) -> None:
        add_request_span_attributes(
            attributes, state, self.user_resolvers, send_default_pii=self.send_default_pii
        )


class RequestIdMiddleware:
    """Outermost inside the app, so the 500 page of `ServerErrorMiddleware` gets the id too."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        enricher: FallbackEnricher,
        header: str = "X-Request-ID",
        stream: bool = False,
    ) -> None:
        self.app = app
        self.stream = stream
        self.enricher = enricher
        self.header = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or current_request.get() is not None:
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == self.header:
                request_id = sane_request_id(value)
        state = RequestState(scope, request_id or new_request_id(), self.enricher)
        header = self.header

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state.status = message.get("status", 200)
                headers = message.get("headers", ())
                if not any(name.lower() == header for name, _ in headers):
                    message = {
                        **message,
                        "headers": [*headers, (header, state.request_id.encode("latin-1"))],
                    }
            await send(message)

        enricher = self.enricher

        def enrich(event: Any, hint: Any) -> Any:
            return enricher(event, state)

        # The SDK's middleware wraps ours and captures an escaping error after our context
        # variable is gone; the isolation scope it forked per request is still current then.
        sentry_sdk.get_isolation_scope().add_event_processor(enrich)
        token = current_request.set(state)
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            if self.stream:
                self._mark_segment(state)
            current_request.reset(token)

    def _mark_segment(self, state: RequestState) -> None:
        """The SDK's segment span (current here; a no-op span when unsampled) gets the request's
        id and user: it ends after this middleware, when the request state is gone."""
        span = sentry_sdk.traces.get_current_span()
        if span is not None and not isinstance(span, NoOpStreamedSpan):
            attributes: dict[str, Any] = {}
            self.enricher.add_span_attributes(attributes, state)
            span.set_attributes(attributes)
