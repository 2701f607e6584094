"""install_celery in one process: settings, signal wiring, task tags and retry breadcrumbs.

The worker and beat themselves run in test_celery_worker.py; here Celery's signals are sent
by hand and tasks run eagerly (`Task.apply`), through the same SDK integration and the real
HTTP transport to a receiver on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import sentry_sdk
from celery import Celery, signals

from fastapi_sentry import ConfigError, SentrySettings
from fastapi_sentry.celery import (
    MAX_RETRY_HISTORY,
    RETRY_BREADCRUMB_CATEGORY,
    RETRY_HISTORY_HEADER,
    TAG_RETRIES,
    TAG_TASK_ID,
    TAG_TASK_NAME,
    install_celery,
)
from tests.support.receiver import Receiver

CELERY_SIGNALS = (
    signals.celeryd_init,
    signals.beat_init,
    signals.task_prerun,
    signals.task_retry,
    signals.task_received,
    signals.task_failure,
    signals.before_task_publish,
    signals.worker_shutdown,
    signals.worker_process_shutdown,
)


def _receiver_counts() -> list[int]:
    return [len(signal.receivers) for signal in CELERY_SIGNALS]


@pytest.fixture
def make_app() -> Iterator[Callable[[], Celery]]:
    """Celery apps whose hooks are disconnected afterwards: signals are process-global."""
    apps: list[Celery] = []

    def make() -> Celery:
        app = Celery(f"unit-{len(apps)}", broker="memory://", set_as_current=False)
        app.conf.task_always_eager = False
        apps.append(app)
        return app

    yield make
    for app in apps:
        hooks = getattr(app, "_fastapi_sentry_hooks", None)
        if hooks is not None:
            hooks.disconnect()
        app.close()


class FakeBeat:
    """Stands in for celery.beat.Service, the sender of beat_init (it must be hashable)."""

    def __init__(self, app: Celery) -> None:
        self.app = app


def _start_worker(app: Celery) -> None:
    """What `celery worker` does in its main process, before the pool forks."""
    signals.celeryd_init.send(
        sender="unit@localhost", instance=SimpleNamespace(app=app), conf=app.conf, options={}
    )


def test_off_connects_nothing_and_imports_no_sentry_sdk() -> None:
    code = """
import json, logging, sys
from celery import Celery, signals
logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
from fastapi_sentry.celery import install_celery
names = ["celeryd_init", "beat_init", "task_prerun", "task_retry", "before_task_publish",
         "worker_shutdown", "worker_process_shutdown"]
before = [len(getattr(signals, n).receivers) for n in names]
settings = install_celery(Celery("quiet"))
after = [len(getattr(signals, n).receivers) for n in names]
print(json.dumps({"sdk": "sentry_sdk" in sys.modules, "same": before == after,
                  "active": settings.is_active}))
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"sdk": False, "same": True, "active": False}
    info = [line for line in result.stderr.splitlines() if line.startswith("fastapi_sentry")]
    assert info == [
        "fastapi_sentry.celery INFO Sentry is off for Celery app 'quiet': SENTRY_DSN is not set"
    ]


def test_invalid_settings_raise_a_config_error_without_the_dsn(
    make_app: Callable[[], Celery],
) -> None:
    secret_dsn = "https://s3cr3tk3y@example.invalid/not-a-number"
    before = _receiver_counts()
    with pytest.raises(ConfigError, match="SENTRY_DSN") as caught:
        install_celery(make_app(), dsn=secret_dsn)
    assert "s3cr3tk3y" not in str(caught.value)
    assert _receiver_counts() == before


def test_a_second_install_keeps_the_first_settings_and_connects_once(
    make_app: Callable[[], Celery], sentry_receiver: Receiver
) -> None:
    app = make_app()
    before = _receiver_counts()
    first = install_celery(app, dsn=sentry_receiver.dsn, environment="first")
    second = install_celery(app, dsn=sentry_receiver.dsn, environment="second")
    assert second is first
    assert second.environment == "first"
    assert _receiver_counts() == [count + 1 for count in before]


