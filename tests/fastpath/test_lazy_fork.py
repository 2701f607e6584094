"""An untraced request's scopes are forked when something first touches them: the same forks,
made later or never."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from copy import copy
from typing import Any

import sentry_sdk
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sentry_sdk.scope import Scope
from sentry_sdk.tracing_utils import PropagationContext

import fastapi_sentry
from fastapi_sentry._context import RequestState, get_request_id
from fastapi_sentry._fastpath import scope_fork
from fastapi_sentry._fastpath.enrich import RequestEnricher
from fastapi_sentry.testing import CapturedEnvelopes
from tests.fastpath.test_request_path import DSN, _call_async


def _parent() -> Scope:
    """A parent with something in every field a fork copies."""
    scope = Scope()
    scope.set_user({"id": "u"})
    scope.add_breadcrumb(message="m")
    scope.add_event_processor(lambda event, hint: event)
    scope.set_tag("a", "1")
    for name, value in (("ctx", {"k": "v"}), ("other", {"n": 1})):
        scope.set_context(name, value)
    scope.set_extra("e", 1)
    scope.set_attribute("attr", "v")
    return scope


_STATE = RequestState({}, "0" * 32, RequestEnricher(user_resolvers=(), send_default_pii=False))


def _unforked(scope: Scope) -> bool:
    return isinstance(scope, scope_fork._Unforked)


def _assert_same_fork(lazy: Scope, eager: Scope, parent: Scope) -> None:
    for name in Scope.__slots__:
        mine, made_now = getattr(lazy, name), getattr(eager, name)
        if isinstance(made_now, (deque, list)):
            assert list(mine) == list(made_now), name
        else:
            assert mine == made_now, name
        if made_now is not getattr(parent, name):
            assert mine is not getattr(parent, name), f"{name} is shared with the parent"


def test_a_touched_lazy_fork_is_the_fork_made_at_once() -> None:
    parent = _parent()
    propagation = PropagationContext()
    current = scope_fork.fork_lazily(parent, _STATE, False)
    isolation = scope_fork.fork_lazily(parent, _STATE, True, propagation)
    _assert_same_fork(current, scope_fork.fork(parent), parent)
    eager_isolation = scope_fork.fork(parent, keep_breadcrumbs=False)
    eager_isolation._propagation_context = propagation
    _assert_same_fork(isolation, eager_isolation, parent)
    assert type(current) is scope_fork.RequestScope  # no hook left once made
    assert type(isolation) is scope_fork.RequestScope


def test_an_untouched_fork_copies_nothing_and_get_client_does_not_make_it() -> None:
    parent = _parent()
    lazy = scope_fork.fork_lazily(parent, _STATE, False)
    assert lazy.client is parent.client
    assert _unforked(lazy)  # reading the client did not fork it
    lazy.set_tag("b", "2")
    assert not _unforked(lazy)
    assert lazy._tags == {"a": "1", "b": "2"}
    assert parent._tags == {"a": "1"}


def test_a_write_before_any_read_is_kept() -> None:
    parent = _parent()
    lazy = scope_fork.fork_lazily(parent, _STATE, False)
    lazy.set_level("warning")  # writes `_level` without reading a field first
    assert lazy._tags == {"a": "1"}  # the fork, made after the write, did not undo it
    assert lazy._level == "warning"
    assert parent._level is None


def test_each_new_trace_gets_its_own_propagation_context() -> None:
    parent = Scope()
    first, second = (scope_fork.fork_lazily(parent, _STATE, True) for _ in range(2))
    assert first._propagation_context is not None
    assert second._propagation_context is not None
    assert first._propagation_context.trace_id != second._propagation_context.trace_id
    assert parent._propagation_context is not first._propagation_context


def test_copying_an_unforked_scope_forks_it_first() -> None:
    parent = _parent()
    lazy = scope_fork.fork_lazily(parent, _STATE, True, PropagationContext())
    copied = copy(lazy)
    copied.set_tag("c", "3")
    assert lazy._tags == {"a": "1"}
    assert list(copied._breadcrumbs) == []  # the isolation fork's, not the parent's


def test_threads_touching_one_unforked_scope_share_the_one_fork() -> None:
    parent = Scope()
    lazy = scope_fork.fork_lazily(parent, _STATE, False)
    start = threading.Barrier(8)

    def tag(n: int) -> None:
        start.wait()
        lazy.set_tag(f"t{n}", n)

    threads = [threading.Thread(target=tag, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert lazy._tags == {f"t{n}": n for n in range(8)}
    assert parent._tags == {}


def test_requests_touching_sentry_after_both_started_never_see_each_others_data(
    sentry_events: CapturedEnvelopes,
) -> None:
    """Both requests' forks are still unforked when the other starts; a third request never
    touches Sentry at all, and the process's scopes are left as they were."""
    app = FastAPI()
    both_started = asyncio.Event()
    started: list[str] = []

    @app.get("/quiet")
    async def quiet() -> dict[str, str]:
        return {"quiet": "yes"}

    @app.get("/mark/{name}")
    async def mark(name: str) -> None:
        started.append(name)
        if len(started) == 2:
            both_started.set()
        await both_started.wait()  # the first touch comes after both requests began
        sentry_sdk.get_current_scope().set_extra("who", name)
        sentry_sdk.set_tag("who", name)
        sentry_sdk.add_breadcrumb(message=f"crumb {name}")
        await asyncio.sleep(0)  # the other request writes meanwhile
        raise RuntimeError(name)

    fastapi_sentry.install(app, dsn=DSN, enable_tracing=False)

    async def all_three() -> list[int]:
        paths = ["/mark/a", "/quiet", "/mark/b"]
        return list(await asyncio.gather(*(_call_async(app, path) for path in paths)))

    statuses = asyncio.run(all_three())
    assert statuses == [500, 200, 500]
    by_name: dict[str, dict[str, Any]] = {
        event["exception"]["values"][0]["value"]: event for event in sentry_events.errors
    }
    assert set(by_name) == {"a", "b"}
    for name, event in by_name.items():
        assert event["tags"]["who"] == name
        assert event["extra"]["who"] == name
        assert [c["message"] for c in event["breadcrumbs"]["values"]] == [f"crumb {name}"]
    trace_ids = {event["contexts"]["trace"]["trace_id"] for event in by_name.values()}
    assert len(trace_ids) == 2
    assert "who" not in Scope.get_isolation_scope()._tags
    assert "who" not in Scope.get_current_scope()._extras


def test_the_request_is_found_on_its_scopes_in_forks_and_threads_and_not_after() -> None:
    """The lean path sets no context variable of its own: the request's id is found on the
    isolation scope, which a nested isolation scope and a thread's copy of it still carry."""
    app = FastAPI()
    seen: dict[str, str | None] = {}

    @app.get("/ids")
    async def ids() -> None:
        seen["handler"] = get_request_id()
        with sentry_sdk.isolation_scope():
            seen["nested"] = get_request_id()
        thread = threading.Thread(target=lambda: seen.__setitem__("thread", get_request_id()))
        thread.start()
        thread.join()

    fastapi_sentry.install(app, dsn=DSN, enable_tracing=False)
    with TestClient(app) as client:
        response = client.get("/ids", headers={"x-request-id": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    assert seen == {"handler": "req-42", "nested": "req-42", "thread": "req-42"}
    assert get_request_id() is None
