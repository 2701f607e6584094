"""Secrets that are written, not keyed: schemes in any case, a secret named in prose, Stripe keys.

Each of these once went out in clear: "BeaRer <token>" because a cheap test in front of the
scheme detector was case-sensitive while the detector was not; "password is hunter2" and
"rejected token pk_live_..." because only key=value shapes were looked for. The property test at
the end holds the cheap tests (the first look and the per-detector pre-checks) to the detectors
themselves, run on every string without any pre-check.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi_sentry._scrubbing import Scrubber
from fastapi_sentry._scrubbing.detectors import looks_like_credential
from tests.scrubbing.test_first_look import FRAGMENTS, SCRUBBERS

F = "[Filtered]"


def text(value: str) -> str:
    result = Scrubber().scrub_value(value)
    assert isinstance(result, str)
    return result


@pytest.mark.parametrize(
    ("raw", "secret"),
    [
        ("Authorization: BeaRer abc123def456ghi789", "abc123def456ghi789"),
        ("upstream said bEARER abc123def456ghi789 is invalid", "abc123def456ghi789"),
        ("header bAsIc dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("sent CoOkIe: sessionid=s3cr3t-value; theme=dark", "s3cr3t-value"),
        ("rejected token pk_live_51HxYzAbCdEf0123456789", "pk_live_51HxYzAbCdEf0123456789"),
        ("password is hunter2", "hunter2"),
        ("the Password was Tr0ub4dor&3.", "Tr0ub4dor&3"),
        ("login failed: passwd 'hunter2x'", "hunter2x"),
        ("refusing token 8f3a9c12d4e5b6a7 for user 7", "8f3a9c12d4e5b6a7"),
        ("api key ZXF9kQ2mW7pL4sT1 was revoked", "ZXF9kQ2mW7pL4sT1"),
        ("the API_KEY: q8w7e6r5t4y3", "q8w7e6r5t4y3"),
        ("client secret of aZ_93kL-pq7 expired", "aZ_93kL-pq7"),
        ("pin code accepted, passcode 493817", "493817"),
        ("TOKEN abcdefghijklmnopqrstuvwxyzab", "abcdefghijklmnopqrstuvwxyzab"),
        ("repr: 'x\\ntoken s3cr3tvalue'", "s3cr3tvalue"),
        ("keys pk_test_51HxYzAbCdEf01, rk_live_51HxYzAbCdEf01", "pk_test_51HxYzAbCdEf01"),
        ("keys pk_test_51HxYzAbCdEf01, rk_live_51HxYzAbCdEf01", "rk_live_51HxYzAbCdEf01"),
        ("restricted rk_test_51HxYzAbCdEf01 used", "rk_test_51HxYzAbCdEf01"),
    ],
)
def test_written_secrets_are_masked(raw: str, secret: str) -> None:
    out = text(raw)
    assert secret not in out
    assert F in out
    assert text(out) == out  # idempotent


@pytest.mark.parametrize(
    "raw",
    [
        "the password is required",
        "password is incorrect",
        "Password must be at least 12 characters",
        "token expired",
        "token expires in 3600 seconds",
        "invalid token",
        "the secret is out",
        "API key missing",
        "api key not configured for tenant",
        "password reset requested",
        "a token of appreciation",
        "the password was re-entered",
        "token is None",
        "secret sauce",
        "password is NULL",
        "token_type=bearer",
        "bearer authentication failed",
        "tokens per minute exceeded",
        "primary key 118734 not found",
    ],
)
def test_prose_about_secrets_survives(raw: str) -> None:
    assert text(raw) == raw


@pytest.mark.parametrize(
    ("value", "credential"),
    [
        ("hunter2", True), ("Tr0ub4dor&3", True), ("p@ssw0rd", True), ("xYzAbCdE", True),
        ("493817", True), ("abcdefghijklmnopqrstuvwxyzab", True), ("required", False),
        ("Invalid", False), ("NULL", False), ("re-entered", False), ("3600", False),
        ("hunter2.", True), ("short", False),
    ],
)  # fmt: skip
def test_what_looks_like_a_credential(value: str, credential: bool) -> None:
    assert looks_like_credential(value) is credential


# --- the cheap tests never skip a detector that would have matched --------------------------------

WRITTEN = [
    "bearer ", "basic ", "digest ", "cookie: ", "token ", "password is ", "passwd ", "pwd ",
    "secret ", "secret key ", "api key ", "api_key ", "access-key ", "passphrase ", "tokens\t",
    "pk_live_", "pk_test_", "rk_live_", "rk_test_", "sk_live_", "hunter2", "s3cr3tvalue",
    "abcdef123456", "dXNlcjpwYXNzd29yZA==", "Tr0ub4dor&3", "required", "0123456789abcdef",
]  # fmt: skip


def _random_case(draw: st.DrawFn, piece: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(piece), max_size=len(piece)))
    return "".join(c.swapcase() if flip else c for c, flip in zip(piece, flips, strict=True))


@st.composite
def mixed_case_text(draw: st.DrawFn) -> str:
    pieces = draw(
        st.lists(
            st.one_of(
                st.sampled_from(WRITTEN + FRAGMENTS),
                st.text(string.ascii_letters + string.digits, min_size=1, max_size=24),
            ),
            max_size=10,
        )
    )
    return "".join(_random_case(draw, piece) for piece in pieces)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strings=st.lists(mixed_case_text(), min_size=1, max_size=6),
    name=st.sampled_from(sorted(SCRUBBERS)),
)
def test_the_fast_path_finds_what_every_detector_finds(strings: list[str], name: str) -> None:
    """What the scrubber does to new strings (first look, then each detector behind its cheap
    pre-check) equals running every detector on every string, in any letter case."""
    scrubber = SCRUBBERS[name]
    scrubber.clear_cache()
    # under benign keys: a two-item list would be read as a (header, value) pair
    fast = scrubber.scrub_value({f"note{i}": s for i, s in enumerate(strings)})
    assert fast == {f"note{i}": scrubber._scan(s, thorough=True) for i, s in enumerate(strings)}
