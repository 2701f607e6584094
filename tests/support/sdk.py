"""Put sentry-sdk and our module state back to "never initialised", between tests or examples."""

from __future__ import annotations

import sentry_sdk

from fastapi_sentry import _state


def forget_sentry() -> None:
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=2)
    sentry_sdk.get_global_scope().set_client(None)
    for scope in (sentry_sdk.get_isolation_scope(), sentry_sdk.get_current_scope()):
        scope.clear()
        # clear() keeps event processors; sentry-sdk's GraphQL integrations add one to the
        # isolation scope per operation run outside a request, and it would reach later tests
        scope._event_processors.clear()
    _state.reset()
