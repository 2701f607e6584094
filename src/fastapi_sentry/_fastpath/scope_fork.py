"""Forking sentry-sdk's scopes per request, cheaper than `Scope.fork()`.

`Scope.fork()` goes through `copy.copy`, which copies the breadcrumb deque and deep-copies the
feature flags through the `copy` module's dispatch, two scopes per request. This is the same copy,
attribute by attribute, without the dispatch, and without copying breadcrumbs a request starts
without, and making an empty container new instead of copying it (a request's parent scopes
are mostly empty; what that saves per request is part of
`benchmarks/bench_inprocess.py --instructions`).

An untraced request goes further (`fork_lazily`): its two forks are made when something first
touches them, so a request that never touches Sentry copies nothing; most requests of a
service that does not log on every request are such requests.

It is used only while `Scope.__slots__` is exactly the set below; if a sentry-sdk release adds
or renames a field, `fork()` falls back to the SDK's own copy, so nothing can be left shared.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from copy import copy, deepcopy
from typing import Any, ClassVar

from fastapi_sentry._context import RequestState
from fastapi_sentry._fastpath._sdk_seam import PropagationContext, Scope, _isolation_scope

_COPIED = frozenset(
    {
        "_level", "_name", "_fingerprint", "_transaction", "_transaction_info", "_user",
        "_tags", "_contexts", "_extras", "_breadcrumbs", "_n_breadcrumbs_truncated",
        "_gen_ai_original_message_count", "_gen_ai_conversation_id", "_event_processors",
        "_error_processors", "_should_capture", "_span", "_server_segment_span", "_session",
        "_attachments", "_force_auto_session_tracking", "_profile", "_propagation_context",
        "client", "_type", "_last_event_id", "_flags", "_attributes",
    }
)  # fmt: skip

FAST = frozenset(getattr(Scope, "__slots__", ())) == _COPIED and Scope.__bases__ == (object,)


def fork(scope: Scope, *, keep_breadcrumbs: bool = True) -> Scope:
    """A copy of `scope` that shares no mutable state with it, as `Scope.fork()` makes."""
    if not FAST or type(scope) is not Scope:
        copied = scope.fork()
        if not keep_breadcrumbs:
            copied.clear_breadcrumbs()
        return copied
    rv: Scope = object.__new__(Scope)
    rv.client = scope.client
    rv._propagation_context = scope._propagation_context
    _copy_fields(rv, scope, keep_breadcrumbs)
    return rv


def _copy_fields(rv: Scope, scope: Scope, keep_breadcrumbs: bool) -> None:
    """Every field but `client` and `_propagation_context`, as `Scope.__copy__` copies them."""
    rv._type = scope._type
    rv._level = scope._level
    rv._name = scope._name
    rv._fingerprint = scope._fingerprint
    rv._transaction = scope._transaction
    info = scope._transaction_info
    rv._transaction_info = info.copy() if info else {}
    rv._user = scope._user
    tags = scope._tags
    rv._tags = tags.copy() if tags else {}
    contexts = scope._contexts
    rv._contexts = contexts.copy() if contexts else {}
    extras = scope._extras
    rv._extras = extras.copy() if extras else {}
    if keep_breadcrumbs:
        rv._breadcrumbs = scope._breadcrumbs.copy()
        rv._n_breadcrumbs_truncated = scope._n_breadcrumbs_truncated
    else:
        rv._breadcrumbs = deque()
        rv._n_breadcrumbs_truncated = 0
    counts = scope._gen_ai_original_message_count
    rv._gen_ai_original_message_count = counts.copy() if counts else {}
    processors = scope._event_processors
    rv._event_processors = processors.copy() if processors else []
    error_processors = scope._error_processors
    rv._error_processors = error_processors.copy() if error_processors else []
    rv._should_capture = scope._should_capture
    rv._span = scope._span
    rv._server_segment_span = scope._server_segment_span
    rv._session = scope._session
    rv._force_auto_session_tracking = scope._force_auto_session_tracking
    attachments = scope._attachments
    rv._attachments = attachments.copy() if attachments else []
    rv._profile = scope._profile
    rv._last_event_id = scope._last_event_id
    flags = scope._flags
    rv._flags = None if flags is None else deepcopy(flags)
    attributes = scope._attributes
    rv._attributes = attributes.copy() if attributes else {}
    rv._gen_ai_conversation_id = scope._gen_ai_conversation_id


class RequestScope(Scope):
    """A request's own isolation or current scope: a `Scope` that knows its request (so the
    request needs no context variable of its own: `_context.current_request` looks here) and,
    until the fork is made (see `fork_lazily`), the scope it is a fork of."""

    __slots__ = ("_fork_of", "request_state")

    _fork_of: Scope | None
    request_state: RequestState | None

    def __copy__(self) -> Scope:
        """`Scope.fork()` of a request's scope (a thread's, `sentry_sdk.isolation_scope()`):
        the copy belongs to the same request."""
        rv = Scope.__copy__(self)
        assert isinstance(rv, RequestScope)
        rv.request_state = self.request_state
        rv._fork_of = None
        return rv


class _Unforked(RequestScope):
    """A fork not made yet: the first read or write of any field makes it (`_make_fork`), and
    from then on the object is a plain `RequestScope`, with no hook left on its fields."""

    __slots__ = ()

    #: the isolation fork starts without breadcrumbs; the current fork keeps its parent's
    keep_breadcrumbs: ClassVar[bool] = True
    #: the isolation fork of a request that starts a trace: its propagation context is made here
    new_trace: ClassVar[bool] = False

    def __getattr__(self, name: str) -> Any:
        _make_fork(self)
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        _make_fork(self)
        setattr(self, name, value)

    def __delattr__(self, name: str) -> None:
        _make_fork(self)
        delattr(self, name)

    def __copy__(self) -> Scope:
        _make_fork(self)
        return copy(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Scope:
        _make_fork(self)
        return deepcopy(self, memo)


class _UnforkedIsolation(_Unforked):
    __slots__ = ()
    keep_breadcrumbs = False


class _UnforkedNewTrace(_Unforked):
    __slots__ = ()
    keep_breadcrumbs = False
    new_trace = True


class _Forking(RequestScope):
    """While `_make_fork` fills the fields in: a reader on another thread waits for it."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        with _LOCK:
            pass
        if type(self) is _Forking:  # pragma: no cover - only if the fork failed half-way
            raise AttributeError(name)
        return getattr(self, name)


