"""The first look is a superset of the detectors: a string it passes over is one they leave alone.

The scrubber runs its detectors only on the strings that a joint search over all of an event's new
strings flags (see the "first look" in _detectors). A string it missed but a detector would change
is a secret sent in clear, so these tests hold the two together: random text built from the
detectors' own fragments, every string of the planted-secret corpus, and edge cases of the joint
search (a key split over two strings, non-ASCII text, "\\x00" inside a string).
"""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi_sentry._scrubbing import Scrubber
from tests.scrubbing.corpus import BENIGN, benchmark_events, build_corpus
from tests.scrubbing.test_properties import SHAPED, sensitive_key


def pure(scrubber: Scrubber) -> Scrubber:
    """The same scrubber without the C matcher (the optional `fast` extra), as most installs run."""
    scrubber._c_matcher = None
    return scrubber


CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "pii": {"send_default_pii": True},
    "extra": {"extra_keys": ["tenant_pin", "zorg"], "extra_patterns": [r"ACME-\d{6}"]},
}
# every configuration twice: with Hyperscan's one-pass first look where it is installed, and with
# the Python first look
SCRUBBERS = {name: Scrubber(**config) for name, config in CONFIGS.items()} | {
    f"{name}-pure": pure(Scrubber(**config)) for name, config in CONFIGS.items()
}
# pieces of what the detectors react to, and of what merely looks close
FRAGMENTS = [
    "password", "Passwd", "TOKEN", "api_key", "X-Api-Key", "session", "sid", "auth", "author",
    "monkey", "key", "cc", "pin", "user", "email", "login", "zorg", "tenant_pin", "cookie",
    "Set-Cookie", "=", ":", ": ", " = ", "&", "?", "'", '"', "\\", "\\n", "\\'", " ", "  ", "\t",
    "\n", ",", "(", ")", "('", '(b"', "', '", "{", "}", "[", "]", "<", ">", "/", "-", "_", ".",
    "Bearer ", "bearer\t", "BASIC ", "Digest+", "%20", "eyJ", "eyJhbGciOiJIUzI1NiJ9.", "sk_live_",
    "rk_test_", "whsec_", "ghp_", "github_pat_", "xoxb-", "sk-", "sk-ant-", "glpat-", "npm_",
    "AKIA", "ASIA", "AIza", "-----BEGIN RSA PRIVATE KEY-----", "-----END PRIVATE KEY-----", "@",
    "://", "postgres://", "user:pw@", "hooks.slack.com/services/", "4111", "1111", "4242", "5555",
    "0", "12", "255", "127.0.0.1", "10.1.2.3", "::", "fe80::1", "2001:db8:0:0:0:0:0:1", "ACME-",
    "123456", "token=%s", "{}", "%(token)s", "İ", "ſ", "\u212a", "é", "\x00",
]  # fmt: skip
TEXT = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.text(string.ascii_letters + string.digits, min_size=1, max_size=40),
        st.sampled_from(sorted(SHAPED)).flatmap(lambda family: SHAPED[family]).map(lambda p: p[1]),
        sensitive_key(),
    ),
    max_size=14,
).map("".join)


def missed(scrubber: Scrubber, strings: list[str]) -> list[str]:
    """Strings a detector changes that the first look did not flag."""
    suspects = scrubber._suspects(strings)
    return [s for i, s in enumerate(strings) if i not in suspects and scrubber._scan(s) != s]


