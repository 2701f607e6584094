"""Passwords and bearer JWTs (HS256) with the standard library, and the `current_user` dependency.

The dependency puts the user on `request.state.user`; fastapi-sentry reads it from there when an
event is sent, so no code here talks to Sentry and no lookup happens per request for Sentry's sake.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any


class UnsupportedHashError(ValueError):
    """A stored password hash in a scheme this service no longer verifies."""


class InvalidTokenError(ValueError):
    pass


_ITERATIONS = 100_000


def hash_password(password: str) -> str:
    salt = os.urandom(16).hex()
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), _ITERATIONS).hex()
    return f"pbkdf2_sha256${_ITERATIONS}${salt}${digest}"


def verify_password(password: str, stored: str) -> bool:
    scheme, _, rest = stored.partition("$")
    if scheme != "pbkdf2_sha256":
        raise UnsupportedHashError(f"password hash scheme {scheme!r} is not supported")
    iterations, salt, expected = rest.split("$")
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    return hmac.compare_digest(digest.hex(), expected)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(claims: dict[str, Any], secret: str, ttl_seconds: int) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({**claims, "exp": int(time.time()) + ttl_seconds}).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def decode_token(token: str, secret: str) -> dict[str, Any]:
    try:
        header, body, signature = token.split(".")
        sent = _unb64(signature)
        claims: dict[str, Any] = json.loads(_unb64(body))
    except (ValueError, TypeError) as exc:
        raise InvalidTokenError("malformed token") from exc
    expected = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(sent, expected):
        raise InvalidTokenError("bad signature")
    if claims.get("exp", 0) < time.time():
        raise InvalidTokenError("token expired")
    return claims
