"""Request fields for an event, worked out only when an event is actually sent.

The request path (`_middleware`) only notes the ASGI scope, the request id, the response status
and the body chunks the app itself read. Everything an event shows about its request — URL,
method, headers and query string filtered by the SDK's `data_collection` rules, cookies, body,
route-template transaction name, `endpoint`/`request_id`/status tags, user — is built here, by
one global event processor, for the few requests that send something. sentry-sdk's Starlette
and FastAPI integrations build most of it on every request instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping, Sequence
from typing import Any, Literal, cast
from urllib.parse import parse_qsl

import sentry_sdk
from sentry_sdk._types import AnnotatedValue
from sentry_sdk.client import BaseClient
from sentry_sdk.data_collection import _apply_key_value_collection_filtering
from sentry_sdk.integrations._asgi_common import (
    _get_ip,
    _get_path,
    _get_request_data,
    _get_url,
    _RootPathInPath,
)
from sentry_sdk.integrations._wsgi_common import _is_json_content_type, request_body_within_bounds
from sentry_sdk.scope import add_global_event_processor, should_send_default_pii
from sentry_sdk.utils import _is_localhost, has_data_collection_enabled
from starlette.requests import HTTPConnection, cookie_parser

from fastapi_sentry._request_state import RequestState, current_request
from fastapi_sentry._users import UserResolver, resolve_user

logger = logging.getLogger(__name__)

UNMATCHED_ROUTE = "<unmatched>"
# Starlette tolerates a root path either inside or outside `path` (since 0.33).
_ROOT_PATH_IN_PATH = _RootPathInPath.EITHER
_NAMED_SOURCES = frozenset({"component", "route", "custom"})


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


def transaction_name(asgi_scope: MutableMapping[str, Any]) -> tuple[str, str]:
    """The name and source sentry-sdk gives with `transaction_style="url"`."""
    path = route_path(asgi_scope)
    if path is not None:
        return path, "route"
    return url_name(asgi_scope), "url"


def url_name(asgi_scope: MutableMapping[str, Any]) -> str:
    """`http://host:port/path`, the SDK's name for a request no route has matched (yet)."""
    kind: Literal["http", "ws"] = "http" if asgi_scope.get("type") == "http" else "ws"
    plain = cast("dict[str, Any]", asgi_scope)
    return _get_url(plain, kind, None, _get_path(plain, _ROOT_PATH_IN_PATH))


class RequestEnricher:
    """Fills in one event from one request's state. One per installed app."""

    def __init__(self, *, user_resolvers: Sequence[UserResolver], send_default_pii: bool) -> None:
        self.user_resolvers = tuple(user_resolvers)
        self.send_default_pii = send_default_pii

    def __call__(self, event: dict[str, Any], state: RequestState) -> dict[str, Any]:
        asgi_scope = state.asgi_scope
        self._request(event, state)
        if event.get("type") != "transaction":
            self._transaction_name(event, asgi_scope)
        tags = event.get("tags")
        if not isinstance(tags, dict):
            tags = event["tags"] = {}
        tags.setdefault("request_id", state.request_id)
        tags.setdefault("endpoint", route_template(asgi_scope))
        if state.status >= 400:
            tags.setdefault("http.status_code", str(state.status))
            contexts = event.get("contexts")
            if isinstance(contexts, dict):
                contexts.setdefault("response", {"status_code": state.status})
        self._user(event, state)
        return event

    def _request(self, event: dict[str, Any], state: RequestState) -> None:
        asgi_scope = state.asgi_scope
        request = event.get("request")
        if not isinstance(request, dict):
            request = {}
        request.update(_get_request_data(asgi_scope, root_path_in_path=_ROOT_PATH_IN_PATH))
        client = sentry_sdk.get_client()
        options = client.options
        headers = _headers(asgi_scope, (b"cookie", b"content-type", b"content-length"))
        cookies = _cookies(headers.get("cookie"), options)
        if cookies:
            request["cookies"] = cookies
        if bodies_collected(options):
            data = _body(state, headers, client)
            if data is not None:
                request["data"] = data
        event["request"] = request

    @staticmethod
    def _transaction_name(event: dict[str, Any], asgi_scope: MutableMapping[str, Any]) -> None:
        info = event.get("transaction_info")
        source = info.get("source") if isinstance(info, dict) else None
        if event.get("transaction") and source in _NAMED_SOURCES:
            return  # named by the app (or the traced path) already
        name, source = transaction_name(asgi_scope)
        event["transaction"] = name
        event["transaction_info"] = {"source": source}

    def _user(self, event: dict[str, Any], state: RequestState) -> None:
        existing = event.get("user")
        if isinstance(existing, dict) and existing.get("id"):
            return
        if not state.user_resolved:
            state.user_resolved = True
            try:
                state.user = resolve_user(
                    HTTPConnection(state.asgi_scope),
                    self.user_resolvers,
                    send_default_pii=self.send_default_pii,
                )
            except Exception:
                logger.warning(
                    "The user resolver raised; the event is sent without a user", exc_info=True
                )
        if state.user:
            event["user"] = {**(existing if isinstance(existing, dict) else {}), **state.user}


