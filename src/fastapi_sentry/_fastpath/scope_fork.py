"""Forking sentry-sdk's scopes per request, cheaper than `Scope.fork()`.

`Scope.fork()` goes through `copy.copy`, which copies the breadcrumb deque and deep-copies the
feature flags through the `copy` module's dispatch, two scopes per request. This is the same copy,
attribute by attribute, without the dispatch, and without copying breadcrumbs a request starts
without (what that saves per request is part of `benchmarks/bench_inprocess.py --instructions`).

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
    rv._transaction_info = scope._transaction_info.copy()
    rv._user = scope._user
    rv._tags = scope._tags.copy()
    rv._contexts = scope._contexts.copy()
    rv._extras = scope._extras.copy()
    if keep_breadcrumbs:
        rv._breadcrumbs = scope._breadcrumbs.copy()
        rv._n_breadcrumbs_truncated = scope._n_breadcrumbs_truncated
    else:
        rv._breadcrumbs = deque()
        rv._n_breadcrumbs_truncated = 0
    rv._gen_ai_original_message_count = scope._gen_ai_original_message_count.copy()
    rv._event_processors = scope._event_processors.copy()
    rv._error_processors = scope._error_processors.copy()
    rv._propagation_context = scope._propagation_context
    rv._should_capture = scope._should_capture
    rv._span = scope._span
    rv._server_segment_span = scope._server_segment_span
    rv._session = scope._session
    rv._force_auto_session_tracking = scope._force_auto_session_tracking
    rv._attachments = scope._attachments.copy()
    rv._profile = scope._profile
    rv._last_event_id = scope._last_event_id
    flags = scope._flags
    rv._flags = None if flags is None else deepcopy(flags)
    rv._attributes = scope._attributes.copy()
    rv._gen_ai_conversation_id = scope._gen_ai_conversation_id
    return rv
