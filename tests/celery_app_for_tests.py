"""The Celery app the worker and beat subprocesses of the Celery tests import (`celery -A`).

Configured from the environment the tests set: broker URL, a queue name unique to the test
run, and SENTRY_DSN pointing at the test's receiver. Imported by the test process too (to
enqueue), where SENTRY_DSN is unset and `install_celery` stays off.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sentry_sdk
from celery import Celery, Task
from celery.schedules import schedstate, schedule

from fastapi_sentry.celery import install_celery

BROKER_URL = os.environ.get("FASTAPI_SENTRY_TEST_BROKER", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("FASTAPI_SENTRY_TEST_QUEUE", "fastapi-sentry-tests")
#: Where tasks leave marks the test process waits for (a directory).
MARKS = os.environ.get("FASTAPI_SENTRY_TEST_MARKS", "")


class EverySecond(schedule):
    """Declares a one-minute interval (what Sentry Crons accepts) but is due every second.

    sentry-sdk ignores beat entries with intervals under a minute; a test cannot wait minutes.
    """

    def __init__(self) -> None:
        super().__init__(run_every=timedelta(minutes=1))

    def is_due(self, last_run_at: datetime) -> schedstate:
        elapsed = (self.now() - self.maybe_make_aware(last_run_at)).total_seconds()
        return schedstate(elapsed >= 1.0, max(0.1, 1.0 - elapsed))

    def __reduce__(self) -> tuple[type[EverySecond], tuple[()]]:
        # beat pickles its schedule into the shelve file
        return (self.__class__, ())


app = Celery("celery_app_for_tests", broker=BROKER_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=1,
    beat_schedule={
        "beat-ok": {"task": "tests.beat_ok", "schedule": EverySecond()},
        "beat-fails": {"task": "tests.beat_fails", "schedule": EverySecond()},
    },
)
install_celery(app)


def mark(name: str) -> None:
    if MARKS:
        Path(MARKS, name).touch()


@app.task(name="tests.retry_then_fail", bind=True, max_retries=2, default_retry_delay=0)
def retry_then_fail(self: Task[Any, Any], label: str) -> None:
    try:
        raise ValueError(f"flaky {label} attempt {self.request.retries}")
    except ValueError as exc:
        raise self.retry(exc=exc) from exc


@app.task(
    name="tests.autoretry_then_fail",
    autoretry_for=(ValueError,),
    max_retries=2,
    default_retry_delay=0,
)
def autoretry_then_fail(label: str) -> None:
    raise ValueError(f"always {label}")


@app.task(name="tests.fails")
def fails(label: str) -> None:
    raise RuntimeError(f"boom {label}")


@app.task(name="tests.capture_messages")
def capture_messages(label: str, count: int) -> None:
    for number in range(count):
        sentry_sdk.capture_message(f"{label} {number}")
    mark(label)


@app.task(name="tests.beat_ok")
def beat_ok() -> str:
    return "ok"


@app.task(name="tests.beat_fails")
def beat_fails() -> Any:
    time.sleep(0.01)
    raise RuntimeError("beat task failed")


@app.task(name="tests.exceeds_time_limit", time_limit=1)
def exceeds_time_limit(label: str) -> None:
    time.sleep(60)  # the pool kills the process at the hard limit, long before this ends


@app.task(name="tests.exceeds_soft_time_limit", soft_time_limit=1, time_limit=30)
def exceeds_soft_time_limit(label: str) -> None:
    time.sleep(60)  # SoftTimeLimitExceeded is raised in here after 1 s


@app.task(name="tests.kills_its_process")
def kills_its_process(label: str) -> None:
    # what the kernel's OOM killer does to a pool process
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="tests.retried_then_killed", bind=True, max_retries=1, default_retry_delay=0)
def retried_then_killed(self: Task[Any, Any], label: str) -> None:
    if not self.request.retries:
        raise self.retry(exc=ValueError(f"first attempt of {label}"))
    os.kill(os.getpid(), signal.SIGKILL)
