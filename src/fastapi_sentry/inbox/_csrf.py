"""Protection for requests that change something (triage): the read token where one is set, and
no cross-site requests on any bind.

* Forms carry a CSRF token: an HMAC of a per-process secret, which another site cannot read (the
  pages send no CORS headers and forbid framing).
* The JSON API must be sent as ``application/json``: a browser only sends that cross-origin after a
  CORS preflight, which the inbox never approves.
* A browser's ``Origin`` (and ``Sec-Fetch-Site``) must name this inbox, and a loopback inbox without
  a token only accepts loopback ``Host`` names, so a DNS-rebinding page cannot pose as it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request

from fastapi_sentry.inbox._auth import check_token, is_loopback
from fastapi_sentry.inbox._errors import ForbiddenError, InboxError

_SECRET = secrets.token_bytes(32)
CSRF_FIELD = "csrf"


class UnsupportedMediaTypeError(InboxError, ValueError):
    """A state-changing API request that is not JSON (HTTP 415)."""

    status_code = 415


def form_token() -> str:
    """The token every triage form carries (one per inbox process)."""
    return hmac.new(_SECRET, b"fastapi-sentry-inbox-form", hashlib.sha256).hexdigest()


def _same_origin(request: Request) -> None:
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != host):
        raise ForbiddenError(
            f"A request from {origin!r} may not change this inbox; use the inbox's own pages "
            "or its API without a browser.",
            where="Origin header",
        )
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise ForbiddenError(
            "A cross-site request may not change this inbox.", where="Sec-Fetch-Site header"
        )


def check_change(request: Request, token: str | None, *, form: str | None = None) -> None:
    """Refuse a state change that is unauthenticated or cross-site; ``form`` is the CSRF field
    of a form post (None for the JSON API)."""
    check_token(request, token)
    if token is None:
        hostname = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
        if not is_loopback(hostname):
            raise ForbiddenError(
                f"This inbox has no token, so it accepts changes only under a loopback host "
                f"name, not {hostname!r}; open it as 127.0.0.1 or start it with --token.",
                where="Host header",
            )
    _same_origin(request)
    if form is not None:
        if not hmac.compare_digest(form.encode(), form_token().encode()):
            raise ForbiddenError(
                "The form's CSRF token is missing or stale; reload the page and try again.",
                where=f"form field {CSRF_FIELD}",
            )
        return
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaTypeError(
            f"Send the change as JSON with 'Content-Type: application/json', not "
            f"{content_type or 'no content type'!r}.",
            where="Content-Type header",
        )
