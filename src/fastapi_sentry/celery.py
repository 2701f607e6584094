"""install_celery: Sentry in every Celery worker process and in beat, initialised where it works.

sentry-sdk's Celery integration already captures a task's error once, on its final failure
(`Retry` is control flow, not an error), continues the trace of whoever enqueued the task and
sends beat check-ins. What it needs is to be initialised in the right process, and what it
lacks is searchable task tags, retries that show up in the final event, a flush on worker
shutdown, and one event for a task killed from outside (its hard time limit, or its pool
process killed, as the OOM killer does): such a task dies with its process, where the SDK runs,
so only the worker's main process knows, and it used to send two or three untagged log events
instead. This module adds exactly those, through Celery signals.

Call `install_celery(app)` in the module that creates the Celery app (the one `celery -A`
imports), so the signals are connected before the worker or beat starts.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
import weakref
from collections import OrderedDict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from fastapi_sentry._errors import MissingExtraError
from fastapi_sentry._settings import SentrySettings, settings_from
from fastapi_sentry._setup import flush, init_sdk, off_reason
from fastapi_sentry._state import active_sdk as _active_sdk

if TYPE_CHECKING:
    from celery import Celery

    from fastapi_sentry._scrubbing import Scrubber

__all__ = [
    "KILLED_FINGERPRINT",
    "RETRY_BREADCRUMB_CATEGORY",
    "RETRY_HISTORY_HEADER",
    "TAG_RETRIES",
    "TAG_TASK_ID",
    "TAG_TASK_NAME",
    "install_celery",
]

logger = logging.getLogger(__name__)

#: Tags set on the scope of every task run (their values are strings, as Sentry stores them).
TAG_TASK_NAME = "celery.task_name"
TAG_TASK_ID = "celery.task_id"
TAG_RETRIES = "celery.retries"

#: Category of the breadcrumbs that record a retry.
RETRY_BREADCRUMB_CATEGORY = "celery.retry"

#: Message header that carries the reasons of earlier attempts to the next one: each attempt
#: runs in a fresh scope (maybe in another process), so a breadcrumb would otherwise be lost.
RETRY_HISTORY_HEADER = "fastapi_sentry_retry_history"

#: Attempts remembered in that header, and the length of each reason: headers stay small.
MAX_RETRY_HISTORY = 10
MAX_REASON_LENGTH = 200

_HOOKS_ATTRIBUTE = "_fastapi_sentry_hooks"

#: First part of the fingerprint of a killed task's event; the task's name and the exception's
#: type follow, so each task has one issue per way of dying (a run's id or pid never splits it).
KILLED_FINGERPRINT = "celery-task-killed"

#: Task ids of killed tasks already reported: Celery sends `task_failure` twice for a hard time
#: limit (from the pool's error callback and from its timeout handler).
_MAX_REMEMBERED_KILLS = 1000

#: What the worker logs at ERROR around a task killed or timed out: (logger, message template).
#: They stay breadcrumbs; the one event is the task's own. The last two are only meant when
#: their exception is the one the task was reported for (see `_is_kill_log`).
_KILL_LOG_TEMPLATES = frozenset(
    {
        ("multiprocessing", "Process %r pid:%r exited with %r"),  # billiard's pool
        ("celery.worker.request", "Hard time limit (%ss) exceeded for %s[%s]"),
        ("celery.worker.request", "Task handler raised error: %r"),
        # a pool process hit by a second soft-limit signal after its task already raised the
        # first (billiard's timeout thread races the task's end under load)
        ("multiprocessing", "Pool process %r error: %r"),
    }
)
_JOB_SUFFIX = re.compile(r"\.?\s*Job: \d+\.?$")


def install_celery(
    celery_app: Celery, settings: SentrySettings | None = None, **overrides: Any
) -> SentrySettings:
    """Give a Celery app's workers (prefork children included) and beat Sentry.

    Settings come from the environment (`SENTRY_*`, `.env`) unless given; keyword overrides take
    any `SentrySettings` field. Sentry is initialised on `celeryd_init` and `beat_init`, in the
    parent process before the pool forks: `worker_process_init` would be too late, the children
    would run tasks whose errors are silently dropped. Off (no DSN): nothing is connected and
    sentry_sdk is not imported. Calling it again for the same app returns the first settings.
    """
    settings = settings_from(settings, overrides)
    installed: _CeleryHooks | None = getattr(celery_app, _HOOKS_ATTRIBUTE, None)
    if installed is not None:
        return installed.settings
    if not settings.is_active:
        logger.info(
            "Sentry is off for Celery app %r: %s", _app_name(celery_app), off_reason(settings)
        )
        return settings
    try:
        from celery import signals  # noqa: F401
    except ImportError as exc:  # pragma: no cover - a Celery app implies Celery
        raise MissingExtraError(
            "install_celery needs Celery, which is not installed; "
            "install the extra with `pip install fastapi-sentry[celery]`"
        ) from exc
    hooks = _CeleryHooks(celery_app, settings)
    hooks.connect()
    setattr(celery_app, _HOOKS_ATTRIBUTE, hooks)
    return settings


def _app_name(celery_app: Any) -> str:
    return str(getattr(celery_app, "main", None) or "celery")


class _CeleryHooks:
    """The signal receivers for one Celery app; kept on the app so they stay referenced."""

    def __init__(self, celery_app: Celery, settings: SentrySettings) -> None:
        self.app = celery_app
        self.settings = settings
        self._scrubber_instance: Scrubber | None = None
        # the main process's requests in flight, for their retries when one is killed (weak:
        # Celery holds each request while it runs, and lets it go without telling us)
        self._requests: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self._reported_kills: OrderedDict[str, None] = OrderedDict()

    def _scrubber(self) -> Scrubber:
        if self._scrubber_instance is None:
            from fastapi_sentry._scrubbing import Scrubber

            self._scrubber_instance = Scrubber.from_settings(self.settings)
        return self._scrubber_instance

    def _receivers(self) -> list[tuple[Any, Any]]:
        from celery import signals

        return [
            (signals.celeryd_init, self.on_worker_init),
            (signals.beat_init, self.on_beat_init),
            (signals.task_prerun, self.on_task_prerun),
            (signals.task_retry, self.on_task_retry),
            (signals.task_received, self.on_task_received),
            (signals.task_failure, self.on_task_failure),
            (signals.before_task_publish, self.on_before_publish),
            (signals.worker_shutdown, self.on_shutdown),
            (signals.worker_process_shutdown, self.on_shutdown),
        ]

    def connect(self) -> None:
        for signal, receiver in self._receivers():
            # weak=False: nothing else holds these bound methods
            signal.connect(receiver, weak=False)

    def disconnect(self) -> None:
        """Undo `connect` (tests create many apps in one process)."""
        for signal, receiver in self._receivers():
            signal.disconnect(receiver)

    # --- initialisation ---------------------------------------------------------------------

    def on_worker_init(self, sender: Any = None, instance: Any = None, **_: Any) -> None:
        app = getattr(instance, "app", None)
        if app is not None and app is not self.app:
            return
        self._init("worker")

    def on_beat_init(self, sender: Any = None, **_: Any) -> None:
        app = getattr(sender, "app", None)
        if app is not None and app is not self.app:
            return
        self._init("beat")

    def _init(self, role: str) -> None:
        try:
            init_sdk(self.settings)
        except Exception:
            # a broken Sentry setup must not stop the worker from running tasks
            logger.exception("Sentry could not be initialised in the Celery %s", role)
            return
        if role == "worker":
            _keep_kill_logs_as_breadcrumbs()
        logger.info("Sentry is on in the Celery %s of app %r", role, _app_name(self.app))

    def on_shutdown(self, **_: Any) -> None:
        # Only atexit flushes by default, and prefork children leave with os._exit.
        flush(self.settings.shutdown_timeout)

    # --- task scope -------------------------------------------------------------------------

    def on_task_prerun(
        self, sender: Any = None, task_id: Any = None, task: Any = None, **_: Any
    ) -> None:
        sentry_sdk = _active_sdk()
        if sentry_sdk is None or getattr(task, "app", None) is not self.app:
            return
        with sentry_sdk.utils.capture_internal_exceptions():
            request = task.request
            retries = int(getattr(request, "retries", 0) or 0)
            # the SDK runs every task in its own isolation scope, entered before this signal
            scope = sentry_sdk.get_isolation_scope()
            scope.set_tag(TAG_TASK_NAME, task.name)
            scope.set_tag(TAG_TASK_ID, str(task_id or request.id))
            scope.set_tag(TAG_RETRIES, str(retries))
            for attempt, when, reason in _retry_history(request):
                scope.add_breadcrumb(_retry_breadcrumb(task.name, attempt, when, reason, request))

    def on_task_retry(
        self, sender: Any = None, request: Any = None, reason: Any = None, **_: Any
    ) -> None:
        sentry_sdk = _active_sdk()
        if sentry_sdk is None or getattr(sender, "app", None) is not self.app:
            return
        with sentry_sdk.utils.capture_internal_exceptions():
            retries = int(getattr(request, "retries", 0) or 0)
            cause = getattr(reason, "exc", None) or reason
            sentry_sdk.get_isolation_scope().add_breadcrumb(
                _retry_breadcrumb(sender.name, retries + 1, time.time(), _describe(cause), request)
            )

    def on_before_publish(self, sender: Any = None, headers: Any = None, **_: Any) -> None:
        """Carry the reason of this attempt to the next one when the message is its retry."""
        if not isinstance(headers, dict) or "sentry_sdk" not in sys.modules:
            return
        # None outside a task, e.g. in the web request that enqueues
        task: Any = self.app.current_worker_task
        if task is None or getattr(task, "app", None) is not self.app:
            return
        sentry_sdk = sys.modules["sentry_sdk"]
        with sentry_sdk.utils.capture_internal_exceptions():
            request = task.request
            retries = int(getattr(request, "retries", 0) or 0)
            if headers.get("id") != request.id or int(headers.get("retries") or 0) <= retries:
                return
            # Task.retry publishes from inside the except block that handles the failure;
            # scrubbed here, not only in before_breadcrumb: the broker keeps the text too
            reason = self._scrubber().scrub_value(_describe(sys.exc_info()[1]))
            earlier = [(when, text) for _, when, text in _retry_history(request)]
            history = [*earlier, (time.time(), reason)]
            headers[RETRY_HISTORY_HEADER] = history[-MAX_RETRY_HISTORY:]

    # --- a task killed from outside, seen from the worker's main process ----------------------

    def on_task_received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        task_id = getattr(request, "id", None)
        if task_id is not None and "sentry_sdk" in sys.modules:
            with contextlib.suppress(TypeError):  # a request type that takes no weak reference
                self._requests[str(task_id)] = request

    def on_task_failure(
        self, sender: Any = None, task_id: Any = None, exception: Any = None, **_: Any
    ) -> None:
        """One event for a task whose process died under it; other failures are the SDK's.

        Runs in the main process, where such a failure is noticed; an ordinary failure also
        sends this signal, in the pool process, where the SDK has already reported it.
        """
        sentry_sdk = _active_sdk()
        if sentry_sdk is None or getattr(sender, "app", None) is not self.app:
            return
        how = _how_killed(exception)
        if how is None or task_id is None:
            return
        task_id = str(task_id)
        if task_id in self._reported_kills:
            return
        self._reported_kills[task_id] = None
        while len(self._reported_kills) > _MAX_REMEMBERED_KILLS:
            self._reported_kills.popitem(last=False)
        with sentry_sdk.utils.capture_internal_exceptions():
            self._report_kill(sentry_sdk, sender.name, task_id, exception, how)

    def _report_kill(
        self, sentry_sdk: Any, task_name: str, task_id: str, exc: BaseException, how: str
    ) -> None:
        request = self._requests.get(task_id)
        request_dict = getattr(request, "request_dict", None) or {}
        retries = int(request_dict.get("retries") or 0)
        kind = type(exc)
        event = {
            "level": "error",
            "transaction": task_name,
            "exception": {
                "values": [
                    {
                        "type": kind.__name__,
                        "module": kind.__module__,
                        "value": f"Task {task_name} {how}",
                        # the task's stack died with its process: there is no traceback to show
                        "mechanism": {"type": "celery", "handled": False},
                    }
                ]
            },
            "fingerprint": [KILLED_FINGERPRINT, task_name, kind.__name__],
        }
        with sentry_sdk.new_scope() as scope:
            scope.set_tag(TAG_TASK_NAME, task_name)
            scope.set_tag(TAG_TASK_ID, task_id)
            scope.set_tag(TAG_RETRIES, str(retries))
            scope.set_context(
                "celery", {"task_name": task_name, "task_id": task_id, "retries": retries}
            )
            # the hint lets SENTRY_IGNORED_EXCEPTIONS and the SDK's dedupe see the exception
            sentry_sdk.capture_event(event, hint={"exc_info": (kind, exc, None)})


def _how_killed(exc: object) -> str | None:
    """How a task was killed from outside, said for its event; None for any other failure."""
    from billiard.exceptions import TimeLimitExceeded, WorkerLostError

    if isinstance(exc, TimeLimitExceeded):
        limit = exc.args[0] if exc.args else "?"
        return f"exceeded its hard time limit ({limit} s) and its pool process was killed"
    if isinstance(exc, WorkerLostError):
        # "Worker exited prematurely: signal 9 (SIGKILL) Job: 3." -> "signal 9 (SIGKILL)"
        detail = _JOB_SUFFIX.sub("", str(exc)).rpartition("prematurely:")[2].strip()
        return f"lost its pool process, which exited with {detail or 'no status'}"
    return None


def _is_kill_log(record: Any) -> bool:
    if (getattr(record, "name", None), getattr(record, "msg", None)) not in _KILL_LOG_TEMPLATES:
        return False
    args = record.args if isinstance(record.args, tuple) else ()
    if record.msg == "Task handler raised error: %r":
        return bool(args) and _how_killed(args[0]) is not None
    if record.msg == "Pool process %r error: %r":
        from billiard.exceptions import SoftTimeLimitExceeded

        return len(args) == 2 and isinstance(args[1], SoftTimeLimitExceeded)
    return True


def _drop_kill_log_events(event: Any, hint: Any) -> Any:
    """Global event processor: the worker's log lines about a killed task send no event of their
    own (the task's event carries them as breadcrumbs)."""
    record = hint.get("log_record") if isinstance(hint, dict) else None
    if record is not None and _is_kill_log(record):
        return None
    return event


_KILL_LOGS_KEPT = False


def _keep_kill_logs_as_breadcrumbs() -> None:
    """Once per process: the SDK keeps global event processors across re-initialisation."""
    global _KILL_LOGS_KEPT
    if _KILL_LOGS_KEPT:
        return
    from sentry_sdk.scope import add_global_event_processor

    add_global_event_processor(_drop_kill_log_events)
    _KILL_LOGS_KEPT = True


def _retry_history(request: Any) -> list[tuple[int, float, str]]:
    """(attempt, time, reason) of the earlier attempts, from the header.

    The header comes from the broker: malformed entries are skipped, never trusted. The last
    entry is always the attempt just before this one, so numbers count back from `retries`.
    """
    value = getattr(request, RETRY_HISTORY_HEADER, None)
    if value is None:
        headers = getattr(request, "headers", None) or {}
        value = headers.get(RETRY_HISTORY_HEADER)
    if not isinstance(value, (list, tuple)):
        return []
    kept = value[-MAX_RETRY_HISTORY:]
    first = max(int(getattr(request, "retries", 0) or 0), len(kept)) - len(kept) + 1
    history = []
    for attempt, item in enumerate(kept, start=first):
        if isinstance(item, (list, tuple)) and len(item) == 2:
            with contextlib.suppress(TypeError, ValueError, OverflowError, OSError):
                when = float(item[0])
                datetime.fromtimestamp(when, timezone.utc)  # rejects nan and absurd times
                history.append((attempt, when, str(item[1])[:MAX_REASON_LENGTH]))
    return history


def _describe(exc: object) -> str:
    if exc is None:
        return "retry requested"
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {exc}"[:MAX_REASON_LENGTH]
    return str(exc)[:MAX_REASON_LENGTH]


def _retry_breadcrumb(
    task_name: str, attempt: int, when: float, reason: str, request: Any
) -> dict[str, Any]:
    return {
        # ISO text, which the SDK parses back: a datetime may not survive a before_breadcrumb
        "timestamp": datetime.fromtimestamp(when, timezone.utc).isoformat(),
        "type": "default",
        "category": RETRY_BREADCRUMB_CATEGORY,
        "level": "warning",
        "message": f"{task_name} attempt {attempt} failed and was retried: {reason}",
        "data": {"task_id": str(getattr(request, "id", "")), "attempt": attempt, "reason": reason},
    }
