"""Route-template names and tags for a request: `/orders/{order_id}`, never the raw path.

Plain Starlette and FastAPI knowledge, no sentry-sdk: both request paths (lean and fallback) use it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from fastapi_sentry._context import RequestState

UNMATCHED_ROUTE = "<unmatched>"


def route_path(asgi_scope: MutableMapping[str, Any]) -> str | None:
    """The matched route's template (`/orders/{order_id}`), never the raw path with its ids."""
    fastapi_scope = asgi_scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        # FastAPI >= 0.137 keeps the prefix-resolved template here; route.path lacks the prefix
        path = getattr(fastapi_scope.get("effective_route_context"), "path", None)
        if isinstance(path, str):
            return path
    path = getattr(asgi_scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    return _path_from_router(asgi_scope)


def _path_from_router(asgi_scope: MutableMapping[str, Any]) -> str | None:
    # plain Starlette does not note the route in the scope; match again (only for sent events)
    from starlette.routing import Match

    router = asgi_scope.get("router")
    for route in getattr(router, "routes", ()):
        try:
            if route.matches(asgi_scope)[0] == Match.FULL:
                path = getattr(route, "path", None)
                return path if isinstance(path, str) else None
        except Exception:  # a custom route that cannot match a copied scope: no name
            return None
    return None


def route_template(asgi_scope: MutableMapping[str, Any]) -> str:
    """`GET /orders/{order_id}`: the `endpoint` tag."""
    path = route_path(asgi_scope) or UNMATCHED_ROUTE
    return f"{asgi_scope.get('method', 'GET')} {asgi_scope.get('root_path', '')}{path}"


def add_request_tags(event: dict[str, Any], state: RequestState) -> None:
    """`request_id`, `endpoint` and, for a failed response, its status: on every event sent."""
    tags = event.get("tags")
    if not isinstance(tags, dict):
        tags = event["tags"] = {}
    tags.setdefault("request_id", state.request_id)
    tags.setdefault("endpoint", route_template(state.asgi_scope))
    if state.status >= 400:
        tags.setdefault("http.status_code", str(state.status))
        contexts = event.get("contexts")
        if isinstance(contexts, dict):
            contexts.setdefault("response", {"status_code": state.status})
