"""Errors the inbox answers with: each carries its HTTP status and says what is wrong and where."""

from __future__ import annotations


class InboxError(Exception):
    """Base of every error the inbox turns into an HTTP answer."""

    status_code = 500

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def to_json(self) -> dict[str, str]:
        body = {"detail": self.message}
        if self.where is not None:
            body["where"] = self.where
        return body


class MalformedRequestError(InboxError, ValueError):
    """The body is not a valid envelope or JSON event (HTTP 400)."""

    status_code = 400


class PayloadTooLargeError(InboxError, ValueError):
    """An item, the envelope or its decompressed form is over a size limit (HTTP 413)."""

    status_code = 413


class UnsupportedEncodingError(InboxError, ValueError):
    """The Content-Encoding is not one the inbox can decode (HTTP 415)."""

    status_code = 415


class AuthenticationError(InboxError, PermissionError):
    """No DSN key or API token was sent (HTTP 401)."""

    status_code = 401


class ForbiddenError(InboxError, PermissionError):
    """A key or token was sent but does not grant access (HTTP 403)."""

    status_code = 403


class NotFoundError(InboxError, LookupError):
    """The project, issue or page does not exist (HTTP 404)."""

    status_code = 404


class StorageError(InboxError, OSError):
    """SQLite refused the write; nothing of the request was stored (HTTP 503)."""

    status_code = 503