def test_nothing_is_initialised_before_the_worker_or_beat_starts(
    make_app: Callable[[], Celery], sentry_receiver: Receiver
) -> None:
    # the web process imports the Celery app module too; it must not re-initialise there
    install_celery(make_app(), SentrySettings.model_validate({"dsn": sentry_receiver.dsn}))
    assert not sentry_sdk.get_client().is_active()


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_worker_and_beat_start_initialise_sentry_for_their_own_app_only(
    make_app: Callable[[], Celery],
    sentry_receiver: Receiver,
    role: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, other = make_app(), make_app()
    install_celery(app, dsn=sentry_receiver.dsn)

    def start(target: Celery) -> None:
        if role == "worker":
            _start_worker(target)
        else:
            signals.beat_init.send(sender=FakeBeat(target))

    start(other)
    assert not sentry_sdk.get_client().is_active()
    with caplog.at_level(logging.INFO, logger="fastapi_sentry"):
        start(app)
    client = sentry_sdk.get_client()
    assert client.is_active()
    assert client.options["dsn"] == sentry_receiver.dsn
    assert client.get_integration("celery") is not None
    assert f"Sentry is on in the Celery {role} of app 'unit-0'" in caplog.messages


def test_a_failing_init_is_logged_and_the_worker_keeps_starting(
    make_app: Callable[[], Celery],
    sentry_receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()
    install_celery(app, dsn=sentry_receiver.dsn)

    def broken(settings: SentrySettings) -> bool:
        raise RuntimeError("transport exploded")

    monkeypatch.setattr("fastapi_sentry.celery.init_sdk", broken)
    with caplog.at_level(logging.ERROR, logger="fastapi_sentry"):
        _start_worker(app)
    (record,) = caplog.records
    assert record.getMessage() == "Sentry could not be initialised in the Celery worker"
    assert record.exc_info is not None
    assert "transport exploded" in str(record.exc_info[1])


def _failing_task(app: Celery) -> Any:
    @app.task(name="unit.fails", bind=True, shared=False)
    def fails(self: Any, label: str) -> None:
        raise LookupError(f"missing {label}")

    return fails


def _wait_events(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(events := receiver.envelope_items("event")) < count:
        assert time.monotonic() < deadline, f"{len(events)} event(s) arrived, expected {count}"
        time.sleep(0.02)
    return events


def test_a_task_run_is_tagged_with_name_id_and_retries(
    make_app: Callable[[], Celery], sentry_receiver: Receiver
) -> None:
    app = make_app()
    install_celery(app, dsn=sentry_receiver.dsn)
    _start_worker(app)
    task = _failing_task(app)

    result = task.apply(args=["key"], task_id="task-id-1", retries=3)
    assert isinstance(result.result, LookupError)
    sentry_sdk.flush(5)

    (event,) = _wait_events(sentry_receiver, 1)
    assert event["tags"][TAG_TASK_NAME] == "unit.fails"
    assert event["tags"][TAG_TASK_ID] == "task-id-1"
    assert event["tags"][TAG_RETRIES] == "3"
    # tags belong to the task's scope, not to the process
    assert TAG_TASK_ID not in sentry_sdk.get_isolation_scope()._tags


def test_tasks_of_another_app_are_left_alone(
    make_app: Callable[[], Celery], sentry_receiver: Receiver
) -> None:
    app, other = make_app(), make_app()
    install_celery(app, dsn=sentry_receiver.dsn)
    _start_worker(app)

    _failing_task(other).apply(args=["other"], task_id="other-id")
    sentry_sdk.flush(5)

    (event,) = _wait_events(sentry_receiver, 1)
    assert event["tags"].get("celery_task_id") == "other-id"  # the SDK's own tag
    assert TAG_TASK_ID not in event["tags"]


def test_earlier_attempts_become_breadcrumbs_of_the_final_failure(
    make_app: Callable[[], Celery], sentry_receiver: Receiver
) -> None:
    app = make_app()
    install_celery(app, dsn=sentry_receiver.dsn)
    _start_worker(app)
    start = time.time() - 100
    history: list[Any] = [[start + n, f"TimeoutError: attempt {n}"] for n in range(14)]
    # a header from the broker is not trusted: malformed entries are skipped
    history[-1] = ["not a time", "garbage"]
    history[-2] = "no pair"
    history[-3] = [start + 11, "x" * 5000]

    _failing_task(app).apply(
        args=["late"], task_id="task-2", retries=14, headers={RETRY_HISTORY_HEADER: history}
    )
    sentry_sdk.flush(5)

    (event,) = _wait_events(sentry_receiver, 1)
    crumbs = [
        c for c in event["breadcrumbs"]["values"] if c["category"] == RETRY_BREADCRUMB_CATEGORY
    ]
    # the last MAX_RETRY_HISTORY entries, minus the two malformed ones
    assert len(crumbs) == MAX_RETRY_HISTORY - 2
    assert [c["data"]["reason"] for c in crumbs[:3]] == [
        "TimeoutError: attempt 4",
        "TimeoutError: attempt 5",
        "TimeoutError: attempt 6",
    ]
    # numbered from the retry count: entries 0-3 were dropped to keep the header small
    assert [c["data"]["attempt"] for c in crumbs] == [5, 6, 7, 8, 9, 10, 11, 12]
    assert crumbs[-1]["data"]["reason"] == "x" * 200
    assert crumbs[0]["message"] == (
        "unit.fails attempt 5 failed and was retried: TimeoutError: attempt 4"
    )
    assert crumbs[0]["level"] == "warning"
    assert crumbs[0]["data"]["task_id"] == "task-2"
    # recorded at the time of the attempt, not when replayed
    assert crumbs[0]["timestamp"].startswith(
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + 4))
    )


@pytest.mark.parametrize("style", ["autoretry_for", "self.retry"])
def test_an_eager_task_that_keeps_failing_is_reported_once(
    make_app: Callable[[], Celery], sentry_receiver: Receiver, style: str
) -> None:
    # task_always_eager (a demo without a broker) runs retries nested in the caller
    app = make_app()
    app.conf.task_always_eager = True
    install_celery(app, dsn=sentry_receiver.dsn)
    _start_worker(app)

    if style == "autoretry_for":

        @app.task(name="unit.eager", autoretry_for=(ValueError,), max_retries=2, shared=False)
        def eager() -> None:
            raise ValueError("eager failure")

    else:

        @app.task(name="unit.eager", bind=True, max_retries=2, shared=False)
        def eager(self: Any) -> None:
            try:
                raise ValueError("eager failure")
            except ValueError as exc:
                raise self.retry(exc=exc, countdown=0) from exc

    result = eager.delay()
    assert isinstance(result.result, ValueError)
    # eager: every report was captured before delay() returned, so the flush sent them all
    sentry_sdk.flush(5)

    (event,) = _wait_events(sentry_receiver, 1)
    assert event["tags"][TAG_TASK_NAME] == "unit.eager"
    assert event["tags"][TAG_RETRIES] == "2"


def test_a_retry_message_carries_the_scrubbed_reason_and_other_messages_do_not(
    make_app: Callable[[], Celery], sentry_receiver: Receiver
) -> None:
    from celery import _state

    app = make_app()
    install_celery(app, dsn=sentry_receiver.dsn, scrub_extra_patterns=["hunter[0-9]"])
    _start_worker(app)
    task = _failing_task(app)
    earlier = [[1_700_000_000.0, "OSError: first"]]

    def publish(task_id: str, retries: int) -> dict[str, Any]:
        headers: dict[str, Any] = {"id": task_id, "task": task.name, "retries": retries}
        try:
            raise PermissionError("login with hunter2 refused")
        except PermissionError:
            # what Task.retry does inside the task's except block
            signals.before_task_publish.send(sender=task.name, body=(), headers=headers)
        return headers

    # the task is running in the worker, on its second attempt
    task.push_request(
        id="running", retries=1, called_directly=False, headers={RETRY_HISTORY_HEADER: earlier}
    )
    _state.push_current_task(task)  # type: ignore[attr-defined]
    try:
        retry = publish("running", 2)
        child = publish("another-task", 0)
        same_attempt = publish("running", 1)
    finally:
        _state.pop_current_task()  # type: ignore[attr-defined]
        task.pop_request()
    outside_a_task = publish("running", 2)

    history = retry[RETRY_HISTORY_HEADER]
    assert history[0] == (1_700_000_000.0, "OSError: first")
    assert history[1][1] == "PermissionError: login with [Filtered] refused"
    assert abs(history[1][0] - time.time()) < 60
    for headers in (child, same_attempt, outside_a_task):
        assert RETRY_HISTORY_HEADER not in headers


def test_a_retry_adds_a_breadcrumb_to_the_attempt_that_retries(
    make_app: Callable[[], Celery], sentry_receiver: Receiver
) -> None:
    from celery.app.task import Context
    from celery.exceptions import Retry

    app = make_app()
    install_celery(app, dsn=sentry_receiver.dsn)
    _start_worker(app)
    task = _failing_task(app)

    with sentry_sdk.isolation_scope():
        # what Celery sends when the attempt ends in Retry (celery.app.trace.handle_retry)
        request = Context(id="task-3", retries=0)
        reason = Retry(exc=ConnectionError("broker away"))
        signals.task_retry.send(sender=task, request=request, reason=reason, einfo=None)
        sentry_sdk.capture_message("later in the same attempt")
    sentry_sdk.flush(5)

    (event,) = _wait_events(sentry_receiver, 1)
    (crumb,) = event["breadcrumbs"]["values"]
    assert crumb["category"] == RETRY_BREADCRUMB_CATEGORY
    assert (
        crumb["message"]
        == "unit.fails attempt 1 failed and was retried: ConnectionError: broker away"
    )
    assert crumb["data"] == {
        "task_id": "task-3",
        "attempt": 1,
        "reason": "ConnectionError: broker away",
    }


@pytest.mark.parametrize(
    ("logger_name", "template", "args", "dropped"),
    [
        ("multiprocessing", "Process %r pid:%r exited with %r", ("W-1", 7, "signal 9"), True),
        ("celery.worker.request", "Hard time limit (%ss) exceeded for %s[%s]", (1, "t", "i"), True),
        ("celery.worker.request", "Task handler raised error: %r", ("lost",), False),
        ("multiprocessing", "Pool process %r error: %r", ("W-1", RuntimeError("bug")), False),
        ("myapp", "Process %r pid:%r exited with %r", ("W-1", 7, "signal 9"), False),
    ],
)
def test_only_the_workers_own_lines_about_a_killed_task_lose_their_event(
    logger_name: str, template: str, args: tuple[Any, ...], dropped: bool
) -> None:
    from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError

    from fastapi_sentry.celery import _drop_kill_log_events

    def kept(*record_args: Any) -> bool:
        record = logging.LogRecord(
            logger_name, logging.ERROR, "x.py", 1, template, record_args, None
        )
        event = {"level": "error"}
        return _drop_kill_log_events(event, {"log_record": record}) is event

    assert kept(*args) is not dropped
    # the exception-bearing lines are the killed task's own only for the kill's exceptions
    if template == "Task handler raised error: %r":
        assert not kept(WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL) Job: 1."))
        assert not kept(TimeLimitExceeded(1))
    if template == "Pool process %r error: %r":
        assert not kept("W-1", SoftTimeLimitExceeded())
