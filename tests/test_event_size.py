"""Every event fits: an error with a huge local or body still arrives, cut with Sentry's `_meta`.

The inbox answers 413 above 1 MiB per event, as Sentry does; before fit_event such an error was
never stored anywhere (see benchmarks/bench_event_size.py for bare sentry-sdk beside us).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import orjson
import pytest
import sentry_sdk
from fastapi import FastAPI, Request
from hypothesis import given, settings
from hypothesis import strategies as st

import fastapi_sentry
from fastapi_sentry import _event_size
from fastapi_sentry._event_size import (
    LONG_VALUE,
    MAX_EVENT_BYTES,
    MAX_TAG_VALUE,
    WORST_EXPANSION,
    fit_event,
    json_size,
    size_bound,
)
from fastapi_sentry.inbox import InboxServer
from tests.scrubbing.corpus import benchmark_events
from tests.support.server import serve as serving

MB = 1_000_000


def frame(function: str, in_app: bool, **local: Any) -> dict[str, Any]:
    return {"function": function, "module": "app.x", "in_app": in_app, "vars": dict(local)}


def error_event(frames: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "event_id": "a" * 32,
        "level": "error",
        "exception": {
            "values": [{"type": "ValueError", "value": "boom", "stacktrace": {"frames": frames}}]
        },
        **fields,
    }


def test_a_normal_event_is_left_as_it_is() -> None:
    event = benchmark_events()["typical"]
    before = copy.deepcopy(event)
    assert fit_event(event) is event
    assert event == before


def test_a_2mb_local_is_cut_with_sentrys_meta_note() -> None:
    event = error_event([frame("handler", True, blob="x" * (2 * MB), order_id="ORD-1")])
    fit_event(event)
    assert json_size(event) < MAX_EVENT_BYTES
    local = event["exception"]["values"][0]["stacktrace"]["frames"][0]["vars"]
    assert local["order_id"] == "ORD-1"
    assert local["blob"] == "x" * (LONG_VALUE - 3) + "..."
    note = event["_meta"]["exception"]["values"]["0"]["stacktrace"]["frames"]["0"]["vars"]["blob"]
    assert note == {"": {"len": 2 * MB, "rem": [["!limit", "s", 0, LONG_VALUE]]}}
    assert event["tags"]["trimmed"] == "true"
    assert event["contexts"]["size_limits"]["dropped"] == ["long values cut"]


def test_library_locals_go_before_the_apps_own() -> None:
    # many values just under the cut: cutting long values is not enough
    rows = ["r" * (LONG_VALUE - 10)] * 10
    frames = [frame(f"lib{i}", False, rows=rows) for i in range(8)]
    frames.append(frame("handler", True, order_id="ORD-1", rows=rows[:2]))
    event = error_event(frames)
    fit_event(event)
    assert json_size(event) < MAX_EVENT_BYTES
    out = event["exception"]["values"][0]["stacktrace"]["frames"]
    assert all(f["vars"] is None for f in out[:-1])
    assert out[-1]["vars"]["order_id"] == "ORD-1"
    assert out[-1]["vars"]["rows"] == rows[:2]  # the app's own locals are whole
    # nothing was long enough to cut: the first step that changed anything is the one named
    assert event["contexts"]["size_limits"]["dropped"] == ["library frames' locals"]
    assert event["_meta"]["exception"]["values"]["0"]["stacktrace"]["frames"]["0"]["vars"] == {
        "": {"rem": [["!limit", "x"]]}
    }


def test_then_request_body_and_breadcrumb_data_in_that_order() -> None:
    big = {f"k{i}": "v" * (LONG_VALUE - 10) for i in range(40)}
    crumbs = [{"message": f"crumb {i}", "data": {"sql": "s" * 12000}} for i in range(90)]
    event = error_event(
        [frame("handler", True, order_id="ORD-1")],
        request={"url": "http://x/checkout", "method": "POST", "data": big},
        breadcrumbs={"values": crumbs},
    )
    fit_event(event)
    assert json_size(event) < MAX_EVENT_BYTES
    assert event["request"]["data"] is None
    assert event["request"]["url"] == "http://x/checkout"
    assert all(c["data"] is None for c in event["breadcrumbs"]["values"])
    assert len(event["breadcrumbs"]["values"]) == 90
    assert event["contexts"]["size_limits"]["dropped"][-2:] == ["request body", "breadcrumb data"]


def test_tags_breadcrumbs_and_spans_are_held_to_sentrys_limits_whatever_the_size() -> None:
    event: dict[str, Any] = {
        "type": "transaction",
        "tags": {"long": "t" * 500, "short": "ok"},
        "breadcrumbs": {"values": [{"message": str(i)} for i in range(150)]},
        "spans": [{"span_id": str(i)} for i in range(1200)],
    }
    fit_event(event, max_breadcrumbs=100)
    assert event["tags"] == {"long": "t" * (MAX_TAG_VALUE - 3) + "...", "short": "ok"}
    assert event["_meta"]["tags"]["long"] == {
        "": {"len": 500, "rem": [["!limit", "s", 0, MAX_TAG_VALUE]]}
    }
    assert [c["message"] for c in event["breadcrumbs"]["values"]] == [
        str(i) for i in range(50, 150)
    ]
    assert len(event["spans"]) == 1000


def test_an_event_that_cannot_be_measured_is_sent_as_it_came() -> None:
    event = error_event([frame("handler", True, value=float("nan"))])
    assert fit_event(event) is event
    assert "_meta" not in event
    assert "tags" not in event


def test_even_a_huge_event_of_many_parts_fits() -> None:
    frames = [frame(f"f{i}", True, **{f"v{j}": "z" * 5000 for j in range(10)}) for i in range(60)]
    event = error_event(frames, extra={f"e{i}": "e" * 20000 for i in range(100)})
    event["exception"]["values"][0]["value"] = "m" * (3 * MB)
    fit_event(event)
    assert json_size(event) < MAX_EVENT_BYTES
    value = event["exception"]["values"][0]
    assert value["type"] == "ValueError"
    assert value["value"].startswith("mmm")


# --- against the inbox, over real sockets -------------------------------------------------------


def oversized_app(dsn: str) -> FastAPI:
    app = FastAPI()

    @app.get("/local/{mb}")
    def big_local(mb: int) -> None:
        blob = "x" * (mb * MB)
        raise ValueError(f"failed with a {len(blob)} character local")

    @app.get("/rows/{mb}")
    def rows(mb: int) -> None:
        # a list of rows: the SDK keeps the first 10, each a large repr
        table = [{"id": i, "payload": "p" * (mb * MB // 10)} for i in range(50)]
        raise LookupError(f"{len(table)} rows")

    @app.post("/body")
    async def body(request: Request) -> None:
        raw = await request.body()
        raise RuntimeError(f"rejected a body of {len(raw)} bytes")

    fastapi_sentry.install(app, dsn=dsn, environment="test", traces_sample_rate=0.0)
    return app


@pytest.mark.parametrize(
    ("method", "path", "size", "error"),
    [
        ("GET", "/local/2", 0, "ValueError"),
        ("GET", "/local/10", 0, "ValueError"),
        ("GET", "/rows/2", 0, "LookupError"),
        ("GET", "/rows/10", 0, "LookupError"),
        ("POST", "/body", 2 * MB, "RuntimeError"),
        ("POST", "/body", 10 * MB, "RuntimeError"),
    ],
)
def test_an_oversized_error_arrives_readable(
    inbox: InboxServer, method: str, path: str, size: int, error: str
) -> None:
    app = oversized_app(inbox.dsn)
    with serving(app) as url:
        content = json.dumps({"rows": "b" * size}).encode() if size else None
        response = httpx.request(method, url + path, content=content, timeout=60)
        assert response.status_code == 500
        sentry_sdk.flush(timeout=30)
        [event] = inbox.wait_for(1, timeout=30)
    [value] = event["exception"]["values"]
    assert value["type"] == error
    assert value["stacktrace"]["frames"][-1]["function"] in ("big_local", "rows", "body")
    assert event["tags"]["trimmed"] == "true"
    assert event["contexts"]["size_limits"]["dropped"]
    assert len(json.dumps(event)) < 2 * MAX_EVENT_BYTES  # what the inbox stores is readable


def test_no_breadcrumbs_allowed_means_none_are_sent() -> None:
    event: dict[str, Any] = {"breadcrumbs": {"values": [{"message": "a"}, {"message": "b"}]}}
    fit_event(event, max_breadcrumbs=0)
    assert event["breadcrumbs"]["values"] == []


_TEXT = st.text(
    # DEL and every width of UTF-8 (the worst cases), control characters, quotes and lone
    # surrogates (which orjson refuses), beside plain ASCII
    st.one_of(
        st.sampled_from('\x7f\x00\x1f\n"\\/é\u0800\u2028\U0001f600\ud800'),
        st.characters(),
        st.characters(max_codepoint=0x7F),
    )
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.one_of(_TEXT, st.integers()), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=600, deadline=None)
@given(_JSON)
def test_the_cheap_size_bound_is_never_under_the_exact_size(value: Any) -> None:
    bound = size_bound(value)
    if bound is not None:
        assert json_size(value) <= bound


@pytest.mark.parametrize(
    ("value", "expansion"),
    [("\x7f", 6), ("é", 3), ("\u0800", 2), ("\U0001f600", 3), (1e-7, 5 / 4)],
)
def test_the_worst_expansions_are_the_documented_ones(value: Any, expansion: float) -> None:
    """What the bound rests on: no character or number grows more than WORST_EXPANSION times."""
    exact = json_size(value * 100 if isinstance(value, str) else value)
    written = len(orjson.dumps(value * 100 if isinstance(value, str) else value))
    assert exact / written == pytest.approx(expansion, rel=0.02)
    assert expansion <= WORST_EXPANSION


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_TEXT, _JSON, max_size=8), st.integers(min_value=50, max_value=3000))
def test_the_cheap_bound_leaves_fit_event_unchanged(event: dict[str, Any], max_bytes: int) -> None:
    """The same event out of fit_event with the bound and with only the exact count."""
    exact_only = copy.deepcopy(event)
    with_bound = fit_event(event, max_bytes=max_bytes)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_event_size, "size_bound", lambda value: None)
        assert fit_event(exact_only, max_bytes=max_bytes) == with_bound
