"""The alert rules file: TOML ``[[rule]]`` tables, validated completely before the inbox starts.

Every mistake is one sentence naming the file, the rule and the field, with the fix, because the
file is read at start-up and a typo must not become a rule that silently never fires.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):  # tomllib is in the standard library from 3.11
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

KINDS = (
    "new_issue",
    "regression",
    "event_count",
    "users_affected",
    "p95",
    "cron_missed",
    "cron_failed",
)
LEVELS = ("debug", "info", "warning", "error", "fatal")
#: How urgent a rule's notification is; every kind accepts it, so on-call can route by it.
SEVERITIES = ("info", "warning", "critical")

_COMMON = {"name", "when", "notify", "project", "environment", "severity"}
#: The fields each kind accepts besides the common ones, and which of them it requires.
_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "new_issue": ({"level"}, set()),
    "regression": ({"level"}, set()),
    "event_count": ({"count", "window", "level", "per_issue"}, {"count", "window"}),
    "users_affected": ({"count", "window", "level"}, {"count", "window"}),
    "p95": ({"transaction", "threshold_ms", "window"}, {"threshold_ms", "window"}),
    "cron_missed": ({"monitor"}, set()),
    "cron_failed": ({"monitor"}, set()),
}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+")


class AlertRulesError(ValueError):
    """The rules file cannot be used; the message is one line naming the rule and the field."""


@dataclass(frozen=True)
class Rule:
    """One alert rule; fields a kind does not use keep their defaults."""

    name: str
    kind: str
    notify: tuple[str, ...]
    project: str | None = None
    environment: str | None = None
    level: str | None = None
    count: int = 0
    window: float = 0.0
    per_issue: bool = False
    transaction: str = "*"
    threshold_ms: float = 0.0
    monitor: str = "*"
    severity: str = "warning"


@dataclass(frozen=True)
class Smtp:
    """Where ``mailto:`` targets are sent from; the password is read from an environment
    variable so the rules file can be committed."""

    host: str
    port: int = 25
    sender: str = "fastapi-sentry-inbox@localhost"
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


@dataclass(frozen=True)
class Delivery:
    """How hard a notification is pushed: attempts per target, the first back-off, the timeout."""

    attempts: int = 5
    backoff: float = 2.0
    timeout: float = 10.0


@dataclass(frozen=True)
class AlertRules:
    """A validated rules file."""

    rules: tuple[Rule, ...]
    smtp: Smtp | None = None
    delivery: Delivery = field(default_factory=Delivery)
    inbox_url: str | None = None
    source: str = "alerts.toml"


def parse_duration(value: object) -> float | None:
    """``"90s"``, ``"10m"``, ``"1h"``, ``"7d"``, ``"500ms"`` → seconds; None when not one."""
    if not isinstance(value, str):
        return None
    match = _DURATION.fullmatch(value.strip())
    if match is None or int(match.group(1)) == 0:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def duration_text(seconds: float) -> str:
    """Seconds as the rules file writes them: 3600 → ``"1h"``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds * 1000:g}ms"


