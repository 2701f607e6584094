"""The README stays true: its configuration table is the settings model, its commands are CI's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pydantic import AliasChoices

import fastapi_sentry
from fastapi_sentry import SentrySettings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _default(name: str) -> str:
    field = SentrySettings.model_fields[name]
    value = field.get_default(call_default_factory=True)
    if name == "failed_request_status_codes":
        return "500-599"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value) if value else "empty"
    if value == "":
        return "empty"
    return str(value)


def _variables(name: str) -> str:
    field = SentrySettings.model_fields[name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        names = [str(choice) for choice in alias.choices if str(choice).isupper()]
        return " / ".join(f"`{n}`" for n in names)
    return f"`SENTRY_{name.upper()}`"


def render_config_table() -> str:
    lines = ["| Variable | Default | What it does |", "|---|---|---|"]
    for name, field in SentrySettings.model_fields.items():
        lines.append(f"| {_variables(name)} | `{_default(name)}` | {field.description} |")
    return "\n".join(lines)


def test_configuration_table_matches_the_settings_model() -> None:
    text = README.read_text()
    assert render_config_table() in text, (
        "README's configuration table is out of date; regenerate it with "
        "`python -c 'from tests.test_readme import render_config_table as r; print(r())'`"
    )


def test_every_setting_is_documented() -> None:
    for name, field in SentrySettings.model_fields.items():
        assert field.description, f"SentrySettings.{name} has no description"


def test_first_screen_has_the_two_commands_and_ci_runs_the_test_one() -> None:
    first_screen = "\n".join(README.read_text().splitlines()[:40])
    assert "make demo" in first_screen
    assert "make test" in first_screen
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "make test"


def test_quick_start_runs_as_written() -> None:
    """Four lines, imports included, that run in a fresh interpreter and leave Sentry off."""
    match = re.search(r"## Quick start\n+```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README has no Quick start code block"
    code = [line for line in match.group(1).splitlines() if line.strip()]
    assert len(code) == 4
    assert "fastapi_sentry.install(app)" in match.group(1)
    check = "\nimport sys; assert 'sentry_sdk' not in sys.modules; print(type(app).__name__)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    done = subprocess.run(
        [sys.executable, "-c", match.group(1) + check],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "FastAPI"
    shown = re.search(
        r"it prints one line and nothing else happens:\n+```\n(.*?)\n```", README.read_text()
    )
    assert shown, "README does not show what the quick start prints"
    assert done.stderr.strip() == shown.group(1)


def test_public_api_is_sorted_and_deliberate() -> None:
    assert fastapi_sentry.__all__ == sorted(fastapi_sentry.__all__)
    assert set(fastapi_sentry.__all__) == {
        "ConfigError",
        "FastApiSentryError",
        "MissingExtraError",
        "RequestIdLogFilter",
        "SentryDebugError",
        "SentrySettings",
        "UserResolver",
        "__version__",
        "add_health_check",
        "capture_exception",
        "capture_message",
        "get_request_id",
        "install",
        "install_celery",
        "load_settings",
        "operation",
        "scrub_event",
        "trace",
        "track_business_event",
        "track_external_api_error",
        "track_slow_operation",
        "user_from_auth_middleware",
        "user_from_jwt_claims",
        "user_from_state",
    }
    for name in fastapi_sentry.__all__:
        assert getattr(fastapi_sentry, name) is not None


def test_every_sentry_variable_the_readme_names_is_a_setting() -> None:
    """A misspelt variable in the docs would be copied into deployments and silently ignored."""
    from tests.test_env_examples import variable_names

    known = variable_names()
    named = set(re.findall(r"\b(SENTRY_[A-Z][A-Z0-9_]*[A-Z0-9])\b", README.read_text()))
    assert sorted(named - known) == []


def test_troubleshooting_start_up_lines_are_the_ones_logged() -> None:
    """Users grep their logs for these lines; they must be what `install()` logs."""
    setup = (ROOT / "src" / "fastapi_sentry" / "_setup.py").read_text()
    formats = re.findall(r'"(Sentry (?:is on|error tracking is off): [^"]*)"', setup)
    reasons = re.findall(r'return "(SENTRY_[A-Z_]+ is [^"]+)"', setup)
    assert formats
    assert reasons
    section = README.read_text().split("## Troubleshooting", 1)[1]
    block = re.search(r"```\n(.*?)\s*```", section, re.S)
    assert block, "Troubleshooting has no block of start-up lines"
    patterns = [re.escape(f).replace("%s", ".+") for f in formats]
    for line in (raw.strip() for raw in block.group(1).splitlines()):
        matched = [p for p in patterns if re.fullmatch(p, line)]
        assert matched, f"README quotes a start-up line install() never logs: {line!r}"
        if "is off" in line:
            assert line.split(": ", 1)[1] in reasons


def test_metric_names_in_the_readme_are_exported() -> None:
    source = (ROOT / "src" / "fastapi_sentry" / "_metrics.py").read_text()
    gauges = set(re.findall(r'GaugeMetricFamily\(\s*"(\w+)"', source))
    counters = {f"{n}_total" for n in re.findall(r'CounterMetricFamily\(\s*"(\w+)"', source)}
    assert gauges
    assert counters
    named = set(re.findall(r"\b(fastapi_sentry_[a-z_]+)\b", README.read_text()))
    assert sorted(named - gauges - counters) == []
