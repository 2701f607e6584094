"""The planted-secret corpus: 0 leaks, 0 benign values lost, and how sentry-sdk's scrubber fares."""

from __future__ import annotations

import copy

import pytest

from fastapi_sentry._scrubbing import Scrubber
from tests.scrubbing.corpus import (
    BENIGN,
    FAMILIES,
    LOCATIONS,
    Case,
    build_corpus,
    dump,
    leaked,
    score,
    seed_002_filter,
    sentry_event_scrubber,
)


@pytest.fixture(scope="module")
def corpus() -> list[Case]:
    return build_corpus()


def test_corpus_is_big_enough_and_covers_every_location(corpus: list[Case]) -> None:
    assert len({c.secret for c in corpus}) >= 150
    assert len(set(BENIGN)) >= 50
    locations = {c.name.split("@")[1] for c in corpus}
    assert locations == {name for name, _ in LOCATIONS}
    assert len(locations) == 20
    assert len(FAMILIES) == 20


def test_every_planted_secret_and_benign_value_is_really_there(corpus: list[Case]) -> None:
    """Without this the next test could pass on a corpus that plants nothing."""
    for case in corpus:
        text = dump(case.event)
        assert leaked(case.secret, text), case.name
        assert [b for b in BENIGN if b not in text] == [], case.name


def test_the_scorer_counts_a_scrubber_that_does_nothing_as_leaking_everything(
    corpus: list[Case],
) -> None:
    result = score(lambda event: event, corpus)
    assert len(result.leaks) == result.secrets == len(corpus)
    masked_everything = score(lambda event: {}, corpus)
    assert set(masked_everything.benign_lost) == set(BENIGN)


def test_no_leaks_and_no_benign_value_lost(corpus: list[Case]) -> None:
    result = score(Scrubber().scrub_event, corpus)
    assert result.leaks == []
    assert result.benign_lost == {}
    assert result.secrets == len(corpus) >= 150


def test_with_send_default_pii_personal_data_stays_and_secrets_still_go(
    corpus: list[Case],
) -> None:
    scrubber = Scrubber(send_default_pii=True)
    assert score(scrubber.scrub_event, corpus, include_pii=False).leaks == []
    # e-mail addresses, IPs and usernames stay wherever they are, except inside cookies, which are
    # credentials and masked whole either way
    pii = [c for c in corpus if c.pii and not c.name.endswith("@request.cookies")]
    assert pii
    assert [c.name for c in pii if not leaked(c.secret, dump(scrubber.scrub_event(c.event)))] == []


def test_sentry_sdks_event_scrubber_leaves_most_secrets_in_place(corpus: list[Case]) -> None:
    """The comparison the README prints; if sentry-sdk ever catches up, this tells us."""
    ours = score(Scrubber().scrub_event, corpus)
    for recursive in (False, True):
        theirs = score(sentry_event_scrubber(recursive=recursive), corpus)
        assert len(theirs.leaks) > len(corpus) // 2
        assert len(ours.leaks) < len(theirs.leaks)
    seeds = score(seed_002_filter, corpus)
    assert len(seeds.leaks) > len(corpus) * 9 // 10


def test_scrubbing_twice_changes_nothing_more(corpus: list[Case]) -> None:
    scrubber = Scrubber()
    for case in corpus[::5]:
        once = scrubber.scrub_event(copy.deepcopy(case.event))
        assert scrubber.scrub_event(copy.deepcopy(once)) == once, case.name
