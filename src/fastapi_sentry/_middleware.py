"""Per-request context: request id, endpoint tag, user, response status.

A pure ASGI middleware (not Starlette's base HTTP middleware class, which runs the endpoint in
another task and loses context variables). It wraps the whole Starlette stack, outside
`ServerErrorMiddleware`, so even the 500 page carries the `X-Request-ID` header. sentry-sdk's own
ASGI wrapper, one level further out, has already forked the isolation scope for this request, so
everything set here belongs to this request alone.

The per-request work is kept small: an id, one tag, one lazily-run event processor. The route
template and the user are worked out only when an event is actually sent.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import sentry_sdk
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastapi_sentry._request_id import current_request_id
from fastapi_sentry._users import UserResolver, resolve_user

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
UNMATCHED_ROUTE = "<unmatched>"


def route_template(scope: Scope) -> str:
    """`GET /orders/{order_id}`: the matched route's template, never the raw path with ids."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        path = UNMATCHED_ROUTE
    return f"{scope.get('method', 'GET')} {scope.get('root_path', '')}{path}"


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str = "X-Request-ID",
        user_resolvers: Sequence[UserResolver] = (),
        send_default_pii: bool = False,
    ) -> None:
        self.app = app
        self.header = header.lower().encode("latin-1")
        self.user_resolvers = tuple(user_resolvers)
        self.send_default_pii = send_default_pii

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._incoming_request_id(scope) or os.urandom(16).hex()
        token = current_request_id.set(request_id)
        isolation = sentry_sdk.get_isolation_scope()
        isolation.set_tag("request_id", request_id)
        isolation.add_event_processor(_EventEnricher(self, scope))  # type: ignore[arg-type]
        header_value = request_id.encode("latin-1")

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == self.header for name, _ in headers):
                    headers.append((self.header, header_value))
                    message = {**message, "headers": headers}
                status = message.get("status", 200)
                if status >= 400:
                    isolation.set_tag("http.status_code", str(status))
                    isolation.set_context("response", {"status_code": status})
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            current_request_id.reset(token)

    def _incoming_request_id(self, scope: Scope) -> str | None:
        for name, value in scope.get("headers", ()):
            if name == self.header:
                try:
                    text = value.decode("latin-1")
                except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any bytes
                    return None
                return text if _SANE_REQUEST_ID.fullmatch(text) else None
        return None


class _EventEnricher:
    """Runs only for events that are sent: adds the endpoint tag and the user, once."""

    __slots__ = ("middleware", "resolved", "scope", "user")

    def __init__(self, middleware: RequestContextMiddleware, scope: Scope) -> None:
        self.middleware = middleware
        self.scope = scope
        self.user: dict[str, Any] | None = None
        self.resolved = False

    def __call__(self, event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        tags = event.setdefault("tags", {})
        if isinstance(tags, dict):
            tags.setdefault("endpoint", route_template(self.scope))
        existing = event.get("user")
        if not (isinstance(existing, dict) and existing.get("id")):
            user = self._user()
            if user:
                event["user"] = {**(existing if isinstance(existing, dict) else {}), **user}
        return event

    def _user(self) -> dict[str, Any] | None:
        if not self.resolved:
            self.resolved = True
            try:
                self.user = resolve_user(
                    HTTPConnection(self.scope),
                    self.middleware.user_resolvers,
                    send_default_pii=self.middleware.send_default_pii,
                )
            except Exception:
                logging.getLogger(__name__).warning(
                    "The user resolver raised; the event is sent without a user", exc_info=True
                )
        return self.user
