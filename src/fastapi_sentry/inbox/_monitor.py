"""The background work that turns the inbox into a monitor: alert rules and retention, started
and stopped with the server, never on the request path."""

from __future__ import annotations

import os

from fastapi_sentry.inbox._alerts import AlertEngine, AlertRules, load_rules
from fastapi_sentry.inbox._retention import Retention
from fastapi_sentry.inbox._store import InboxStore


def resolve_rules(alerts: str | os.PathLike[str] | AlertRules | None) -> AlertRules | None:
    """A rules file path is read and validated here, before anything listens."""
    if alerts is None or isinstance(alerts, AlertRules):
        return alerts
    return load_rules(alerts)


class Monitor:
    """Alert evaluation and retention over one store."""

    def __init__(
        self,
        store: InboxStore,
        *,
        rules: AlertRules | None,
        base_url: str,
        token: str | None,
        max_events: int | None = None,
        max_age_days: float | None = None,
    ) -> None:
        self.alerts = (
            AlertEngine(store, rules, base_url=base_url, secrets=[token or ""]) if rules else None
        )
        self.retention = (
            Retention(store, max_events=max_events, max_age_days=max_age_days)
            if max_events is not None or max_age_days is not None
            else None
        )

    def start(self) -> Monitor:
        if self.alerts is not None:
            self.alerts.start()
        if self.retention is not None:
            self.retention.start()
        return self

    def stop(self) -> None:
        if self.retention is not None:
            self.retention.stop()
        if self.alerts is not None:
            self.alerts.stop()