def _headers(asgi_scope: MutableMapping[str, Any], names: tuple[bytes, ...]) -> dict[str, str]:
    """The request's headers of these (lower-case) names, decoded."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in asgi_scope.get("headers", ())
        if name in names
    }


def _cookies(header: str | None, options: dict[str, Any]) -> dict[str, Any] | None:
    if not header:
        return None
    if has_data_collection_enabled(options):
        filtered = _apply_key_value_collection_filtering(
            items=cookie_parser(header), behaviour=options["data_collection"]["cookies"]
        )
        return dict(filtered) if filtered else None
    return cookie_parser(header) if should_send_default_pii() else None


def bodies_collected(options: dict[str, Any]) -> bool:
    """Whether the SDK's data-collection rules let request bodies into events at all."""
    if has_data_collection_enabled(options):
        return "incoming_request" in options["data_collection"]["http_bodies"]
    return True


def _body(state: RequestState, headers: dict[str, str], client: BaseClient) -> Any:
    """The body as sentry-sdk's Starlette integration shows it, from what the app read."""
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        return None
    if not length:
        return None
    if not request_body_within_bounds(client, length):
        return AnnotatedValue.removed_because_over_size_limit()
    if state.body_chunks is None:
        return None  # the app never read it; reading it now could hang on a closed connection
    if state.body_size > length:
        return AnnotatedValue.removed_because_over_size_limit()  # more came than announced
    body = b"".join(state.body_chunks)
    content_type = headers.get("content-type", "")
    if _is_json_content_type(content_type):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if parsed:
            return parsed
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            form = {}
        if form:
            return form
    return AnnotatedValue.removed_because_raw_data()


def add_request_attributes(log: dict[str, Any]) -> None:
    """For a log sent during a request: what sentry-sdk's ASGI integration puts on the scope
    for every request (user agent, whether the request is local), added only to logs sent."""
    state = current_request.get()
    attributes = log.get("attributes")
    if state is None or not isinstance(attributes, dict):
        return
    asgi_scope = state.asgi_scope
    headers = _headers(asgi_scope, (b"user-agent", b"host", b"x-forwarded-host"))
    if "user-agent" in headers:
        attributes.setdefault("user_agent.original", headers["user-agent"])
    server = asgi_scope.get("server")
    attributes.setdefault(
        "sentry.is_localhost",
        _is_localhost(
            client_ip=_get_ip(cast("dict[str, Any]", asgi_scope)),
            url_host=server[0] if server and "host" not in headers else None,
            host_header=headers.get("host"),
            forwarded_host_header=headers.get("x-forwarded-host"),
        ),
    )


def enrich_event(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """The global event processor: a no-op outside a request of an installed app."""
    state = current_request.get()
    if state is None:
        return event
    try:
        return state.enricher(event, state)
    except Exception:
        logger.debug("Could not add request data to a Sentry event", exc_info=True)
        return event


_registered = False


def register_event_processor() -> None:
    """Once per process: a global processor survives re-initialisation of the SDK."""
    global _registered
    if not _registered:
        add_global_event_processor(enrich_event)  # type: ignore[arg-type]
        _registered = True
