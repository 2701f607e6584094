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
from sentry_sdk.client import BaseClient
from sentry_sdk.scope import should_send_default_pii
from starlette.requests import cookie_parser

from fastapi_sentry._context import RequestState, add_request_timing, current_request
from fastapi_sentry._fastpath._sdk_seam import (
    AnnotatedValue,
    _apply_key_value_collection_filtering,
    _get_ip,
    _get_path,
    _get_request_attributes,
    _get_request_data,
    _get_url,
    _is_json_content_type,
    _is_localhost,
    _RootPathInPath,
    has_data_collection_enabled,
    request_body_within_bounds,
)
from fastapi_sentry._routes import add_request_tags, route_path
from fastapi_sentry._users import UserResolver, add_request_span_attributes, fill_user

logger = logging.getLogger(__name__)

# Starlette tolerates a root path either inside or outside `path` (since 0.33).
_ROOT_PATH_IN_PATH = _RootPathInPath.EITHER
_NAMED_SOURCES = frozenset({"component", "route", "custom"})


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


def request_attributes(asgi_scope: MutableMapping[str, Any]) -> dict[str, Any]:
    """A streamed segment's request attributes, as sentry-sdk's ASGI integration sets them."""
    return _get_request_attributes(asgi_scope, _ROOT_PATH_IN_PATH)


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
        add_request_tags(event, state)
        add_request_timing(event, state)
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
        fill_user(event, state, self.user_resolvers, send_default_pii=self.send_default_pii)

    def add_span_attributes(self, attributes: dict[str, Any], state: RequestState) -> None:
        """A streamed span sent during the request: request id, user, and the segment's name
        by route template (a child span ends before the segment is renamed, at its end)."""
        add_request_span_attributes(
            attributes, state, self.user_resolvers, send_default_pii=self.send_default_pii
        )
        asgi_scope = state.asgi_scope
        if attributes.get("sentry.segment.name") == url_name(asgi_scope):
            name, source = transaction_name(asgi_scope)
            if source != "url":
                attributes["sentry.segment.name"] = name


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
