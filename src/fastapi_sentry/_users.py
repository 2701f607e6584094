"""Who made the request: pluggable resolvers that turn a request into Sentry's `user` dict.

Resolvers run lazily, only when an event is about to be sent, and at most once per request:
an untraced request that succeeds never pays for them. The built-ins make no database or
network call: `user_from_state` reads what the app's own auth dependency already put on
`request.state.user`, `user_from_auth_middleware` what Starlette's AuthenticationMiddleware put on
`scope["user"]`, and `user_from_jwt_claims` reads the `sub` claim of a bearer JWT without
verifying it (it labels events; it does not authenticate) and never keeps the token.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.requests import HTTPConnection

from fastapi_sentry._context import RequestState

logger = logging.getLogger(__name__)

#: A resolver returns Sentry's user fields (`id`, `email`, `username`, ...) or None.
UserResolver = Callable[[HTTPConnection], "Mapping[str, Any] | None"]

_USER_FIELDS = ("id", "email", "username", "ip_address", "segment")
_PII_FIELDS = frozenset({"email", "username", "ip_address", "name"})


def user_from_state(connection: HTTPConnection) -> Mapping[str, Any] | None:
    """`request.state.user`, as a mapping or an object with `id` / `email` / `username`."""
    user = connection.scope.get("state", {}).get("user")
    if user is None:
        return None
    if isinstance(user, Mapping):
        fields = {key: user.get(key) for key in _USER_FIELDS}
    else:
        fields = {key: getattr(user, key, None) for key in _USER_FIELDS}
        if fields["username"] is None:
            fields["username"] = getattr(user, "name", None) or getattr(user, "full_name", None)
    result = {key: value for key, value in fields.items() if value is not None}
    if "id" in result:
        result["id"] = str(result["id"])
    return result or None


def user_from_jwt_claims(connection: HTTPConnection) -> Mapping[str, Any] | None:
    """The `sub` claim (and `email`, if present) of an `Authorization: Bearer <jwt>` header."""
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        return None
    claims = _jwt_payload(token.strip())
    if not claims or claims.get("sub") is None:
        return None
    user: dict[str, Any] = {"id": str(claims["sub"])}
    if isinstance(claims.get("email"), str):
        user["email"] = claims["email"]
    return user


def _jwt_payload(token: str) -> dict[str, Any] | None:
    try:
        payload = token.split(".")[1]
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def user_from_auth_middleware(connection: HTTPConnection) -> Mapping[str, Any] | None:
    """`scope["user"]` as Starlette's `AuthenticationMiddleware` leaves it (sentry-sdk's own
    integration read the same fields: `id`, `username`, `email`)."""
    user = connection.scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    fields = {key: getattr(user, key, None) for key in ("id", "username", "email")}
    if fields["username"] is None:
        fields["username"] = getattr(user, "display_name", None) or None
    result = {key: value for key, value in fields.items() if value is not None and value != ""}
    if "id" in result:
        result["id"] = str(result["id"])
    return result or None


DEFAULT_USER_RESOLVERS: tuple[UserResolver, ...] = (
    user_from_state,
    user_from_auth_middleware,
    user_from_jwt_claims,
)


def resolve_user(
    connection: HTTPConnection, resolvers: Sequence[UserResolver], *, send_default_pii: bool
) -> dict[str, Any] | None:
    """The first resolver's answer; personal fields are dropped unless PII may be sent."""
    for resolver in resolvers:
        user = resolver(connection)
        if user:
            if send_default_pii:
                return dict(user)
            return {key: value for key, value in user.items() if key not in _PII_FIELDS}
    return None


def fill_user(
    event: dict[str, Any],
    state: RequestState,
    resolvers: Sequence[UserResolver],
    *,
    send_default_pii: bool,
) -> None:
    """Put the request's user on an event: resolved once per request, and only for events."""
    existing = event.get("user")
    if isinstance(existing, dict) and existing.get("id"):
        return
    if not state.user_resolved:
        state.user_resolved = True
        try:
            state.user = resolve_user(
                HTTPConnection(state.asgi_scope), resolvers, send_default_pii=send_default_pii
            )
        except Exception:
            logger.warning(
                "The user resolver raised; the event is sent without a user", exc_info=True
            )
    if state.user:
        event["user"] = {**(existing if isinstance(existing, dict) else {}), **state.user}
