"""Who may send and who may read.

Ingest is authenticated like Sentry: the DSN's public key, from the ``X-Sentry-Auth`` header (or
an ``Authorization: Sentry ...`` header) or the ``sentry_key`` query parameter. Reading (web pages
and the JSON API) needs the inbox token when one is set, because a non-loopback inbox must not show
its events to the network.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Protocol

from starlette.requests import HTTPConnection

from fastapi_sentry.inbox._errors import AuthenticationError, ForbiddenError

TOKEN_COOKIE = "fastapi_sentry_inbox_token"


def is_loopback(host: str) -> bool:
    """Whether a bind address or peer is loopback only (``localhost`` counts)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_auth_header(value: str) -> dict[str, str]:
    """``Sentry sentry_key=abc, sentry_version=7`` → ``{"sentry_key": "abc", ...}``."""
    value = value.strip()
    if value[:7].lower() == "sentry ":
        value = value[7:]
    fields: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key.strip().lower()] = val.strip()
    return fields


class Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


def header_key(headers: Headers) -> str | None:
    """The DSN key of an ``X-Sentry-Auth`` or ``Authorization: Sentry ...`` header."""
    for header in ("x-sentry-auth", "authorization"):
        value = headers.get(header)
        if value and (header == "x-sentry-auth" or value.lower().startswith("sentry ")):
            key = parse_auth_header(value).get("sentry_key")
            if key:
                return key
    return None


def sentry_key(request: HTTPConnection) -> str | None:
    return header_key(request.headers) or request.query_params.get("sentry_key") or None


def check_key(sent: str, expected: str, project_id: int) -> None:
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ForbiddenError(
            f"The DSN key does not belong to project {project_id}; use the DSN the inbox printed "
            "for this project.",
            where="X-Sentry-Auth header",
        )


def missing_key_error() -> AuthenticationError:
    return AuthenticationError(
        "No DSN key was sent; send it in the X-Sentry-Auth header (sentry_key=...) or the "
        "sentry_key query parameter, as sentry-sdk does with the DSN the inbox printed.",
        where="X-Sentry-Auth header",
    )


def check_token(request: HTTPConnection, token: str | None) -> bool:
    """Check the read token; True when it came as ``?token=`` (so a cookie should be set)."""
    if token is None:
        return False
    sent = None
    from_query = False
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        sent = auth[7:].strip()
    elif "token" in request.query_params:
        sent = request.query_params["token"]
        from_query = True
    else:
        sent = request.cookies.get(TOKEN_COOKIE)
    if not sent:
        raise AuthenticationError(
            "This inbox requires its token; send 'Authorization: Bearer <token>' or open the page "
            "with ?token=<token> (the token was printed when the inbox started).",
            where="Authorization header",
        )
    if not hmac.compare_digest(sent.encode(), token.encode()):
        raise ForbiddenError(
            "The inbox token is wrong; use the token printed when the inbox started.",
            where="Authorization header",
        )
    return from_query
