"""Ids, sampling figures and timestamps at the protocol's places are left unscanned when, and only
when, they have the exact format the protocol gives them. A span id of digits that passes the card
check must stay an id (Sentry links spans by it); anything else at those places is scrubbed exactly
as anywhere else."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastapi_sentry._scrubbing import Scrubber
from tests.scrubbing.corpus import SPAN_ID, TRACE_ID, install_transaction, luhn_check_digit
from tests.scrubbing.test_first_look import CONFIGS, TEXT, pure
from tests.scrubbing.test_properties import PROPERTY_SETTINGS, SHAPED

CARD_ID = "4111111111111111"  # 16 lowercase hex characters, and a card number by Luhn
TIME = "2026-12-03T16:40:50.387607Z"

# the test's own reading of the formats, written apart from the scrubber's
HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")
DECIMAL = re.compile(r"[0-9](\.[0-9]{1,12})?(e-[0-9]{2,3})?")
ISO = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})?"
)
FLAG = re.compile(r"true|false")
DSC = ("contexts", "trace", "dynamic_sampling_context")
PATHS: dict[tuple[Any, ...], re.Pattern[str]] = {
    ("contexts", "trace", "trace_id"): HEX32,
    ("contexts", "trace", "span_id"): HEX16,
    ("contexts", "trace", "parent_span_id"): HEX16,
    (*DSC, "trace_id"): HEX32,
    (*DSC, "sample_rand"): DECIMAL,
    (*DSC, "sample_rate"): DECIMAL,
    (*DSC, "sampled"): FLAG,
    ("spans", 0, "trace_id"): HEX32,
    ("spans", 1, "span_id"): HEX16,
    ("spans", 1, "parent_span_id"): HEX16,
    ("spans", 0, "start_timestamp"): ISO,
    ("spans", 1, "timestamp"): ISO,
    ("breadcrumbs", "values", 0, "timestamp"): ISO,
    ("tags", "request_id"): HEX32,
}
# the same keys one level off the protocol's places: free text like any other
ELSEWHERE = [
    ("extra", "trace", "span_id"),
    ("contexts", "app", "span_id"),
    ("contexts", "trace", "data", "span_id"),
    ("spans", 0, "data", "span_id"),
    ("extra", "request_id"),
    ("breadcrumbs", "values", 0, "data", "timestamp"),
]


def transaction() -> dict[str, Any]:
    """install()'s transaction with two spans and a breadcrumb, so every place is there."""
    event = install_transaction()
    event["spans"] = [
        {
            "trace_id": TRACE_ID,
            "span_id": span_id,
            "parent_span_id": SPAN_ID,
            "op": "db",
            "start_timestamp": TIME,
            "timestamp": TIME,
            "data": {},
        }
        for span_id in ("b6ec4881f1bf7eec", "9a1e5c0f3b7d2468")
    ]
    event["breadcrumbs"] = {"values": [{"timestamp": TIME, "message": "ok", "data": {}}]}
    event["contexts"]["app"] = {}
    event["extra"]["trace"] = {}
    return event


def put(event: dict[str, Any], path: tuple[Any, ...], value: str) -> None:
    node: Any = event
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def get(event: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = event
    for part in path:
        node = node[part]
    return node


def test_a_card_like_span_id_stays_an_id_and_the_same_digits_elsewhere_are_masked() -> None:
    event = transaction()
    for path in PATHS:
        if PATHS[path] is HEX16:
            put(event, path, CARD_ID)
    event["extra"]["note"] = CARD_ID
    out = Scrubber().scrub_event(event)
    assert {path: get(out, path) for path in PATHS if PATHS[path] is HEX16} == {
        path: CARD_ID for path in PATHS if PATHS[path] is HEX16
    }
    assert out["extra"]["note"] == "[Filtered]"


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        (("contexts", "trace", "span_id"), "4111 1111 1111 1111"),
        (("contexts", "trace", "trace_id"), "password=hunter2-x"),
        (("spans", 1, "span_id"), CARD_ID + "\n"),
        (("spans", 0, "trace_id"), "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"),
        (("spans", 1, "parent_span_id"), "4111-1111-1111-1111"),
        ((*DSC, "sample_rand"), CARD_ID),
        ((*DSC, "sample_rate"), "1.0;api_key=" + "a1" * 10),
        ((*DSC, "trace_id"), "token=" + "a" * 26),
        ((*DSC, "sampled"), "true, token=abcdef1234567890"),
        (("spans", 0, "start_timestamp"), TIME + " 4111111111111111"),
        (("breadcrumbs", "values", 0, "timestamp"), "secret=" + TIME),
        (("tags", "request_id"), CARD_ID),
    ],
)
def test_a_secret_at_a_protocol_place_not_in_the_protocol_format_is_scrubbed(
    path: tuple[Any, ...], secret: str
) -> None:
    event = transaction()
    put(event, path, secret)
    out = get(Scrubber().scrub_event(event), path)
    assert out != secret
    assert "[Filtered]" in out


@st.composite
def protocol_like(draw: st.DrawFn) -> str:
    """Text near the formats: right ones, card-shaped ones, and almost-right ones."""
    digits = draw(st.text("0123456789", min_size=12, max_size=18))
    card = digits[:15] + luhn_check_digit(digits[:15])
    value = draw(
        st.one_of(
            st.text("0123456789abcdef", min_size=15, max_size=33),
            st.text("0123456789abcdefABCDEF -", min_size=15, max_size=33),
            st.sampled_from([card, card.ljust(32, "0"), "0." + card, card[:13] + "e-05"]),
            st.sampled_from([TIME, TIME[:19], TIME[:19] + "+02:00", "0.642984", "1.0", "1e-05"]),
            st.sampled_from(["true", "false", "True", "1"]),
            TEXT,
            st.sampled_from(sorted(SHAPED))
            .flatmap(lambda family: SHAPED[family])
            .map(lambda p: p[1]),
        )
    )
    form: str = draw(st.sampled_from([value, value + "\n", " " + value, value.upper()]))
    return form


@PROPERTY_SETTINGS
@given(
    value=protocol_like(),
    path=st.sampled_from(sorted(PATHS, key=repr) + ELSEWHERE),
    name=st.sampled_from(sorted(CONFIGS)),
)
def test_a_protocol_place_is_scrubbed_as_anywhere_unless_its_value_has_the_format(
    value: str, path: tuple[Any, ...], name: str
) -> None:
    event = transaction()
    put(event, path, value)
    before = copy.deepcopy(event)
    fast, slow = Scrubber(**CONFIGS[name]), pure(Scrubber(**CONFIGS[name]))
    out = fast.scrub_event(event)
    assert event == before
    assert slow.scrub_event(event) == out
    # scrub_value walks the same event without the protocol's places: the scrubbing of before
    anywhere = get(Scrubber(**CONFIGS[name]).scrub_value(event), path)
    fits = path in PATHS and PATHS[path].fullmatch(value) is not None
    assert get(out, path) == (value if fits else anywhere)
    # and the rest of the event as it would be without the value
    put(event, path, "x" * 5)
    put(out, path, "x" * 5)
    assert out == Scrubber(**CONFIGS[name]).scrub_event(event)