_LOCK = threading.Lock()
_set_class = object.__setattr__


def fork_now(
    scope: Scope,
    state: RequestState,
    isolation: bool,
    propagation: PropagationContext | None = None,
) -> RequestScope:
    """The request's fork of `scope`, made at once (a sampled request's transaction writes to
    both scopes anyway). The isolation fork starts without breadcrumbs and with `propagation`,
    or with a new propagation context (a new trace) when there is none."""
    if FAST and type(scope) is Scope:
        rv: RequestScope = object.__new__(RequestScope)
        rv.client = scope.client
        rv._propagation_context = scope._propagation_context
        _copy_fields(rv, scope, not isolation)
    else:  # the parent is a request's scope already, or sentry-sdk's fields have changed
        rv = _as_request_scope(fork(scope, keep_breadcrumbs=not isolation))
    rv._fork_of = None
    rv.request_state = state
    if isolation:
        rv._propagation_context = propagation or PropagationContext()
    return rv


def _as_request_scope(forked: Scope) -> RequestScope:
    if isinstance(forked, RequestScope):
        return forked
    rv: RequestScope = object.__new__(RequestScope)
    for name in _ALL_FIELDS:
        with contextlib.suppress(AttributeError):  # a field the SDK leaves unset
            setattr(rv, name, getattr(forked, name))
    return rv


_ALL_FIELDS = tuple(getattr(Scope, "__slots__", ()))


def fork_lazily(
    scope: Scope,
    state: RequestState,
    isolation: bool,
    propagation: PropagationContext | None = None,
) -> RequestScope:
    """The request's fork of `scope`, made when something first touches it; until then it
    costs an object.

    A request that never touches Sentry (no tag, breadcrumb, log record or event) never copies
    its parent's fields; `client` is copied now, so `sentry_sdk.get_client()` does not make the
    fork. The fork copies the parent's fields as they are when it is made, which for a
    request's parents (the process's base scopes, written to at start-up) is what they were
    when the request came in. Otherwise as `fork_now`.
    """
    if not FAST or type(scope) is not Scope:
        return fork_now(scope, state, isolation, propagation)
    lazy: RequestScope = object.__new__(RequestScope)
    lazy._fork_of = scope
    lazy.request_state = state
    lazy.client = scope.client
    if not isolation:
        lazy.__class__ = _Unforked
    elif propagation is None:
        lazy.__class__ = _UnforkedNewTrace
    else:
        lazy._propagation_context = propagation
        lazy.__class__ = _UnforkedIsolation
    return lazy


def _make_fork(lazy: RequestScope) -> None:
    with _LOCK:
        kind = type(lazy)
        if not issubclass(kind, _Unforked):  # made meanwhile, on another thread
            return
        _set_class(lazy, "__class__", _Forking)
        parent = lazy._fork_of
        assert parent is not None
        _copy_fields(lazy, parent, kind.keep_breadcrumbs)
        if kind is _Unforked:
            lazy._propagation_context = parent._propagation_context
        elif kind.new_trace:
            lazy._propagation_context = PropagationContext()
        lazy._fork_of = None
        lazy.__class__ = RequestScope


def request_of_scope() -> RequestState | None:
    """The request whose isolation scope is current (`_context.current_request` asks this)."""
    scope = _isolation_scope.get()
    return scope.request_state if isinstance(scope, RequestScope) else None
