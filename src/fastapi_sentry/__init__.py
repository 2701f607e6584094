"""Sentry error tracking and performance monitoring for FastAPI services and Celery workers.

`install(app)` and `install_celery(celery_app)` are the front door; the helpers below cover
what services kept writing by hand. Nothing here imports sentry_sdk until Sentry is enabled.
"""

from typing import TYPE_CHECKING, Any

from fastapi_sentry._context import RequestIdLogFilter, get_request_id
from fastapi_sentry._errors import (
    ConfigError,
    FastApiSentryError,
    MissingExtraError,
    SentryDebugError,
)
from fastapi_sentry._health import add_health_check
from fastapi_sentry._helpers import (
    capture_exception,
    capture_message,
    operation,
    trace,
    track_business_event,
    track_external_api_error,
    track_slow_operation,
)
from fastapi_sentry._scrubbing import scrub_event
from fastapi_sentry._settings import SentrySettings, load_settings
from fastapi_sentry._setup import install
from fastapi_sentry._users import (
    UserResolver,
    user_from_auth_middleware,
    user_from_jwt_claims,
    user_from_state,
)
from fastapi_sentry._version import __version__

if TYPE_CHECKING:
    from fastapi_sentry.celery import install_celery

__all__ = [
    "ConfigError",
    "FastApiSentryError",
    "MissingExtraError",
    "RequestIdLogFilter",
    "SentryDebugError",
    "SentrySettings",
    "UserResolver",
    "__version__",
    "add_health_check",
    "capture_exception",
    "capture_message",
    "get_request_id",
    "install",
    "install_celery",
    "load_settings",
    "operation",
    "scrub_event",
    "trace",
    "track_business_event",
    "track_external_api_error",
    "track_slow_operation",
    "user_from_auth_middleware",
    "user_from_jwt_claims",
    "user_from_state",
]


def __getattr__(name: str) -> Any:
    # Celery is an optional extra: import it only when asked for.
    if name == "install_celery":
        from fastapi_sentry.celery import install_celery

        return install_celery
    raise AttributeError(f"module 'fastapi_sentry' has no attribute {name!r}")
