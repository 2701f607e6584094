"""Any environment either starts Sentry (and `check` delivers) or stops with one line naming a
variable: never a traceback, never the DSN's key (issue 6, point 4)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from fastapi_sentry import ConfigError, load_settings
from fastapi_sentry._cli import main
from tests.support.receiver import Receiver
from tests.support.sdk import forget_sentry

KEY_ALPHABET = "0123456789abcdef"

#: Variable → values worth trying besides arbitrary text: valid ones and near misses.
VARIABLES: dict[str, list[str]] = {
    "SENTRY_ENABLED": ["true", "false", "1", "0", "yes", "maybe", ""],
    "SENTRY_ENVIRONMENT": ["production", "staging", "development", "", " "],
    "ENVIRONMENT": ["dev", "production", ""],
    "SENTRY_RELEASE": ["1.2.3", "", "abc123"],
    "APP_VERSION": ["2.0", ""],
    "SENTRY_DEBUG": ["true", "false", "0", "perhaps", ""],
    "DEBUG": ["false", "0", "1", "perhaps"],
    "SENTRY_ERROR_SAMPLE_RATE": ["1", "0.5", "0", "1.5", "-0.1", "nan", "inf", "half", ""],
    "SENTRY_TRACES_SAMPLE_RATE": ["0", "0.1", "1", "2", "-1", "1e-3", " 0.2 ", "x"],
    "SENTRY_PROFILES_SAMPLE_RATE": ["0", "1", "1.01", "lots"],
    "SENTRY_ENABLE_TRACING": ["true", "false", "sometimes"],
    "SENTRY_SEND_DEFAULT_PII": ["false", "true", "2"],
    "SENTRY_ENABLE_LOGS": ["false", "true", "on", "meh"],
    "SENTRY_MAX_BREADCRUMBS": ["0", "100", "1000", "1001", "-1", "1.5", "many"],
    "SENTRY_SHUTDOWN_TIMEOUT": ["0", "2", "60", "61", "soon"],
    "SENTRY_TRANSPORT_QUEUE_SIZE": ["1", "100", "0", "100001", "big"],
    "SENTRY_FAILED_REQUEST_STATUS_CODES": ["500,502", "[500, 503]", "99", "600", "[", "5xx", ""],
    "SENTRY_IGNORED_EXCEPTIONS": ["builtins.KeyError", "", "[1]", "not.a.Module"],
    "SENTRY_UNTRACED_PATHS": ["/health,/metrics", "health", "[", '["/a"]', ""],
    "SENTRY_SCRUB_EXTRA_PATTERNS": ["card-\\d+", "(", "[a-", ""],
    "SENTRY_SCRUB_EXTRA_KEYS": ["pin,cvv", ""],
    "SENTRY_REQUEST_ID_HEADER": ["X-Request-ID", "X Request", "", "Ünïcode"],
    "SENTRY_ENDPOINTS_PREFIX": ["", "/ops", "ops", "/ops/"],
    "SENTRY_MOUNT_ENDPOINTS": ["true", "nope"],
}

env_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30
)


#: Stands for the receiver's port, which is known only once the test runs.
RECEIVER = "127.0.0.1:<receiver-port>"
KEY = "f00d" * 6


def broken_dsns(key: str) -> st.SearchStrategy[str]:
    """DSNs that must be refused, each still carrying the key."""
    host = RECEIVER
    return st.one_of(
        st.just(""),
        st.sampled_from(
            [
                f"http://{key}@{host}/",
                f"http://{key}@{host}/project",
                f"ftp://{key}@{host}/1",
                f"http://{key}@127.0.0.1:99999/1",
                f"http://{key}@127.0.0.1:0/1",
                f"http://{key}@/1",
                f"{key}@{host}/1",
                f"http://{host}/1?key={key}",
                f"http://{key}@{host}/1\n",
                f" http://{key}:{key}@{host}/1 ",
            ]
        ),
        st.builds(lambda a, b: f"{a}{key}{b}", env_text, env_text),
    )


@st.composite
def environments(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    key = draw(st.text(alphabet=KEY_ALPHABET, min_size=24, max_size=32))
    env: dict[str, str] = {}
    # weighted towards a valid DSN, so that the other variables decide the outcome
    kind = draw(st.sampled_from(["valid"] * 6 + ["broken"] * 3 + ["unset"]))
    if kind == "valid":
        project = draw(st.integers(1, 10**6))
        env["SENTRY_DSN"] = f"http://{key}@{RECEIVER}/{project}"
    elif kind == "broken":
        env["SENTRY_DSN"] = draw(broken_dsns(key))
    names = draw(st.lists(st.sampled_from(sorted(VARIABLES)), max_size=3, unique=True))
    for name in names:
        listed = st.sampled_from(VARIABLES[name])
        env[name] = draw(st.one_of(listed, env_text) if draw(st.booleans()) else listed)
    return key, env


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    with mock.patch.dict(os.environ, env):
        try:
            yield
        finally:
            forget_sentry()


def expected_outcome(env: dict[str, str]) -> int:
    try:
        return 0 if load_settings().is_active else 2
    except ConfigError:
        return 2


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=environments())
# Always tried, whatever the random draw: a fallback name (DEBUG) must be named as set.
@example(case=(KEY, {"SENTRY_DSN": f"http://{KEY}@{RECEIVER}/1", "DEBUG": "perhaps"}))
@example(case=(KEY, {"SENTRY_DSN": f"http://{KEY}@{RECEIVER}/1", "DEBUG": ""}))
@example(case=(KEY, {"SENTRY_DSN": f"http://{KEY}@{RECEIVER}/1", "SENTRY_DEBUG": "perhaps"}))
@example(case=(KEY, {"SENTRY_DSN": f"http://{KEY}@{RECEIVER}/1"}))
def test_check_on_any_environment_is_delivered_or_one_clear_line(
    receiver: Receiver, case: tuple[str, dict[str, str]]
) -> None:
    key = case[0]
    env = {
        name: value.replace(RECEIVER, f"127.0.0.1:{receiver.port}")
        for name, value in case[1].items()
    }
    # a value may echo the key by chance; only the DSN is secret
    assume(not any(key in value for name, value in env.items() if name != "SENTRY_DSN"))
    out, err = io.StringIO(), io.StringIO()
    with environment(env):
        expected = expected_outcome(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["check", "--timeout", "10"])
    stdout, stderr = out.getvalue(), err.getvalue()

    event({0: "delivered", 2: "stopped with one line"}.get(code, f"exit {code}"))
    assert code == expected, (env, stdout, stderr)
    assert "Traceback" not in stdout + stderr
    assert key not in stdout + stderr, "the DSN's key was printed"
    if code == 2:
        assert stdout == ""
        lines = stderr.splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("fastapi-sentry: ")
        named = set(re.findall(r"\b[A-Z][A-Z_]*[A-Z]\b", lines[0]))
        assert named & (set(env) | {"SENTRY_DSN"}), (lines[0], env)
    else:
        event_id = re.search(r"^Event ID: ([0-9a-f]{32})$", stdout, re.MULTILINE)
        assert event_id, stdout
        sent = {event.get("event_id") for event in receiver.envelope_items("event")}
        assert event_id[1] in sent


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"SENTRY_DSN": "http://{key}@127.0.0.1:99999/1"},
            "fastapi-sentry: Invalid Sentry settings: SENTRY_DSN is not a valid DSN: it cannot "
            "be read as a URL (check the port).",
        ),
        (
            {"SENTRY_DSN": "http://{key}@127.0.0.1:9/1", "SENTRY_ERROR_SAMPLE_RATE": "half"},
            "fastapi-sentry: Invalid Sentry settings: SENTRY_ERROR_SAMPLE_RATE must be a number, "
            "got 'half'",
        ),
    ],
)
def test_bad_settings_in_a_real_process_print_one_line(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    key = "0123456789abcdef0123456789abcdef"
    result = subprocess.run(
        [sys.executable, "-m", "fastapi_sentry", "check"],
        cwd=tmp_path,
        env={**os.environ, **{k: v.format(key=key) for k, v in env.items()}},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[0].startswith(expected)
    assert len(result.stderr.splitlines()) == 1
    assert key not in result.stderr
