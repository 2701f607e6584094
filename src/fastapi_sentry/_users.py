"""Who made the request: pluggable resolvers that turn a request into Sentry's `user` dict.

Resolvers run lazily, only when an event is about to be sent, and at most once per request:
an untraced request that succeeds never pays for them. The built-ins make no database or
network call: `user_from_state` reads what the app's own auth dependency already put on
`request.state.user`, `user_from_auth_middleware` what Starlette's AuthenticationMiddleware put on
`scope["user"]`, and `user_from_jwt_claims` reads the `sub` claim (and organization and role
claims) of a bearer JWT without verifying it (it labels events; it does not authenticate) and
never keeps the token.
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

#: Fields beyond Sentry's own that the built-in resolvers copy when the app already has them
#: (seed 002's organization-level tagging); `SENTRY_USER_TAGS` can make them tags.
ORGANIZATION_FIELDS = ("organization_id", "role", "tenant_id")
_USER_FIELDS = ("id", "email", "username", "ip_address", "segment", *ORGANIZATION_FIELDS)
# JWT claim names for the same fields, first match wins
_CLAIM_FIELDS = {
    "organization_id": ("organization_id", "org_id"),
    "role": ("role",),
    "tenant_id": ("tenant_id", "tid"),
}
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
    return _cleaned(fields)


def _cleaned(fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """Unset and empty fields dropped; ids as text (Sentry's user id is a string)."""
    result = {key: value for key, value in fields.items() if value is not None and value != ""}
    for key in ("id", *ORGANIZATION_FIELDS):
        if key in result:
            result[key] = str(result[key])
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
    for field, names in _CLAIM_FIELDS.items():
        value = next((claims[name] for name in names if _scalar(claims.get(name))), None)
        if value is not None:
            user[field] = str(value)
    return user


def _scalar(value: object) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and value != ""


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
    fields = {
        key: getattr(user, key, None) for key in ("id", "username", "email", *ORGANIZATION_FIELDS)
    }
    if fields["username"] is None:
        fields["username"] = getattr(user, "display_name", None) or None
    return _cleaned(fields)


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


#: sentry-sdk's span attribute for each user field (its `_apply_user_attributes_to_telemetry`).
_SPAN_USER_ATTRIBUTES = (
    ("id", "user.id"),
    ("username", "user.name"),
    ("email", "user.email"),
    ("ip_address", "user.ip_address"),
)


def add_request_span_attributes(
    attributes: dict[str, Any],
    state: RequestState,
    resolvers: Sequence[UserResolver],
    *,
    send_default_pii: bool,
) -> None:
    """Request id and user on a streamed span, as events carry them (the user resolved once)."""
    attributes.setdefault("request_id", state.request_id)
    holder: dict[str, Any] = {}
    fill_user(holder, state, resolvers, send_default_pii=send_default_pii)
    user = holder.get("user")
    if user:
        for field, attribute in _SPAN_USER_ATTRIBUTES:
            value = user.get(field)
            if value is not None:
                attributes.setdefault(attribute, str(value))
