"""Copy-on-write: the walk leaves a container as it is until one of its strings changes, then copies
it and the path to it. The warm path (every string remembered, changed ones replaced where the walk
finds them, their containers copied there and then) is the reference: both must give the same event,
and neither may touch its input, even where one dict sits at two places or under a tuple."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fastapi_sentry._scrubbing import Scrubber
from tests.scrubbing.test_properties import (
    BENIGN_KEYS,
    PROPERTY_SETTINGS,
    SHAPED,
    TREE,
    containers,
    planted_value,
)


def _as_tuples(node: Any) -> Any:
    """The tree with every list a tuple: a tuple cannot be patched, so it takes another path."""
    if isinstance(node, dict):
        return {k: _as_tuples(v) for k, v in node.items()}
    if isinstance(node, list):
        return tuple(_as_tuples(v) for v in node)
    return node


@st.composite
def planted_tree(draw: st.DrawFn) -> dict[str, Any]:
    """A random event with a few secrets of any family, one subtree shared at a second place."""
    tree = {"root": draw(TREE)}
    for _ in range(draw(st.integers(0, 3))):
        _, written = draw(SHAPED[draw(st.sampled_from(sorted(SHAPED)))])
        value, _ = draw(planted_value(written))
        target = draw(st.sampled_from(containers(tree, [])))
        if isinstance(target, dict):
            target[draw(BENIGN_KEYS)] = value
        else:
            target.append(value)
    shared = draw(st.sampled_from(containers(tree["root"], [])))
    tree["alias"] = shared  # the same object twice: each place needs its own copy
    extra: Any = _as_tuples(tree) if draw(st.booleans()) else tree
    return {"event_id": "event-under-test", "extra": extra, "breadcrumbs": {"values": [tree]}}


@PROPERTY_SETTINGS
@given(event=planted_tree())
def test_copy_on_write_gives_the_warm_walk_result_and_leaves_the_input_alone(
    event: dict[str, Any],
) -> None:
    scrubber = Scrubber()
    before = copy.deepcopy(event)
    cold = scrubber.scrub_event(event)
    assert event == before
    warm = scrubber.scrub_event(event)  # every string remembered now: replaced during the walk
    assert event == before
    assert cold == warm
    scrubber.clear_cache()
    assert (
        scrubber.scrub_event(copy.deepcopy(event)) == cold
    )  # no shared object gives no other result


def test_only_the_path_to_a_changed_string_is_copied() -> None:
    clean = {"items": [{"sku": "SKU-1", "note": "gift wrap"}], "page": "2 of 9"}
    dirty = {"query": "a=1&token=8f3a9c12d4e5f6a7b8c9&b=2", "note": "leave at the door"}
    event = {"extra": {"clean": clean, "dirty": {"inner": dirty}}}
    out = Scrubber().scrub_event(event)
    assert out["extra"]["clean"] is clean  # nothing in it changed: shared, not copied
    assert out["extra"]["dirty"]["inner"] is not dirty
    assert out["extra"]["dirty"]["inner"]["query"] == "a=1&token=[Filtered]&b=2"
    assert dirty["query"] == "a=1&token=8f3a9c12d4e5f6a7b8c9&b=2"  # the input is as it was
