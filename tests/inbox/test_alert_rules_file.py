"""A bad rules file stops the inbox before it listens, with one line naming the rule, the field and
the fix; the README's example (the seeds' own rules) is a valid file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastapi_sentry.inbox import InboxServer
from fastapi_sentry.inbox._alerts import AlertRulesError, parse_duration, parse_rules
from fastapi_sentry.inbox._alerts._rules import KINDS

README = Path(__file__).resolve().parents[2] / "README.md"
HOOK = 'notify = ["https://hooks.example.com/services/T0/B0/x"]'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f'[[rule]]\nname = "errors-per-hour"\nwhen = "event_count"\ncount = 10\n'
            f'window = "1 hour"\n{HOOK}',
            "alerts.toml: rule 'errors-per-hour': window '1 hour' is not a duration like "
            "'1h' or '10m'",
        ),
        (
            f'[[rule]]\nname = "x"\nwhen = "errors"\n{HOOK}',
            "alerts.toml: rule 'x': when 'errors' is not one of new_issue, regression, "
            "event_count, users_affected, p95, cron_missed, cron_failed",
        ),
        (
            f'[[rule]]\nname = "slow"\nwhen = "p95"\nwindow = "5m"\n{HOOK}',
            "alerts.toml: rule 'slow': threshold_ms is missing; a p95 rule needs "
            "threshold_ms and window",
        ),
        (
            f'[[rule]]\nname = "slow"\nwhen = "p95"\nwindow = "5m"\nthreshold = 2000\n{HOOK}',
            "alerts.toml: rule 'slow': threshold is not a field of a p95 rule",
        ),
        (
            '[[rule]]\nname = "page"\nwhen = "new_issue"\nnotify = ["mailto:oncall@example.com"]',
            "alerts.toml: rule 'page': notify sends e-mail but the file has no [smtp] table",
        ),
        (
            '[[rule]]\nname = "page"\nwhen = "new_issue"\nnotify = ["slack://team"]',
            "alerts.toml: rule 'page': notify entry 'slack://team' is neither an http(s):// URL",
        ),
        (
            f'[[rule]]\nname = "n"\nwhen = "event_count"\ncount = -1\nwindow = "1m"\n{HOOK}',
            "alerts.toml: rule 'n': count -1 must be a whole number of at least 0",
        ),
        (
            f'[[rule]]\nname = "a"\nwhen = "new_issue"\n{HOOK}\n'
            f'[[rule]]\nname = "a"\nwhen = "regression"\n{HOOK}',
            "alerts.toml: rule 'a': name is used twice",
        ),
        (
            f'[[rule]]\nwhen = "new_issue"\n{HOOK}',
            "alerts.toml: rule number 1: name is missing",
        ),
        ("[[rule]\n", "alerts.toml: is not valid TOML"),
        (
            f'[[rule]]\nname = "page"\nwhen = "new_issue"\nseverity = "urgent"\n{HOOK}',
            "alerts.toml: rule 'page': severity 'urgent' is not one of info, warning, critical",
        ),
        (
            f'[smtp]\nhost = "smtp.example.com"\npassword = "hunter2"\n'
            f'[[rule]]\nname = "a"\nwhen = "new_issue"\n{HOOK}',
            "alerts.toml: [smtp]: password is not read from the file; use password_env",
        ),
    ],
)
def test_each_mistake_is_one_sentence_naming_the_rule_and_the_field(
    text: str, message: str
) -> None:
    with pytest.raises(AlertRulesError) as info:
        parse_rules(text)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
    assert "hunter2" not in str(info.value)


def test_severity_is_read_on_every_kind_and_defaults_to_warning() -> None:
    tables = {
        "new_issue": "",
        "regression": "",
        "event_count": 'count = 1\nwindow = "1h"\n',
        "users_affected": 'count = 1\nwindow = "1h"\n',
        "p95": 'threshold_ms = 100\nwindow = "5m"\n',
        "cron_missed": "",
        "cron_failed": "",
    }
    assert set(tables) == set(KINDS)
    text = "".join(
        f'[[rule]]\nname = "{kind}"\nwhen = "{kind}"\nseverity = "critical"\n{extra}{HOOK}\n'
        for kind, extra in tables.items()
    )
    assert {rule.severity for rule in parse_rules(text).rules} == {"critical"}
    (rule,) = parse_rules(f'[[rule]]\nname = "a"\nwhen = "new_issue"\n{HOOK}').rules
    assert rule.severity == "warning"


def test_durations() -> None:
    assert parse_duration("1h") == 3600
    assert parse_duration("10m") == 600
    assert parse_duration("500ms") == 0.5
    assert parse_duration("7d") == 7 * 86400
    for bad in ("1 hour", "0m", "1.5h", "h", 60):
        assert parse_duration(bad) is None


def test_the_cli_refuses_a_bad_file_with_one_line_and_does_not_listen(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.toml"
    rules.write_text(
        f'[[rule]]\nname = "errors-per-hour"\nwhen = "event_count"\ncount = 10\n'
        f'window = "1 hour"\n{HOOK}\n'
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastapi_sentry",
            "inbox",
            "--port",
            "0",
            "--alerts",
            str(rules),
            "--db",
            str(tmp_path / "inbox.db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "fastapi-sentry: alerts.toml: rule 'errors-per-hour': window '1 hour' is not a "
        "duration like '1h' or '10m'\n"
    )
    assert not (tmp_path / "inbox.db").exists()


def test_the_environment_variable_names_the_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "x"\nwhen = "nope"\nnotify = ["https://h.example/x"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "fastapi_sentry", "inbox", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_env(), "FASTAPI_SENTRY_INBOX_ALERTS": str(rules)},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("fastapi-sentry: rules.toml: rule 'x': when 'nope'")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(AlertRulesError, match=r"^nothere.toml: cannot be read"):
        InboxServer(tmp_path / "inbox.db", alerts=tmp_path / "nothere.toml")


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("FASTAPI_SENTRY_")}


def test_the_readme_example_is_a_valid_rules_file_covering_every_kind() -> None:
    match = re.search(r"```toml\n(.*?)```", README.read_text(), re.S)
    assert match, "README has no ```toml rules example"
    rules = parse_rules(match.group(1), "README.md")
    kinds = {rule.kind for rule in rules.rules}
    assert kinds == set(KINDS)
    assert rules.smtp is not None