class _Reader:
    """Validates one table, raising with the file, the rule and the field in the message."""

    def __init__(self, source: str, where: str, table: dict[str, Any]) -> None:
        self.source = source
        self.where = where
        self.table = table

    def fail(self, key: str, problem: str) -> AlertRulesError:
        return AlertRulesError(f"{self.source}: {self.where}: {key} {problem}")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.table.get(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.fail(key, f"{value!r} must be a non-empty string")
        return value

    def number(self, key: str, *, minimum: float, default: float = 0.0) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise self.fail(key, f"{value!r} must be a number of at least {minimum:g}")
        return float(value)

    def integer(self, key: str, *, minimum: int, default: int = 0) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"{value!r} must be a whole number of at least {minimum}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"{value!r} must be true or false")
        return value

    def duration(self, key: str, default: str | None = None) -> float:
        raw = self.table.get(key, default)
        seconds = parse_duration(raw)
        if seconds is None:
            raise self.fail(key, f"{raw!r} is not a duration like '1h' or '10m'")
        return seconds


def _target(reader: _Reader, value: object, has_smtp: bool) -> str:
    if not isinstance(value, str):
        raise reader.fail("notify", f"entry {value!r} must be a string (a URL or mailto:)")
    if value.startswith(("http://", "https://")):
        if len(value.split("://", 1)[1].split("/", 1)[0]) == 0:
            raise reader.fail("notify", "has a URL without a host; write 'https://host/path'")
        return value
    if value.startswith("mailto:"):
        addresses = [a.strip() for a in value[7:].split(",")]
        for address in addresses:
            if not _EMAIL.fullmatch(address):
                raise reader.fail("notify", f"has {address!r}, which is not an e-mail address")
        if not has_smtp:
            raise reader.fail(
                "notify", "sends e-mail but the file has no [smtp] table; add [smtp] host = '...'"
            )
        return value
    raise reader.fail(
        "notify", f"entry {value!r} is neither an http(s):// URL nor a mailto: address"
    )


def _rule(source: str, index: int, table: object, has_smtp: bool) -> Rule:
    if not isinstance(table, dict):
        raise AlertRulesError(f"{source}: [[rule]] number {index + 1} is not a table")
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise AlertRulesError(
            f"{source}: rule number {index + 1}: name is missing; add name = 'errors-per-hour'"
        )
    reader = _Reader(source, f"rule {name!r}", table)
    kind = table.get("when")
    if kind not in KINDS:
        raise reader.fail("when", f"{kind!r} is not one of {', '.join(KINDS)}")
    allowed, required = _FIELDS[kind]
    for key in table:
        if key not in _COMMON and key not in allowed:
            fields = ", ".join(sorted(_COMMON | allowed))
            raise reader.fail(key, f"is not a field of a {kind} rule (its fields: {fields})")
    for key in sorted(required):
        if key not in table:
            raise reader.fail(
                key, f"is missing; a {kind} rule needs {' and '.join(sorted(required))}"
            )
    notify = table.get("notify")
    if not isinstance(notify, list) or not notify:
        raise reader.fail("notify", "must be a non-empty list like ['https://hooks.example/…']")
    level = reader.text("level")
    if level is not None and level not in LEVELS:
        raise reader.fail("level", f"{level!r} is not one of {', '.join(LEVELS)}")
    severity = reader.text("severity", "warning") or "warning"
    if severity not in SEVERITIES:
        raise reader.fail("severity", f"{severity!r} is not one of {', '.join(SEVERITIES)}")
    project = table.get("project")
    if project is not None and not isinstance(project, (str, int)):
        raise reader.fail("project", f"{project!r} must be a project name or id")
    return Rule(
        name=name,
        kind=kind,
        notify=tuple(_target(reader, target, has_smtp) for target in notify),
        project=None if project is None else str(project),
        environment=reader.text("environment"),
        level=level,
        count=reader.integer("count", minimum=0),
        window=reader.duration("window", "1h"),
        per_issue=reader.flag("per_issue"),
        transaction=reader.text("transaction", "*") or "*",
        threshold_ms=(
            reader.number("threshold_ms", minimum=1, default=1) if kind == "p95" else 0.0
        ),
        monitor=reader.text("monitor", "*") or "*",
        severity=severity,
    )


def _smtp(source: str, table: object) -> Smtp:
    if not isinstance(table, dict):
        raise AlertRulesError(f"{source}: [smtp] must be a table with host, port and from")
    reader = _Reader(source, "[smtp]", table)
    if "password" in table:
        raise reader.fail("password", "is not read from the file; use password_env")
    known = {"host", "port", "from", "starttls", "username", "password_env"}
    for key in table:
        if key not in known:
            raise reader.fail(
                key, f"is not an [smtp] field (its fields: {', '.join(sorted(known))})"
            )
    host = reader.text("host")
    if host is None:
        raise reader.fail("host", "is missing; add host = 'smtp.example.com'")
    sender = reader.text("from", "fastapi-sentry-inbox@localhost") or ""
    if not _EMAIL.fullmatch(sender):
        raise reader.fail("from", f"{sender!r} is not an e-mail address")
    return Smtp(
        host=host,
        port=reader.integer("port", minimum=1, default=25),
        sender=sender,
        starttls=reader.flag("starttls"),
        username=reader.text("username"),
        password_env=reader.text("password_env"),
    )


def _delivery(source: str, table: object) -> Delivery:
    if not isinstance(table, dict):
        raise AlertRulesError(f"{source}: [delivery] must be a table")
    reader = _Reader(source, "[delivery]", table)
    for key in table:
        if key not in ("attempts", "backoff", "timeout"):
            raise reader.fail(key, "is not a [delivery] field (attempts, backoff, timeout)")
    return Delivery(
        attempts=reader.integer("attempts", minimum=1, default=5),
        backoff=reader.duration("backoff", "2s"),
        timeout=reader.duration("timeout", "10s"),
    )


def parse_rules(text: str, source: str = "alerts.toml") -> AlertRules:
    """Validate a rules file's text; raises :class:`AlertRulesError` at the first mistake."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise AlertRulesError(f"{source}: is not valid TOML ({e})") from e
    for key in data:
        if key not in ("rule", "smtp", "delivery", "inbox_url"):
            raise AlertRulesError(
                f"{source}: {key!r} is not a section of a rules file "
                "(use [[rule]], [smtp], [delivery] and inbox_url)"
            )
    tables = data.get("rule", [])
    if not isinstance(tables, list) or not tables:
        raise AlertRulesError(f"{source}: has no [[rule]] tables; add at least one rule")
    smtp = _smtp(source, data["smtp"]) if "smtp" in data else None
    rules = tuple(_rule(source, i, table, smtp is not None) for i, table in enumerate(tables))
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise AlertRulesError(
                f"{source}: rule {rule.name!r}: name is used twice; give each rule its own name"
            )
        seen.add(rule.name)
    inbox_url = data.get("inbox_url")
    if inbox_url is not None and (
        not isinstance(inbox_url, str) or not inbox_url.startswith(("http://", "https://"))
    ):
        raise AlertRulesError(
            f"{source}: inbox_url {inbox_url!r} must be the inbox's http(s):// address"
        )
    delivery = _delivery(source, data["delivery"]) if "delivery" in data else Delivery()
    return AlertRules(
        rules=rules,
        smtp=smtp,
        delivery=delivery,
        inbox_url=inbox_url.rstrip("/") if inbox_url else None,
        source=source,
    )


def load_rules(path: str | os.PathLike[str]) -> AlertRules:
    """Read and validate a rules file."""
    name = Path(path).name
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise AlertRulesError(f"{name}: cannot be read ({reason}); check the --alerts path") from e
    return parse_rules(text, name)
