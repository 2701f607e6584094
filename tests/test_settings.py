"""Settings: every variable the seeds use, their fallbacks, and one-line errors without secrets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from fastapi_sentry import ConfigError, SentrySettings, load_settings
from fastapi_sentry._settings import dsn_summary, git_revision

SECRET_KEY = "f00dfacecafe4bada55deadbeef0001"
GOOD_DSN = f"https://{SECRET_KEY}@o123.ingest.example.com/4567"


def test_defaults_leave_sentry_off() -> None:
    settings = load_settings()
    assert settings.dsn is None
    assert not settings.is_active
    assert settings.environment == "production"
    assert settings.effective_traces_sample_rate == 0.1
    assert settings.effective_profiles_sample_rate == 0.1
    assert settings.send_default_pii is False
    assert settings.max_breadcrumbs == 100
    assert settings.shutdown_timeout == 2.0
    assert settings.failed_request_status_codes == list(range(500, 600))


def test_blank_dsn_means_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_DSN", "  ")
    assert not load_settings().is_active


def test_enabled_false_switches_off_with_a_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_DSN", GOOD_DSN)
    assert load_settings().is_active
    monkeypatch.setenv("SENTRY_ENABLED", "false")
    assert not load_settings().is_active


@pytest.mark.parametrize(
    ("environment", "rate"),
    [("development", 1.0), ("staging", 0.5), ("production", 0.1), ("qa-7", 0.1)],
)
def test_unset_rates_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch, environment: str, rate: float
) -> None:
    monkeypatch.setenv("SENTRY_ENVIRONMENT", environment)
    settings = load_settings()
    assert settings.effective_traces_sample_rate == rate
    assert settings.effective_profiles_sample_rate == rate


def test_explicit_rate_wins_and_tracing_switch_zeroes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_ENVIRONMENT", "development")
    monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "0.25")
    assert load_settings().effective_traces_sample_rate == 0.25
    monkeypatch.setenv("SENTRY_ENABLE_TRACING", "false")
    settings = load_settings()
    assert settings.effective_traces_sample_rate == 0.0
    assert settings.effective_profiles_sample_rate == 0.0


def test_environment_falls_back_to_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "staging")
    assert load_settings().environment == "staging"
    monkeypatch.setenv("SENTRY_ENVIRONMENT", "development")
    assert load_settings().environment == "development"


def test_release_fallback_chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    git_revision.cache_clear()
    assert load_settings().effective_release is None  # tmp_path is not a checkout
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        cwd=tmp_path,
        check=True,
    )
    git_revision.cache_clear()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    assert load_settings().effective_release == head
    monkeypatch.setenv("VERSION", "2.0.0")
    assert load_settings().effective_release == "2.0.0"
    monkeypatch.setenv("APP_VERSION", "2.1.0")
    assert load_settings().effective_release == "2.1.0"
    monkeypatch.setenv("SENTRY_RELEASE", "backend@3.0.0")
    assert load_settings().effective_release == "backend@3.0.0"
    git_revision.cache_clear()


def test_server_name_and_debug_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "api-7")
    monkeypatch.setenv("DEBUG", "true")
    settings = load_settings()
    assert settings.server_name == "api-7"
    assert settings.debug is True
    assert settings.debug_endpoint_enabled


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"SENTRY_DSN={GOOD_DSN}\nSENTRY_ENVIRONMENT=staging\nSENTRY_MAX_BREADCRUMBS=30\n"
    )
    settings = load_settings()
    assert settings.is_active
    assert settings.environment == "staging"
    assert settings.max_breadcrumbs == 30


@pytest.mark.parametrize(
    ("value", "codes"),
    [
        ("401,500-599", [401, *range(500, 600)]),
        (" 500 - 599 ", list(range(500, 600))),
        ("422, 500-502,429", [422, 429, 500, 501, 502]),
        ('["401", "500-501"]', [401, 500, 501]),
    ],
)
def test_status_codes_accept_ranges_and_lists(
    monkeypatch: pytest.MonkeyPatch, value: str, codes: list[int]
) -> None:
    monkeypatch.setenv("SENTRY_FAILED_REQUEST_STATUS_CODES", value)
    assert load_settings().failed_request_status_codes == codes


def test_lists_accept_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_UNTRACED_PATHS", "/health, /internal")
    monkeypatch.setenv("SENTRY_FAILED_REQUEST_STATUS_CODES", "500,502,429")
    monkeypatch.setenv("SENTRY_IGNORED_EXCEPTIONS", "app.errors.Expected")
    settings = load_settings()
    assert settings.untraced_paths == ["/health", "/internal"]
    assert settings.failed_request_status_codes == [429, 500, 502]
    assert settings.ignored_exceptions == ["app.errors.Expected"]


def test_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_ENVIRONMENT", "staging")
    assert load_settings(environment="development").environment == "development"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "SENTRY_TRACES_SAMPLE_RATE",
            "1.5",
            "Invalid Sentry settings: SENTRY_TRACES_SAMPLE_RATE must be between 0.0 and 1.0, "
            "got '1.5'",
        ),
        (
            "SENTRY_ERROR_SAMPLE_RATE",
            "lots",
            "Invalid Sentry settings: SENTRY_ERROR_SAMPLE_RATE must be a number, got 'lots'",
        ),
        (
            "SENTRY_MAX_BREADCRUMBS",
            "ten",
            "Invalid Sentry settings: SENTRY_MAX_BREADCRUMBS must be a whole number, got 'ten'",
        ),
        (
            "SENTRY_SEND_DEFAULT_PII",
            "maybe",
            "Invalid Sentry settings: SENTRY_SEND_DEFAULT_PII must be true or false, got 'maybe'",
        ),
        (
            "SENTRY_FAILED_REQUEST_STATUS_CODES",
            "500,700",
            "Invalid Sentry settings: SENTRY_FAILED_REQUEST_STATUS_CODES holds 700, which is "
            "not an HTTP status code (100-599)",
        ),
        (
            "SENTRY_FAILED_REQUEST_STATUS_CODES",
            "500-600",
            "Invalid Sentry settings: SENTRY_FAILED_REQUEST_STATUS_CODES holds 600, which is "
            "not an HTTP status code (100-599)",
        ),
        (
            "SENTRY_FAILED_REQUEST_STATUS_CODES",
            "401,5xx",
            "Invalid Sentry settings: SENTRY_FAILED_REQUEST_STATUS_CODES holds '5xx', which is "
            "not a status code or a range; write codes and ranges separated by commas, such as "
            "401,500-599",
        ),
        (
            "SENTRY_FAILED_REQUEST_STATUS_CODES",
            " 599 - 500 ",
            "Invalid Sentry settings: SENTRY_FAILED_REQUEST_STATUS_CODES holds '599 - 500', a "
            "range that ends before it starts; write 500-599",
        ),
        (
            "SENTRY_FAILED_REQUEST_STATUS_CODES",
            "500-,\uff15\uff10\uff10",  # a dangling dash; full-width digits
            "Invalid Sentry settings: SENTRY_FAILED_REQUEST_STATUS_CODES holds '500-', which is "
            "not a status code or a range; write codes and ranges separated by commas, such as "
            "401,500-599",
        ),
        (
            "SENTRY_SCRUB_EXTRA_PATTERNS",
            "(unclosed",
            "Invalid Sentry settings: SENTRY_SCRUB_EXTRA_PATTERNS holds '(unclosed', not a valid "
            "regular expression (missing ), unterminated subpattern at position 0)",
        ),
        (
            "SENTRY_BREADCRUMB_LEVEL",
            "verbose",
            "Invalid Sentry settings: SENTRY_BREADCRUMB_LEVEL is 'verbose'; use DEBUG, INFO, "
            "WARNING or ERROR",
        ),
        (
            "SENTRY_IN_APP_EXCLUDE",
            "shop/vendored",
            "Invalid Sentry settings: SENTRY_IN_APP_EXCLUDE holds 'shop/vendored', which is not a "
            "module or logger name; list dotted names separated by commas, e.g. "
            "myservice,myservice.jobs",
        ),
    ],
)
def test_bad_values_give_one_exact_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        (f"ftp://{SECRET_KEY}@host/1", "it must start with https:// or http://"),
        (f"https://{SECRET_KEY}@host/project", "it must end with a numeric project id"),
        ("https://host.example.com/1", "it has no public key before '@'"),
        (f"https://{SECRET_KEY}@:80/1", "it has no host"),
        (f"https://{SECRET_KEY}@host:99999/1", "it cannot be read as a URL (check the port)"),
    ],
)
def test_malformed_dsn_is_named_but_never_shown(
    monkeypatch: pytest.MonkeyPatch, dsn: str, problem: str
) -> None:
    monkeypatch.setenv("SENTRY_DSN", dsn)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = str(caught.value)
    assert text.startswith(f"Invalid Sentry settings: SENTRY_DSN is not a valid DSN: {problem}.")
    assert SECRET_KEY not in text
    assert dsn not in text


def test_several_bad_values_are_all_named_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "-1")
    monkeypatch.setenv("SENTRY_DEBUG", "perhaps")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = str(caught.value)
    assert "SENTRY_TRACES_SAMPLE_RATE must be between" in text
    assert "SENTRY_DEBUG must be true or false" in text
    assert "\n" not in text


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'trace_rate'"):
        load_settings(trace_rate=0.5)


def test_repr_and_dump_hide_the_dsn_key() -> None:
    settings = SentrySettings(dsn=SecretStr(GOOD_DSN))
    assert SECRET_KEY not in repr(settings)
    assert SECRET_KEY not in str(settings.model_dump())
    assert dsn_summary(settings.dsn_value) == {
        "host": "o123.ingest.example.com",
        "project_id": "4567",
    }


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("DEBUG", "Invalid Sentry settings: DEBUG must be true or false, got 'perhaps'"),
        (
            "SENTRY_DEBUG",
            "Invalid Sentry settings: SENTRY_DEBUG must be true or false, got 'perhaps'",
        ),
    ],
)
def test_error_names_the_variable_actually_set(
    monkeypatch: pytest.MonkeyPatch, variable: str, expected: str
) -> None:
    monkeypatch.setenv(variable, "perhaps")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == expected


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "")
    monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "")
    monkeypatch.setenv("ENVIRONMENT", "staging")
    monkeypatch.setenv("SENTRY_ENVIRONMENT", "")
    settings = load_settings()
    assert settings.debug is False
    assert settings.environment == "staging"
    assert settings.effective_traces_sample_rate == 0.5