def all_strings(value: Any, found: set[str]) -> set[str]:
    if isinstance(value, str):
        found.add(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            all_strings(k, found)
            all_strings(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            all_strings(v, found)
    elif isinstance(value, bytes):
        found.add(value.decode("utf-8", "replace"))
    return found


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strings=st.lists(TEXT, min_size=1, max_size=8), name=st.sampled_from(sorted(SCRUBBERS)))
def test_random_detector_text_is_never_passed_over(strings: list[str], name: str) -> None:
    assert missed(SCRUBBERS[name], strings) == []
    # and alone, the way a string in a tuple or a top-level value is looked at
    assert [s for s in strings if missed(SCRUBBERS[name], [s])] == []


@pytest.mark.parametrize("name", sorted(SCRUBBERS))
def test_no_string_of_the_corpus_is_passed_over(name: str) -> None:
    strings: set[str] = set(BENIGN)
    for case in build_corpus():
        all_strings(case.event, strings)
    ordered = sorted(strings)
    assert len(ordered) > 600  # the corpus really was read
    assert missed(SCRUBBERS[name], ordered) == []


@pytest.mark.parametrize(
    ("strings", "secrets"),
    [
        # a key whose start ends the previous string, digits either side of the separator: no
        # secret in either string, and none made up from the two
        (["db pass", "word=hunter2-x"], []),
        # a key run that reads back into the previous string: the "=" decides which to scan
        (["abc", "password=hunter2-x", "token:abc123456"], ["hunter2-x", "abc123456"]),
        (["card 4111 1111", "1111 1111 ok"], []),
        (["naïve password=hunter2-x"], ["hunter2-x"]),  # non-ASCII: scanned whole
        (["to\u212aen=abc123456"], []),  # the Kelvin sign is no key character
        (["BA\u017fIC dXNlcjpwYXNzd29yZA=="], []),  # non-ASCII goes to the detectors as is
        (["x\x00password=hunter2-x", "token=abc123456"], ["hunter2-x", "abc123456"]),
        # what may sit between a key and its "=": up to 4 blanks, an escaped quote
        (
            ["password   \t= hunter2-x", '{\\"token\\": \\"abc123456\\"}'],
            ["hunter2-x", "abc123456"],
        ),
        (["4111 1111 1111 1111", "ip 10.1.2.3"], ["4111 1111 1111 1111", "10.1.2.3"]),
        (["visa 4222222222222 ok", "q=4111%201111%201111%201111"], ["4222222222222", "4111%20"]),
    ],
)
def test_edges_of_the_joint_search(strings: list[str], secrets: list[str]) -> None:
    for scrubber in SCRUBBERS.values():
        assert missed(scrubber, strings) == []
    out = SCRUBBERS["default"].scrub_event({"extra": {"parts": strings}})["extra"]["parts"]
    assert out == [SCRUBBERS["default"]._scan(s) for s in strings]
    assert [secret for secret in secrets if any(secret in s for s in out)] == []


@pytest.mark.parametrize("name", ["default", "default-pure"])
def test_first_look_flags_few_strings_of_a_typical_event(name: str) -> None:
    """Without this the first look could decay into "scan everything": still correct, but the
    cost the benchmark reports would come back unnoticed."""
    strings = sorted(all_strings(benchmark_events()["typical"], set()))
    suspects = SCRUBBERS[name]._suspects(strings)
    assert len(strings) > 300
    # the frame-local header repr with its bearer token must be among them
    assert any("authorization" in strings[i] for i in suspects)
    assert len(suspects) <= len(strings) // 20, [strings[i] for i in suspects]


def test_a_new_string_is_scrubbed_alike_wherever_it_sits() -> None:
    """Deferred (dict values, list items, top-level fields) and immediate (tuples, pairs, bytes)
    places share one result, and the walk writes it into copies, never into the input."""
    secret = "token=abc123456"
    event: dict[str, Any] = {
        "message": secret,
        "extra": {"a": secret, "b": [secret, (secret, 1)], "c": [["x-note", secret]]},
        "contexts": {"d": {"e": [{"f": secret}]}, "g": secret.encode()},
    }
    scrubber = Scrubber()
    out = scrubber.scrub_event(event)
    masked = "token=[Filtered]"
    assert out["message"] == masked
    assert out["extra"] == {"a": masked, "b": [masked, (masked, 1)], "c": [["x-note", masked]]}
    assert out["contexts"] == {"d": {"e": [{"f": masked}]}, "g": masked.encode()}
    assert event["extra"]["b"][0] == secret
    assert event["contexts"]["d"]["e"][0]["f"] == secret
    # remembered now: the second event takes the cached path and gets the same answer
    assert scrubber.scrub_event(event) == out


def test_full_caches_are_emptied_without_losing_a_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cache is cleared whole when full, possibly in the middle of an event."""
    from fastapi_sentry._scrubbing import scrubber as _scrubbing

    def event(tag: str) -> dict[str, Any]:
        return {
            "extra": {
                f"{tag}{i}": f"{tag} {i}: password={i}-hunter2, {tag}_auth_key: x{i}y"
                for i in range(40)
            },
            "contexts": {"c": [f"{tag} line {i} {tag}_token = abc{i}def" for i in range(40)]},
        }

    a, b = event("alpha"), event("beta")
    expected_a, expected_b = Scrubber().scrub_event(a), Scrubber().scrub_event(b)
    for secret in ("hunter2", "abc1def", "x1y"):
        assert secret not in str(expected_a)
        assert secret not in str(expected_b)
    monkeypatch.setattr(_scrubbing, "KEY_CACHE_SIZE", 3)
    monkeypatch.setattr(_scrubbing, "TEXT_CACHE_SIZE", 5)
    small = pure(Scrubber())  # the key-run cache belongs to the Python first look
    assert small.scrub_event(a) == expected_a
    remembered = (set(small._key_runs), set(small._cache))
    assert small.scrub_event(b) == expected_b
    # all of them were emptied while b was scrubbed
    assert not remembered[0] <= set(small._key_runs)
    assert not remembered[1] <= set(small._cache)
    assert len(small._kinds) <= 3
    assert small.scrub_event(a) == expected_a


def test_the_c_matcher_is_used_where_it_is_installed() -> None:
    """Without this a broken pattern list would silently send every install with the extra down
    the Python path (correct, but the extra would buy nothing)."""
    pytest.importorskip("hyperscan")
    for name in CONFIGS:
        assert SCRUBBERS[name]._c_matcher is not None, name


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strings=st.lists(TEXT, min_size=1, max_size=8), name=st.sampled_from(sorted(CONFIGS)))
def test_the_same_output_with_and_without_the_c_matcher(strings: list[str], name: str) -> None:
    event = {"extra": {"parts": strings, "one": strings[0]}, "message": strings[-1]}
    fast, slow = Scrubber(**CONFIGS[name]), pure(Scrubber(**CONFIGS[name]))
    assert fast.scrub_event(event) == slow.scrub_event(event)


def test_a_busy_c_matcher_hands_over_to_the_python_first_look() -> None:
    """Its scratch space serves one scan at a time: another thread meanwhile takes the Python
    path and still finds the secret."""
    pytest.importorskip("hyperscan")
    scrubber = Scrubber()
    assert scrubber._c_matcher is not None
    with scrubber._c_matcher._lock:
        out = scrubber.scrub_event({"extra": {"note": "password=hunter2-x"}})
    assert out["extra"]["note"] == "password=[Filtered]"
