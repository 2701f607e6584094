"""Put sentry-sdk and our module state back to "never initialised", between tests or examples."""

from __future__ import annotations

import sentry_sdk

from fastapi_sentry import _state


def forget_sentry() -> None:
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=2)
    sentry_sdk.get_global_scope().set_client(None)
    sentry_sdk.get_isolation_scope().clear()
    sentry_sdk.get_current_scope().clear()
    _state.reset()
