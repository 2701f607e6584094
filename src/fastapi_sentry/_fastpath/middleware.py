"""The request path: what every request pays for Sentry, kept to what every request needs.

Why it exists: sentry-sdk's Starlette/FastAPI integration does its full work on every request —
a new ASGI wrapper object, a transaction object even when tracing is off or the request is not
sampled, trace ids (uuid4, a `Random` seeded per request), request-data extraction, a body read,
transaction naming, session objects, `get_client()` about 20 times. An untraced request that
succeeds needs almost none of that; events are rare and can do their own work. What each
configuration costs per request, with this path and with the bare SDK, is measured by
`benchmarks/bench_inprocess.py --instructions` (CPU instructions per request, repeatable on a
shared machine) and kept in its result file under `benchmarks/results/`; the README's cost table
cites it.

So the SDK's Starlette and FastAPI integrations are disabled (`disabled_integrations`, see
`_setup`) and this one ASGI middleware replaces them. Per request it:

- forks the isolation and current scopes (what keeps requests apart), for an untraced request
  only when something first touches them (`scope_fork.fork_lazily`), with a new trace (its
  propagation context made only then) or the caller's when `sentry-trace` came in;
- notes the request id (incoming `X-Request-ID` or a new one, echoed on the response), the
  response status, and — only for requests with a body — the body chunks the app itself reads;
- decides head sampling itself (`_sampling`: the SDK's rate rule, one random draw carried
  downstream in `sentry-trace`/`baggage`), so an unsampled request never creates a transaction;
- reports an exception escaping the app (mechanism `starlette`, unhandled) and re-raises it.

Request data, cookies, body, user, tags and the route-template transaction name are added by
`enrich.RequestEnricher` when an event is actually sent. A sampled request runs through
`_traced`, which builds the same transaction the SDK builds (`http.server`, named by route
template, status, request data), or with `trace_lifecycle="stream"` through `_streamed`, which
starts the segment span the SDK's ASGI integration starts in that mode (same name, attributes and
status); the same head-sampling decision comes first, so an unsampled request creates no span.
Handled `HTTPException`s with a failed status are reported by `_exception_handlers`.
Release-health request counts are kept by `_sessions`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import sentry_sdk
import sentry_sdk.traces
from sentry_sdk.traces import StreamedSpan
from sentry_sdk.tracing import NoOpSpan
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from fastapi_sentry._context import RequestState, current_request, new_request_id, sane_request_id
from fastapi_sentry._exception_handlers import report_exception
from fastapi_sentry._fastpath import sessions
from fastapi_sentry._fastpath._sdk_seam import (
    PropagationContext,
    Scope,
    Transaction,
    _current_scope,
    _isolation_scope,
)
from fastapi_sentry._fastpath.enrich import (
    RequestEnricher,
    request_attributes,
    transaction_name,
    url_name,
)
from fastapi_sentry._fastpath.sampling import (
    DecidedTransaction,
    HeadOfTrace,
    HeadSampler,
    new_span_id,
    start_sampled,
)
from fastapi_sentry._fastpath.scope_fork import (
    RequestScope,
    fork_lazily,
    fork_now,
    request_of_scope,
)

current_request.find_in_scope(request_of_scope)

_TRACE_HEADERS = frozenset({b"sentry-trace", b"baggage", b"traceparent"})
_BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
ORIGIN = "auto.http.starlette"


class RequestContextMiddleware:
    """Outermost inside the app: even the 500 page of `ServerErrorMiddleware` gets the id."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        enricher: RequestEnricher,
        sampler: HeadSampler,
        header: str = "X-Request-ID",
        max_body_bytes: int = 10_000,
        stream: bool = False,
    ) -> None:
        self.app = app
        #: sentry-sdk's `trace_lifecycle="stream"`: a sampled request is a segment span
        self.stream = stream
        self.enricher = enricher
        self.sampler = sampler
        self.header = header.lower().encode("latin-1")
        self.watched = _TRACE_HEADERS | _BODY_HEADERS | {self.header}
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self._lifespan(scope, receive, send)
            return
        parent = _isolation_scope.get()
        if isinstance(parent, RequestScope):  # an app mounted inside another installed app
            await self.app(scope, receive, send)
            return

        request_id: str | None = None
        trace_headers: dict[str, str] | None = None
        has_body = False
        for name, value in scope["headers"]:
            if name in self.watched:
                if name == self.header:
                    request_id = sane_request_id(value)
                elif name in _TRACE_HEADERS:
                    if trace_headers is None:
                        trace_headers = {}
                    trace_headers[name.decode("latin-1")] = value.decode("latin-1")
                else:
                    has_body = True
        state = RequestState(scope, request_id or new_request_id(), self.enricher)

        incoming = (
            PropagationContext.from_incoming_data(trace_headers)
            if trace_headers is not None
            else None
        )
        sampled = False
        decided: float | None = None
        propagation = incoming  # None: a new trace, made if something asks for it
        if self.sampler.enabled:
            sampled, propagation, decided = self.sampler.decide(scope, incoming)
        # the request's own scopes (`current_request` finds the request on them): forked when
        # something first touches them, or at once for a transaction, which writes to both
        make = fork_now if sampled else fork_lazily
        if parent is None:
            parent = Scope.get_isolation_scope()
        isolation_token = _isolation_scope.set(make(parent, state, True, propagation))
        parent = _current_scope.get()
        if parent is None:
            parent = Scope.get_current_scope()
        current_token = _current_scope.set(make(parent, state, False))
        try:
            if has_body and self.max_body_bytes:
                receive = _keeping_body(receive, state, self.max_body_bytes)
            if sampled and propagation is not None:  # the sampler's decision comes with one
                if self.stream:
                    await self._streamed(scope, receive, send, state, propagation)
                else:
                    await self._traced(scope, receive, send, state, propagation, decided)
            else:
                try:
                    await self.app(scope, receive, _untraced_sender(send, state, self.header))
                except Exception as exc:
                    report_exception(exc, handled=False)
                    raise
        finally:
            sessions.record(state.outcome)
            _current_scope.reset(current_token)
            _isolation_scope.reset(isolation_token)

    async def _traced(
        self,
        scope: AsgiScope,
        receive: Receive,
        send: Send,
        state: RequestState,
        propagation: PropagationContext,
        decided: float | None,
    ) -> None:
        """A sampled request: the transaction sentry-sdk's integration would have made."""
        # named by URL until routing has matched (the SDK does the same)
        name, source = url_name(scope), "url"
        baggage = (
            propagation.transaction_baggage()
            if isinstance(propagation, HeadOfTrace)
            else propagation.baggage
        )
        fields: dict[str, Any] = {
            "op": f"{scope['type']}.server",
            "name": name,
            "source": source,
            "origin": ORIGIN,
            "baggage": baggage,
            "parent_sampled": propagation.parent_sampled,
            "trace_id": propagation.trace_id,
            "span_id": new_span_id(),
            "parent_span_id": propagation.parent_span_id,
            "same_process_as_parent": False,
        }
        transaction = (
            Transaction(**fields) if decided is None else DecidedTransaction(decided, **fields)
        )
        transaction.set_tag("asgi.type", scope["type"])
        started: Transaction | NoOpSpan = transaction
        if not (
            isinstance(transaction, DecidedTransaction)
            and start_sampled(transaction, Scope.get_current_scope())
        ):
            started = sentry_sdk.start_transaction(
                transaction, custom_sampling_context={"asgi_scope": scope}
            )
        with started:
            try:
                await self.app(scope, receive, self._sender(send, state, transaction))
            except Exception as exc:  # inside the transaction, so the event links to it
                report_exception(exc, handled=False)
                raise
            finally:
                # a name given while the request ran (a GraphQL operation, the app) is kept
                if transaction.source == "url":
                    name, source = transaction_name(scope)
                    sentry_sdk.get_current_scope().set_transaction_name(name, source=source)

    async def _streamed(
        self,
        scope: AsgiScope,
        receive: Receive,
        send: Send,
        state: RequestState,
        propagation: PropagationContext,
    ) -> None:
        """A sampled request in stream mode: the segment sentry-sdk's ASGI integration starts."""
        if isinstance(propagation, HeadOfTrace):
            # the dice the SDK's own sampling decision reads, so it reaches ours; mutable, so
            # the segment fills in the rest of its dynamic sampling context as a transaction does
            propagation.baggage = propagation.transaction_baggage()
        Scope.set_custom_sampling_context({"asgi_scope": scope})
        kind = scope["type"]
        segment = sentry_sdk.traces.start_span(
            name=url_name(scope),  # named by URL until routing has matched, as the SDK does
            attributes={
                "sentry.op": f"{kind}.server",
                "sentry.origin": ORIGIN,
                "sentry.segment.name.source": "url",
                "network.protocol.name": kind,
            },
            parent_span=None,
        )
        with segment:
            segment.set_attributes(request_attributes(scope))
            try:
                await self.app(scope, receive, self._sender(send, state, segment))
            except Exception as exc:  # inside the segment, so the event links to it
                report_exception(exc, handled=False)
                raise
            finally:
                # a name given while the request ran (a GraphQL operation, the app) is kept
                if segment.get_attributes().get("sentry.segment.name.source") == "url":
                    name, source = transaction_name(scope)
                    segment.name = name
                    segment.set_attribute("sentry.segment.name.source", source)

    def _sender(
        self, send: Send, state: RequestState, span: Transaction | StreamedSpan | None
    ) -> Callable[[Message], Awaitable[None]]:
        header = self.header

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message.get("status", 200)
                state.status = status
                if isinstance(span, Transaction):
                    span.set_http_status(status)
                elif span is not None:  # a streamed segment, as the SDK's ASGI integration sets it
                    span.status = "error" if status >= 400 else "ok"
                    span.set_attribute("http.response.status_code", status)
                message = _with_request_id(message, header, state)
            await send(message)

        return send_with_request_id

    async def _lifespan(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # a failing startup is worth an event, as the SDK sends one
            report_exception(exc, handled=False)
            raise


def _untraced_sender(send: Send, state: RequestState, header: bytes) -> Send:
    """`_sender` without a span, and without a coroutine of its own per message: it hands back
    `send`'s awaitable, so each message costs one call instead of a second coroutine."""

    def send_with_request_id(message: Message) -> Awaitable[None]:
        if message["type"] != "http.response.start":
            return send(message)
        state.status = message.get("status", 200)
        headers = message.get("headers", ())
        for name, _ in headers:
            if name.lower() == header:  # the app's own id: left as it is
                return send(message)
        # a new list, as Starlette's own middlewares add headers: the app's may be reused
        message["headers"] = [*headers, (header, state.request_id.encode())]
        return send(message)

    return send_with_request_id


def _with_request_id(message: Message, header: bytes, state: RequestState) -> Message:
    """The response start with the request id header, unless the app has set its own."""
    headers = message.get("headers", ())
    for name, _ in headers:
        if name.lower() == header:
            return message
    return {**message, "headers": [*headers, (header, state.request_id.encode())]}


def _keeping_body(receive: Receive, state: RequestState, limit: int) -> Receive:
    """Keeps references to the body chunks the app reads (no copy), up to `limit` bytes."""

    async def receive_keeping_body() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            body = message.get("body", b"")
            chunks = state.body_chunks
            if chunks is None:
                chunks = state.body_chunks = []
            state.body_size += len(body)
            if body and state.body_size <= limit:
                chunks.append(body)
        return message

    return receive_keeping_body
