"""Evaluating the rules: a thread that reads what ingest committed and decides what fires.

Ingest never waits for it: the thread follows the events table by row id on its own read
connection, keeps its windows in memory and hands notifications to the :class:`Deliverer`.
A rule fires once when its condition begins (an episode) and again only after the condition has
ended, so a spike of 500 events sends one notification, not 500.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi_sentry.inbox._alerts._cron import next_expected
from fastapi_sentry.inbox._alerts._delivery import Deliverer
from fastapi_sentry.inbox._alerts._history import Firing, record_firing, update_delivery
from fastapi_sentry.inbox._alerts._rules import LEVELS, AlertRules, Rule, duration_text
from fastapi_sentry.inbox._alerts._windows import CountWindow, DistinctWindow, DurationWindow
from fastapi_sentry.inbox._store import InboxStore, iso, percentile

logger = logging.getLogger(__name__)

_BATCH = 2000
_RANK = {level: rank for rank, level in enumerate(LEVELS)}
_MONITOR_CONFIG = (
    "CASE WHEN e.type = 'check_in' AND json_valid(e.data) "
    "THEN json_extract(e.data, '$.monitor_config') END"
)
_FAILED_CHECK_IN = ("error", "timeout")


@dataclass
class _Event:
    id: int
    project_id: int
    type: str
    issue_id: int | None
    received: float
    environment: str | None
    level: str | None
    name: str | None
    status: str | None
    duration_ms: float | None
    extra: str | None  # the user key of an error, the monitor_config of a check-in
    muted: int  # the event's issue is ignored: Sentry's muted issues page nobody


@dataclass
class _Monitor:
    config: Any = None
    due: float | None = None
    missed: bool = False
    failed: bool = False


@dataclass
class _State:
    counts: dict[tuple[str, int, int], CountWindow] = field(default_factory=dict)
    users: dict[tuple[str, int, int], DistinctWindow] = field(default_factory=dict)
    durations: dict[tuple[str, int], DurationWindow] = field(default_factory=dict)
    monitors: dict[tuple[int, str], _Monitor] = field(default_factory=dict)
    active: set[tuple[str, int, int]] = field(default_factory=set)


def _max_id(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0])  # noqa: S608


class AlertEngine:
    """Evaluates ``rules`` against ``store`` in a background thread and delivers what fires.

    ``base_url`` is where notification links point (the rules file's ``inbox_url`` wins);
    ``secrets`` returns what must never leave in a notification (the inbox token; the DSN keys
    are added here). ``clock`` is the wall clock windows and cron schedules are measured with.
    """

    def __init__(
        self,
        store: InboxStore,
        rules: AlertRules,
        *,
        base_url: str,
        secrets: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        poll_interval: float = 0.25,
    ) -> None:
        self.store = store
        self.rules = rules
        self.base_url = rules.inbox_url or base_url.rstrip("/")
        self.clock = clock
        self.poll_interval = poll_interval
        self._secrets = [s for s in secrets if s]
        self._secrets_now = list(self._secrets)
        self.deliverer = Deliverer(rules.delivery, rules.smtp, self._report)
        self._state = _State()
        self._projects: dict[int, str] = {}
        self._cursor = self._activity_cursor = self._first_new_issue = 0
        self._cycles = 0
        self._cycle_done = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> AlertEngine:
        """Begin after what is already stored: history does not fire, but cron monitors
        already known are watched for their next check-in."""

        def positions(conn: sqlite3.Connection) -> tuple[int, int, int]:
            return _max_id(conn, "events"), _max_id(conn, "issue_activity"), _max_id(conn, "issues")

        self._cursor, self._activity_cursor, last_issue = self.store.read(positions)
        self._first_new_issue = last_issue + 1
        self._prime_monitors()
        self._thread = threading.Thread(
            target=self._run, name="fastapi-sentry-inbox-alerts", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.deliverer.stop()

    def settle(self, timeout: float = 15.0) -> None:
        """Wait until everything stored so far is evaluated and every notification is delivered
        or given up: what tests call before counting notifications."""
        deadline = time.monotonic() + timeout
        events, activity = self.store.read(
            lambda conn: (_max_id(conn, "events"), _max_id(conn, "issue_activity"))
        )
        with self._cycle_done:
            start = self._cycles
            self._wake.set()
            done = self._cycle_done.wait_for(
                lambda: (
                    self._cycles >= start + 2
                    and self._cursor >= events
                    and self._activity_cursor >= activity
                ),
                max(0.0, deadline - time.monotonic()),
            )
        if not done or not self.deliverer.wait_idle(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"The alert rules did not settle within {timeout} s.")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.evaluate()
            except Exception:  # keep watching: one bad cycle must not end alerting
                logger.exception("Evaluating the alert rules failed; trying again")
            with self._cycle_done:
                self._cycles += 1
                self._cycle_done.notify_all()
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    # -- one evaluation cycle ------------------------------------------------------------------

    def evaluate(self) -> None:
        projects = self.store.list_projects()
        self._projects = {p.id: p.name for p in projects}
        self._secrets_now = self._secrets + [p.public_key for p in projects]
        while True:
            events = self.store.read(self._read_events)
            for event in events:
                self._observe(event)
                self._cursor = event.id
            if len(events) < _BATCH:
                break
        for issue_id, kind in self.store.read(self._read_activity):
            if kind == "regression":
                self._regression(issue_id)
        self._check_thresholds(self.clock())

    def _read_events(self, conn: sqlite3.Connection) -> list[_Event]:
        sql = (
            "SELECT e.id, e.project_id, e.type, e.issue_id, e.received, e.environment, e.level, "  # noqa: S608 - constant fragments
            f"e.name, e.status, e.duration_ms, coalesce(e.user_key, {_MONITOR_CONFIG}), "
            "e.issue_id IS NOT NULL AND (SELECT status FROM issues i WHERE i.id = e.issue_id) "
            "= 'ignored' FROM events e WHERE e.id > ? ORDER BY e.id LIMIT ?"
        )
        rows = conn.execute(sql, (self._cursor, _BATCH)).fetchall()
        return [_Event(*row) for row in rows]

    def _read_activity(self, conn: sqlite3.Connection) -> list[tuple[int, str]]:
        rows = conn.execute(
            "SELECT id, issue_id, kind FROM issue_activity WHERE id > ? ORDER BY id",
            (self._activity_cursor,),
        ).fetchall()
        if rows:
            self._activity_cursor = rows[-1][0]
        return [(issue_id, kind) for _, issue_id, kind in rows]

    def _rules(self, kind: str, project_id: int, environment: str | None) -> list[Rule]:
        name = self._projects.get(project_id)
        return [
            rule
            for rule in self.rules.rules
            if rule.kind == kind
            and rule.project in (None, name, str(project_id))
            and rule.environment in (None, environment)
        ]

    @staticmethod
    def _level_ok(rule: Rule, level: str | None) -> bool:
        return rule.level is None or _RANK.get(level or "error", 3) >= _RANK[rule.level]

    def _observe(self, event: _Event) -> None:
        state = self._state
        if event.type in ("error", "default") and event.issue_id is not None and not event.muted:
            issue = event.issue_id
            new = issue >= self._first_new_issue
            if new:
                self._first_new_issue = issue + 1
            for rule in self._rules("new_issue", event.project_id, event.environment):
                if new and self._level_ok(rule, event.level):
                    self._fire_issue(rule, issue, "New issue", 1)
            for rule in self._rules("event_count", event.project_id, event.environment):
                if self._level_ok(rule, event.level):
                    key = (rule.name, event.project_id, issue if rule.per_issue else 0)
                    window = state.counts.get(key) or CountWindow(rule.window)
                    state.counts[key] = window
                    window.add(event.received)
            for rule in self._rules("users_affected", event.project_id, event.environment):
                if event.extra and self._level_ok(rule, event.level):
                    key = (rule.name, event.project_id, issue)
                    users = state.users.get(key) or DistinctWindow(rule.window)
                    state.users[key] = users
                    users.add(event.extra, event.received)
        elif event.type == "transaction" and event.duration_ms is not None:
            for rule in self._rules("p95", event.project_id, event.environment):
                if fnmatch.fnmatchcase(event.name or "", rule.transaction):
                    key2 = (rule.name, event.project_id)
                    durations = state.durations.get(key2) or DurationWindow(rule.window)
                    state.durations[key2] = durations
                    durations.add(event.received, event.duration_ms)
        elif event.type == "check_in":
            self._check_in(event)

    def _check_in(self, event: _Event) -> None:
        slug = event.name or ""
        monitor = self._state.monitors.setdefault((event.project_id, slug), _Monitor())
        if event.extra:
            try:
                monitor.config = json.loads(event.extra)
            except ValueError:
                monitor.config = None
        monitor.due = next_expected(monitor.config, event.received)
        monitor.missed = False
        if event.status in _FAILED_CHECK_IN:
            if not monitor.failed:
                for rule in self._cron_rules("cron_failed", event.project_id, slug, event):
                    self._fire(
                        rule,
                        event.project_id,
                        f"Monitor {slug} reported {event.status}",
                        1,
                        "/crons/",
                    )
            monitor.failed = True
        elif event.status == "ok":
            monitor.failed = False

    def _cron_rules(
        self, kind: str, project_id: int, slug: str, event: _Event | None
    ) -> list[Rule]:
        environment = event.environment if event is not None else None
        return [
            rule
            for rule in self.rules.rules
            if rule.kind == kind
            and rule.project in (None, self._projects.get(project_id), str(project_id))
            and (event is None or rule.environment in (None, environment))
            and fnmatch.fnmatchcase(slug, rule.monitor)
        ]

    def _prime_monitors(self) -> None:
        def latest(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                f"SELECT e.project_id, e.name, e.received, {_MONITOR_CONFIG} "  # noqa: S608
                "FROM events e WHERE e.id IN (SELECT max(id) FROM events "
                "WHERE type = 'check_in' GROUP BY project_id, name)"
            ).fetchall()

        for project_id, slug, received, config_text in self.store.read(latest):
            config = json.loads(config_text) if config_text else None
            self._state.monitors[(project_id, slug)] = _Monitor(
                config=config, due=next_expected(config, received)
            )

    def _regression(self, issue_id: int) -> None:
        issue = self.store.get_issue(issue_id)
        if issue is None:
            return
        project_id = int(issue["project"]["id"])
        for rule in self.rules.rules:
            if (
                rule.kind == "regression"
                and rule.project in (None, issue["project"]["name"], str(project_id))
                and (rule.environment is None or rule.environment in issue["environments"])
                and self._level_ok(rule, issue["level"])
            ):
                self._fire_issue(rule, issue_id, "Regression", 1)

    # -- thresholds ----------------------------------------------------------------------------

    def _episode(self, key: tuple[str, int, int], breached: bool) -> bool:
        """Whether a condition just began (fire now); remembers it until it ends."""
        if not breached:
            self._state.active.discard(key)
            return False
        if key in self._state.active:
            return False
        self._state.active.add(key)
        return True

    def _check_thresholds(self, now: float) -> None:
        rules = {rule.name: rule for rule in self.rules.rules}
        state = self._state
        for key, window in list(state.counts.items()):
            rule, count = rules[key[0]], window.count(now)
            if self._episode(key, count > rule.count):
                span = duration_text(rule.window)
                if rule.per_issue:
                    self._fire_issue(rule, key[2], f"{count} events in {span}", count)
                else:
                    title = f"{count} events in {span} ({rule.name})"
                    self._fire(rule, key[1], title, count, "/")
            if count == 0 and rule.per_issue:
                del state.counts[key]
        for key, users in list(state.users.items()):
            rule, count = rules[key[0]], users.count(now)
            if self._episode(key, count > rule.count):
                span = duration_text(rule.window)
                self._fire_issue(rule, key[2], f"{count} users affected in {span}", count)
            if count == 0:
                del state.users[key]
        for (name, project_id), durations in state.durations.items():
            rule, values = rules[name], durations.values(now)
            p95 = percentile(values, 0.95)
            if self._episode((name, project_id, 0), bool(values) and p95 > rule.threshold_ms):
                title = (
                    f"p95 of {rule.transaction} is {p95:.0f} ms over {duration_text(rule.window)} "
                    f"(threshold {rule.threshold_ms:g} ms, {len(values)} transactions)"
                )
                self._fire(rule, project_id, title, len(values), "/performance/")
        for (project_id, slug), monitor in state.monitors.items():
            if monitor.due is not None and not monitor.missed and now > monitor.due:
                monitor.missed = True
                for rule in self._cron_rules("cron_missed", project_id, slug, None):
                    title = f"Monitor {slug} missed its check-in (due by {iso(monitor.due)})"
                    self._fire(rule, project_id, title, 1, "/crons/")

    # -- firing --------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        for secret in self._secrets_now:
            text = text.replace(secret, "[redacted]")
        return text

    def _fire_issue(self, rule: Rule, issue_id: int, what: str, count: int) -> None:
        issue = self.store.get_issue(issue_id)
        if issue is None:
            return
        project_id = int(issue["project"]["id"])
        title = f"{what}: {issue['title']}"
        self._fire(rule, project_id, title, count, f"/issues/{issue_id}/", issue_id)

    def _fire(
        self,
        rule: Rule,
        project_id: int,
        title: str,
        count: int,
        path: str,
        issue_id: int | None = None,
    ) -> None:
        project = self._projects.get(project_id, str(project_id))
        title = self._redact(title)
        url = f"{self.base_url}{path}?project={project_id}"
        firing = Firing(
            rule.name, rule.kind, project_id, project, title, count, url, issue_id, rule.severity
        )
        ids = record_firing(self.store, firing, rule.notify)
        logger.info("Alert %r fired: %s", rule.name, title)
        body = {
            "rule": rule.name,
            "kind": rule.kind,
            "severity": rule.severity,
            "title": title,
            "text": f"[{rule.severity}] [{project}] {rule.name}: {title}\n{url}",
            "url": url,
            "project": project,
            "count": count,
            "issue_id": None if issue_id is None else str(issue_id),
            "fired_at": iso(time.time()),
        }
        for delivery_id, target in zip(ids, rule.notify, strict=True):
            self.deliverer.submit(delivery_id, target, body)

    def _report(self, delivery_id: int, status: str, attempts: int, error: str | None) -> None:
        try:
            update_delivery(self.store, delivery_id, status, attempts, error)
        except RuntimeError:  # the inbox is stopping: its store is closed
            logger.info("Alert delivery %d: %s after %d attempt(s)", delivery_id, status, attempts)
