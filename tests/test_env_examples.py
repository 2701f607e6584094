"""The `.env` examples in examples/env/ load as they are and name only real settings.

pydantic-settings ignores unknown names (`extra="ignore"`), so a typo such as
`SENTRY_TRACE_SAMPLE_RATE` would load without complaint and silently do nothing; these tests are
what catches it. They also keep a real-looking DSN key out of files meant to be copied around.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from pydantic import AliasChoices

from fastapi_sentry import SentrySettings, load_settings

ENV_DIR = Path(__file__).resolve().parent.parent / "examples" / "env"
ENVIRONMENTS = ("development", "staging", "production")

#: `NAME=value`, also commented out (`# NAME=value`): a commented line is copied and uncommented.
_ASSIGNMENT = re.compile(r"^\s*#?\s*([A-Z][A-Z0-9_]*)\s*=(.*)$")
#: The user part of a URL (`https://<this>@host`): a DSN's key.
_URL_USER = re.compile(r"://([^@/\s]*)@")
#: Sentry keys are 32 hex digits; 16 or more in a row look like one (or like any other secret).
_HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")


def variable_names() -> set[str]:
    """Every environment variable SentrySettings reads, fallbacks (ENVIRONMENT, ...) included."""
    names: set[str] = set()
    for name, field in SentrySettings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices if str(choice).isupper())
        else:
            names.add(f"SENTRY_{name.upper()}")
    return names


def assignments(path: Path) -> list[tuple[int, str, str]]:
    found: list[tuple[int, str, str]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _ASSIGNMENT.match(line)
        if match:
            found.append((number, match.group(1), match.group(2).strip()))
    return found


def test_there_is_one_example_per_environment() -> None:
    assert sorted(p.stem for p in ENV_DIR.glob("*.env")) == sorted(ENVIRONMENTS)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_name_is_a_real_setting(environment: str) -> None:
    path = ENV_DIR / f"{environment}.env"
    known = variable_names()
    found = assignments(path)
    assert found, f"{path} assigns no variable"
    for number, name, _ in found:
        assert name in known, f"{path.name}:{number}: {name} is not a fastapi-sentry setting"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_loads_with_load_settings_as_the_service_would(environment: str) -> None:
    """Copied to `.env` in the working directory (the autouse fixture's empty tmp dir, with no
    SENTRY_* variables set), each file loads without error and its values are the ones in effect."""
    shutil.copy(ENV_DIR / f"{environment}.env", Path.cwd() / ".env")
    settings = load_settings()
    assert settings.environment == environment
    assert not settings.is_active  # the DSN is left empty: it comes from a secret store
    for _, name, value in assignments(ENV_DIR / f"{environment}.env"):
        if name == "SENTRY_TRACES_SAMPLE_RATE" and value:
            assert settings.effective_traces_sample_rate == float(value)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_loads_with_a_dsn_from_the_environment(
    environment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployed case: the DSN comes from the environment, everything else from the file."""
    shutil.copy(ENV_DIR / f"{environment}.env", Path.cwd() / ".env")
    monkeypatch.setenv("SENTRY_DSN", "http://public@127.0.0.1:9/1")
    settings = load_settings()
    assert settings.is_active
    assert settings.environment == environment


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_no_real_looking_dsn_key(environment: str) -> None:
    text = (ENV_DIR / f"{environment}.env").read_text()
    for user in _URL_USER.findall(text):
        assert user == "<key>", f"{environment}.env holds a DSN with a key; write <key> instead"
    assert not _HEX_RUN.search(text), f"{environment}.env holds a long hex string (a key?)"
