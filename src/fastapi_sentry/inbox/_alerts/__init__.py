"""Alert rules as code: a TOML file of rules (:mod:`._rules`), evaluated off the request path
(:mod:`._engine`), delivered by webhook or e-mail with retries (:mod:`._delivery`) and kept with
their delivery results (:mod:`._history`)."""

from fastapi_sentry.inbox._alerts._engine import AlertEngine
from fastapi_sentry.inbox._alerts._history import list_firings
from fastapi_sentry.inbox._alerts._rules import (
    AlertRules,
    AlertRulesError,
    load_rules,
    parse_duration,
    parse_rules,
)

__all__ = [
    "AlertEngine",
    "AlertRules",
    "AlertRulesError",
    "list_firings",
    "load_rules",
    "parse_duration",
    "parse_rules",
]
