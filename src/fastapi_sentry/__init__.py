"""fastapi-sentry."""

from fastapi_sentry._version import __version__

__all__ = ["__version__"]
