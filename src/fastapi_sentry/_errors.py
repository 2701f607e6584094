"""The library's exceptions: few, and each one a sentence a user can act on."""

from __future__ import annotations


class FastApiSentryError(Exception):
    """Base of every error this library raises on purpose."""


class ConfigError(FastApiSentryError, ValueError):
    """A setting is invalid; the message names the variable, the problem and the fix.

    It never contains the value of a secret setting (the DSN's key).
    """


class MissingExtraError(FastApiSentryError, ImportError):
    """A feature that was asked for by name needs an optional dependency that is not installed."""


class SentryDebugError(FastApiSentryError, RuntimeError):
    """Raised by `GET /sentry-debug` only; its events can be filtered out by this type."""
