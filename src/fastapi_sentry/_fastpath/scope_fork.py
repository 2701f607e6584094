"""Forking sentry-sdk's scopes per request, cheaper than `Scope.fork()`.

`Scope.fork()` goes through `copy.copy`, which copies the breadcrumb deque and deep-copies the
feature flags through the `copy` module's dispatch, two scopes per request. This is the same copy,
attribute by attribute, without the dispatch, and without copying breadcrumbs a request starts
without, and making an empty container new instead of copying it (a request's parent scopes
are mostly empty; what that saves per request is part of
`benchmarks/bench_inprocess.py --instructions`).

It is used only while `Scope.__slots__` is exactly the set below; if a sentry-sdk release adds
or renames a field, `fork()` falls back to the SDK's own copy, so nothing can be left shared.
"""

from __future__ import annotations

from collections import deque
from copy import deepcopy

from fastapi_sentry._fastpath._sdk_seam import Scope

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
    rv._type = scope._type
    rv.client = scope.client
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
    rv._propagation_context = scope._propagation_context
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
    return rv
