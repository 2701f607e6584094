"""The serializer fast path: whatever it accepts, it serializes exactly as sentry-sdk does."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sentry_sdk import serializer as sdk_serializer
from sentry_sdk._types import AnnotatedValue
from sentry_sdk.utils import format_timestamp as sdk_format_timestamp

from fastapi_sentry._fastpath.serialize import NotPlain, format_timestamp, plain_copy, serialize

OPTIONS = {"max_request_body_size": "medium", "max_value_length": 40, "custom_repr": None}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=60),
    st.datetimes(timezones=st.just(timezone.utc)),
    st.binary(max_size=8),
    st.sampled_from([(1, 2), frozenset({1}), object]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=13),
        st.dictionaries(st.text(max_size=6), inner, max_size=13),
    ),
    max_leaves=40,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["transaction", "error"]),
        "extra": values,
        "tags": st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=5),
        "contexts": values,
        "request": st.fixed_dictionaries({}, optional={"data": values, "url": st.text()}),
        "breadcrumbs": st.fixed_dictionaries(
            {"values": st.lists(st.dictionaries(st.text(max_size=5), values, max_size=12))}
        ),
        "spans": st.lists(values, max_size=4),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events)
def test_what_the_fast_path_accepts_equals_the_sdk_serializer(event: dict[str, Any]) -> None:
    expected = sdk_serializer.serialize(event, **OPTIONS)
    try:
        ours = plain_copy(event, **OPTIONS)
    except NotPlain:
        assert serialize(event, **OPTIONS) == expected  # handed over, whole
        return
    assert ours == expected
    json.dumps(ours)


def test_a_typical_transaction_takes_the_fast_path() -> None:
    now = datetime.now(timezone.utc)
    event = {
        "type": "transaction",
        "transaction": "/orders/{order_id}",
        "timestamp": now,
        "start_timestamp": now - timedelta(milliseconds=3),
        "contexts": {"trace": {"trace_id": "a" * 32, "span_id": "b" * 16, "data": {"n": 1}}},
        "tags": {"endpoint": "GET /orders/{order_id}"},
        "request": {"url": "http://x/orders/1", "headers": {"host": "x"}, "data": {"a": [1, 2]}},
        "spans": [{"op": "db", "description": "SELECT 1", "timestamp": now, "data": {}}],
        "extra": {"sys.argv": ["app"]},
    }
    assert plain_copy(event, **OPTIONS) == sdk_serializer.serialize(event, **OPTIONS)


@pytest.mark.parametrize(
    "event",
    [
        # sentry-sdk's own argv extra under `uvicorn app:app --host ... --port ... --loop ...`
        {"type": "transaction", "extra": {"sys.argv": [f"--arg{n}" for n in range(15)]}},
        {"extra": {str(n): n for n in range(11)}},
        {"extra": {"a": [{str(n): [n] * 12 for n in range(12)}]}},  # nested, many notes
        {"request": {"data": {"items": list(range(30)), "ok": True}}},
        {"breadcrumbs": {"values": [{"data": {str(n): n for n in range(14)}}, {"a": 1}]}},
        {"extra": {str(n): n for n in range(11)}, "_meta": {"x": {"": {"rem": []}}}},
    ],
)
def test_a_databag_over_breadth_is_trimmed_on_the_fast_path_as_the_sdk_trims_it(
    event: dict[str, Any],
) -> None:
    ours = plain_copy(event, **OPTIONS)  # no NotPlain: the fast path keeps it
    assert ours == sdk_serializer.serialize(event, **OPTIONS)
    assert "_meta" in ours


@pytest.mark.parametrize(
    "event",
    [
        {"request": {"data": {"a": {"b": {"c": {"d": {"e": 1}}}}}}},  # depth trimmed
        {"message": "x" * 41},  # over max_value_length
        {"contexts": {"app": {"name": "x" * 41}}},  # ... nested in a dict
        {"contexts": {"app": {"names": ["x" * 41]}}},  # ... in a list
        {"contexts": {"app": {"name": "é" * 21}}},  # ... in UTF-8 bytes, not characters
        {"spans": AnnotatedValue([], {"len": 3})},
        {"contexts": {"x": float("nan")}},
        {"tags": {"x": b"bytes"}},
    ],
)
def test_anything_the_sdk_would_change_goes_to_the_sdk(event: dict[str, Any]) -> None:
    with pytest.raises(NotPlain):
        plain_copy(event, **OPTIONS)
    assert serialize(event, **OPTIONS) == sdk_serializer.serialize(event, **OPTIONS)


def test_a_cycle_goes_to_the_sdk() -> None:
    looped: dict[str, Any] = {}
    looped["self"] = looped
    assert serialize({"contexts": looped}, **OPTIONS) == sdk_serializer.serialize(
        {"contexts": looped}, **OPTIONS
    )


@settings(max_examples=500, deadline=None)
@given(
    value=st.one_of(
        st.datetimes(timezones=st.just(timezone.utc)),
        st.datetimes(timezones=st.sampled_from([timezone(timedelta(hours=-5)), timezone.utc])),
        st.datetimes(min_value=datetime(990, 1, 1), max_value=datetime(1010, 1, 1)).map(
            lambda naive: naive.replace(tzinfo=timezone.utc)
        ),
    )
)
def test_timestamps_are_formatted_as_the_sdk_formats_them(value: datetime) -> None:
    assert format_timestamp(value) == sdk_format_timestamp(value)


def test_the_envelopes_sent_at_is_formatted_by_the_fast_path() -> None:
    import sentry_sdk.client

    from fastapi_sentry._fastpath import serialize as fast

    fast.install()
    assert sentry_sdk.client.format_timestamp is format_timestamp  # type: ignore[attr-defined]
