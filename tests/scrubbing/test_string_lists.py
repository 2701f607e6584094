"""Lists of strings (a frame's source lines, sys.argv) are not walked item by item: their strings
are looked up and settled with the others at the end of the walk. A secret in one must still go,
on the first scrub and on every later one (when its text is remembered), in a list or a tuple."""

from __future__ import annotations

import copy
from typing import Any

from fastapi_sentry._scrubbing import Scrubber

TOKEN = "ghp_" + "a1B2c3D4e5" * 4
LEAKY_LINE = f"    client = Github('{TOKEN}')"
MASKED_LINE = "    client = Github('[Filtered]')"
BENIGN_LINE = "    total = sum(line.qty for line in order.lines)"


def _event(lines: list[str] | tuple[str, ...], argv: list[str]) -> dict[str, Any]:
    frame = {
        "filename": "app/views.py",
        "function": "checkout",
        "lineno": 42,
        "pre_context": lines,
        "context_line": BENIGN_LINE,
        "post_context": [BENIGN_LINE, "abc", ""],
        "vars": {"lines": lines},
    }
    return {
        "event_id": "e" * 32,
        "exception": {"values": [{"type": "ValueError", "stacktrace": {"frames": [frame]}}]},
        "extra": {"sys.argv": argv},
    }


def _frame(event: dict[str, Any]) -> dict[str, Any]:
    frame: dict[str, Any] = event["exception"]["values"][0]["stacktrace"]["frames"][0]
    return frame


def test_a_secret_in_source_lines_and_argv_is_masked_cold_and_warm() -> None:
    scrubber = Scrubber()
    lines = [BENIGN_LINE, LEAKY_LINE, BENIGN_LINE]
    event = _event(lines, ["/srv/app/main.py", f"--token={TOKEN}"])
    before = copy.deepcopy(event)
    for attempt in ("cold", "warm"):
        out = scrubber.scrub_event(event)
        frame = _frame(out)
        assert TOKEN not in repr(out), attempt
        assert frame["pre_context"] == [BENIGN_LINE, MASKED_LINE, BENIGN_LINE]
        assert frame["vars"]["lines"] == frame["pre_context"]
        assert out["extra"]["sys.argv"] == ["/srv/app/main.py", "--token=[Filtered]"]
        # a list with nothing to mask is shared, not copied
        assert frame["post_context"] is _frame(event)["post_context"]
        assert event == before


def test_a_remembered_secret_line_is_masked_in_a_list_it_was_not_seen_in() -> None:
    scrubber = Scrubber()
    scrubber.scrub_event(_event([LEAKY_LINE], []))  # remembered from a list
    out = scrubber.scrub_event({"extra": {"note": LEAKY_LINE, "lines": [BENIGN_LINE, LEAKY_LINE]}})
    assert out["extra"]["note"] == MASKED_LINE
    assert out["extra"]["lines"] == [BENIGN_LINE, MASKED_LINE]
    # and the other way round: remembered as a single string, found in a list
    scrubber = Scrubber()
    scrubber.scrub_event({"extra": {"note": LEAKY_LINE}})
    out = scrubber.scrub_event(_event([LEAKY_LINE, BENIGN_LINE], [LEAKY_LINE]))
    assert TOKEN not in repr(out)


def test_a_tuple_of_strings_stays_a_tuple_and_is_masked() -> None:
    scrubber = Scrubber()
    for _ in range(2):
        out = scrubber.scrub_value({"lines": (BENIGN_LINE, LEAKY_LINE)})
        assert out == {"lines": (BENIGN_LINE, MASKED_LINE)}
        assert type(out["lines"]) is tuple


def test_the_same_list_at_two_places_is_masked_at_both_and_left_alone() -> None:
    lines = [LEAKY_LINE]
    event = {"extra": {"a": lines, "b": {"c": lines}}}
    out = Scrubber().scrub_event(event)
    assert out["extra"]["a"] == out["extra"]["b"]["c"] == [MASKED_LINE]
    assert lines == [LEAKY_LINE]


def test_string_lists_under_sensitive_keys_and_header_pairs_are_still_masked_whole() -> None:
    out = Scrubber().scrub_value(
        {
            "api_keys": ["first-key-value", "second-key-value"],
            "header": ["authorization", "opaque-value-without-a-scheme"],
            "headers": [["x-api-key", "opaque-value"], ["accept", "text/html"]],
        }
    )
    assert out == {
        "api_keys": ["[Filtered]", "[Filtered]"],
        "header": ["authorization", "[Filtered]"],
        "headers": [["x-api-key", "[Filtered]"], ["accept", "text/html"]],
    }
