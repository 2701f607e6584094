"""install_celery end to end: real `celery worker` (prefork) and `celery beat` processes on the
local Redis broker, sending through sentry-sdk's real HTTP transport to a receiver on 127.0.0.1.

Each test gets its own queue name, so concurrent runs on the same Redis never steal each
other's messages; every process is stopped (SIGTERM, then SIGKILL) in the fixture finalizer,
and a failing assertion shows the processes' output.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI

import fastapi_sentry
from fastapi_sentry.celery import (
    KILLED_FINGERPRINT,
    RETRY_BREADCRUMB_CATEGORY,
    TAG_RETRIES,
    TAG_TASK_ID,
    TAG_TASK_NAME,
)
from tests.support.receiver import Receiver
from tests.support.server import serve

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[1]
APP_MODULE = "tests.celery_app_for_tests"
#: How long a worker may take to start and run a short task (the machine is shared).
SETTLE = 30.0
#: How long a warm shutdown may take after pool processes were killed or timed out.
KILLED_SHUTDOWN = 60.0


class CeleryProcess:
    """One `celery` subprocess; its output goes to a file that failures quote."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", APP_MODULE, *args],
            env=env,
            cwd=log.parent,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def wait_for_output(self, text: str, timeout: float = SETTLE) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise AssertionError(f"celery exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"celery did not log {text!r} in {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (Celery's warm shutdown), then SIGKILL to the whole group after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # prefork children that outlived their parent would keep consuming
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._out.close()
        return self.proc.returncode


class CeleryRun:
    """The processes of one test: they share a receiver, a queue and a marks directory."""

    def __init__(self, receiver: Receiver, broker: str, tmp_path: Path) -> None:
        self.receiver = receiver
        self.broker = broker
        self.queue = f"fastapi-sentry-test-{uuid.uuid4().hex[:12]}"
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.tmp_path = tmp_path
        self.processes: list[CeleryProcess] = []
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")},
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "SENTRY_DSN": receiver.dsn,
            "SENTRY_ENVIRONMENT": "test",
            "SENTRY_RELEASE": "celery-tests",
            "SENTRY_SHUTDOWN_TIMEOUT": "10",
            "FASTAPI_SENTRY_TEST_BROKER": broker,
            "FASTAPI_SENTRY_TEST_QUEUE": self.queue,
            "FASTAPI_SENTRY_TEST_MARKS": str(self.marks),
        }

    def worker(self, concurrency: int = 2, pool: str = "prefork") -> CeleryProcess:
        process = self._start(
            "worker",
            [
                "worker",
                f"--pool={pool}",
                f"--concurrency={concurrency}",
                "-Q",
                self.queue,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
                "-n",
                f"{self.queue}@%h",
            ],
        )
        process.wait_for_output("ready.")
        return process

    def beat(self) -> CeleryProcess:
        return self._start(
            "beat",
            [
                "beat",
                "--loglevel=INFO",
                "--max-interval=1",
                "-s",
                str(self.tmp_path / "beat-schedule"),
                "--pidfile=",
            ],
        )

    def _start(self, name: str, args: list[str]) -> CeleryProcess:
        process = CeleryProcess(args, self.env, self.tmp_path / f"{name}-{len(self.processes)}.log")
        self.processes.append(process)
        return process

    def output(self) -> str:
        return "\n".join(f"--- {p.log.name} ---\n{p.output()}" for p in self.processes)

    def send(self, task_name: str, *args: Any) -> str:
        """Enqueue by name (no import of the app module, so nothing here initialises Sentry)."""
        from celery import Celery

        producer = Celery("producer", broker=self.broker)
        try:
            result = producer.send_task(task_name, args=list(args), queue=self.queue)
        finally:
            producer.close()
        return str(result.id)

    def items(
        self, predicate: Callable[[dict[str, Any]], bool], type: str = "event"
    ) -> list[dict[str, Any]]:
        return [e for e in self.receiver.envelope_items(type) if predicate(e)]

    def wait_items(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        count: int = 1,
        type: str = "event",
        timeout: float = SETTLE,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.items(predicate, type)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} matching {type} item(s), got {len(found)}:\n{self.output()}"
                )
            time.sleep(0.05)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def _cleanup_queue(broker: str, queue: str) -> None:
    client = redis.Redis.from_url(broker)
    try:
        # the queue's list and kombu's binding keys named after it
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)
        for key in client.scan_iter(match="_kombu.binding.*"):
            for member in client.smembers(key):
                if queue.encode() in member:
                    client.srem(key, member)
    finally:
        client.close()


@pytest.fixture
def celery_run(sentry_receiver: Receiver, redis_url: str, tmp_path: Path) -> Iterator[CeleryRun]:
    run = CeleryRun(sentry_receiver, redis_url, tmp_path)
    try:
        yield run
    finally:
        run.stop_all()
        _cleanup_queue(redis_url, run.queue)
        # captured, so pytest shows it only when the test failed
        print(run.output())


def _task_id_is(task_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get("tags", {}).get(TAG_TASK_ID) == task_id


def _retry_crumbs(event: dict[str, Any]) -> list[dict[str, Any]]:
    crumbs = event.get("breadcrumbs", {}).get("values", [])
    return [c for c in crumbs if c.get("category") == RETRY_BREADCRUMB_CATEGORY]


@pytest.mark.parametrize(
    ("task_name", "first_reason"),
    [
        ("tests.retry_then_fail", "ValueError: flaky {label} attempt 0"),
        ("tests.autoretry_then_fail", "ValueError: always {label}"),
    ],
)
def test_a_task_that_keeps_failing_is_reported_once_with_its_retries(
    celery_run: CeleryRun, task_name: str, first_reason: str
) -> None:
    worker = celery_run.worker()
    label = uuid.uuid4().hex[:8]
    task_id = celery_run.send(task_name, label)

    celery_run.wait_items(_task_id_is(task_id))
    # Every attempt ran before the final failure; stopping the worker (which flushes) means
    # anything an earlier attempt captured has been delivered by now.
    assert worker.stop() == 0, celery_run.output()
    events = celery_run.items(lambda e: label in str(e.get("exception")))
    assert len(events) == 1, f"{len(events)} events for one failing task:\n{celery_run.output()}"

    event = events[0]
    assert event["tags"][TAG_TASK_NAME] == task_name
    assert event["tags"][TAG_TASK_ID] == task_id
    assert event["tags"][TAG_RETRIES] == "2"
    assert event["exception"]["values"][-1]["type"] == "ValueError"
    assert event["exception"]["values"][-1]["mechanism"]["handled"] is False
    crumbs = _retry_crumbs(event)
    assert [c["data"]["attempt"] for c in crumbs] == [1, 2]
    assert crumbs[0]["data"]["reason"] == first_reason.format(label=label)
    assert all(c["data"]["task_id"] == task_id for c in crumbs)
    assert crumbs[0]["timestamp"] < crumbs[1]["timestamp"] < event["timestamp"]
    # the retries were real: Celery logged them in the worker
    assert worker.output().count(f"[{task_id}] retry:") == 2, worker.output()


def test_a_task_without_retries_is_tagged_with_zero_retries(celery_run: CeleryRun) -> None:
    celery_run.worker()
    task_id = celery_run.send("tests.fails", "plain")

    (event,) = celery_run.wait_items(_task_id_is(task_id))
    assert event["tags"][TAG_TASK_NAME] == "tests.fails"
    assert event["tags"][TAG_RETRIES] == "0"
    assert _retry_crumbs(event) == []
    assert event["exception"]["values"][-1]["value"] == "boom plain"


def test_a_failing_task_carries_the_trace_of_the_request_that_enqueued_it(
    celery_run: CeleryRun, redis_url: str
) -> None:
    from celery import Celery

    celery_run.worker()
    # the web service's side of the task: same name, sent to the worker's queue by .delay()
    producer = Celery("web-producer", broker=redis_url, set_as_current=False)
    producer.conf.task_default_queue = celery_run.queue

    @producer.task(name="tests.fails", shared=False)
    def fails(label: str) -> None:
        raise AssertionError("runs in the worker, never here")

    api = FastAPI()
    fastapi_sentry.install(
        api,
        dsn=celery_run.receiver.dsn,
        environment="test",
        traces_sample_rate=1.0,
        mount_endpoints=False,
    )
    sent: dict[str, str] = {}

    @api.post("/reports")
    def enqueue_report() -> dict[str, str]:
        result = fails.delay("from-web")
        sent["task_id"] = str(result.id)
        return sent

    with serve(api) as base_url:
        response = httpx.post(f"{base_url}/reports", timeout=10)
    producer.close()
    assert response.status_code == 200

    (transaction,) = celery_run.wait_items(
        lambda t: t.get("transaction") == "/reports", type="transaction"
    )
    (event,) = celery_run.wait_items(_task_id_is(sent["task_id"]))
    trace_id = transaction["contexts"]["trace"]["trace_id"]
    assert event["contexts"]["trace"]["trace_id"] == trace_id
    # the task's own transaction continues the request's trace from the enqueueing span
    # (.delay() goes through both Task.apply_async and Celery.send_task: one span each)
    submits = {s["span_id"] for s in transaction["spans"] if s["op"] == "queue.submit.celery"}
    (task_transaction,) = celery_run.wait_items(
        lambda t: t.get("transaction") == "tests.fails", type="transaction"
    )
    assert task_transaction["contexts"]["trace"]["trace_id"] == trace_id
    assert task_transaction["contexts"]["trace"]["parent_span_id"] in submits


class SlowReceiver(Receiver):
    """Answers each request after a delay, so sent events stay queued in the worker."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        fast = self._server.RequestHandlerClass

        class Slow(fast):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                time.sleep(delay)
                super().do_POST()

        self._server.RequestHandlerClass = Slow


@pytest.mark.parametrize("pool", ["prefork", "solo", "threads"])
def test_events_captured_just_before_sigterm_reach_the_receiver(
    redis_url: str, tmp_path: Path, pool: str
) -> None:
    count = 12
    with SlowReceiver(delay=0.15) as receiver:
        run = CeleryRun(receiver, redis_url, tmp_path)
        try:
            worker = run.worker(concurrency=1, pool=pool)
            label = f"before-stop-{uuid.uuid4().hex[:8]}"
            run.send("tests.capture_messages", label, count)
            deadline = time.monotonic() + SETTLE
            while not (run.marks / label).exists():
                assert time.monotonic() < deadline, run.output()
                time.sleep(0.01)
            # the task has captured all of them; at 0.15 s each most are still queued
            queued_at_stop = count - len(receiver.bodies)
            assert worker.stop() == 0, run.output()
            messages = [
                e
                for e in receiver.envelope_items("event")
                if e.get("message", "").startswith(label)
            ]
        finally:
            run.stop_all()
            _cleanup_queue(redis_url, run.queue)
            print(run.output())
    assert queued_at_stop > 1, "the events were delivered before the stop; nothing was tested"
    assert len(messages) == count, f"{len(messages)} of {count} arrived:\n{run.output()}"


def test_beat_tasks_send_check_ins_from_beat_and_the_worker(celery_run: CeleryRun) -> None:
    celery_run.worker()
    celery_run.beat()

    def check_ins() -> list[dict[str, Any]]:
        return celery_run.receiver.envelope_items("check_in")

    def statuses(slug: str) -> set[str]:
        return {c["status"] for c in check_ins() if c["monitor_slug"] == slug}

    deadline = time.monotonic() + SETTLE
    while not (
        {"in_progress", "ok"} <= statuses("beat-ok")
        and {"in_progress", "error"} <= statuses("beat-fails")
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"check-ins so far: {check_ins()}\n{celery_run.output()}")
        time.sleep(0.1)

    ok = [c for c in check_ins() if c["monitor_slug"] == "beat-ok"]
    started = {c["check_in_id"] for c in ok if c["status"] == "in_progress"}
    finished = [c for c in ok if c["status"] == "ok"]
    # the worker closes the check-in beat opened, with a duration
    assert any(c["check_in_id"] in started for c in finished), ok
    assert all(c["duration"] is not None and c["duration"] >= 0 for c in finished), ok
    assert ok[0]["monitor_config"]["schedule"] == {"type": "interval", "value": 1, "unit": "minute"}
    # and the failing beat task is one error event (with our tags), besides its error check-in
    errors = celery_run.items(lambda e: e.get("tags", {}).get(TAG_TASK_NAME) == "tests.beat_fails")
    assert errors, celery_run.output()
    assert errors[0]["exception"]["values"][-1]["value"] == "beat task failed"


def test_a_task_killed_from_outside_is_one_tagged_event(celery_run: CeleryRun) -> None:
    worker = celery_run.worker()
    hard = celery_run.send("tests.exceeds_time_limit", "hard")
    killed = celery_run.send("tests.kills_its_process", "killed")
    retried = celery_run.send("tests.retried_then_killed", "retried")
    for task_id in (hard, killed, retried):
        celery_run.wait_items(_task_id_is(task_id))
    # the marker: a task that fails after the others; then stopping the worker flushes its
    # main process, so every event the kills caused there has arrived when it returns 0
    marker = celery_run.send("tests.fails", "marker")
    celery_run.wait_items(_task_id_is(marker))
    # a deadline, not a timing: after killed pool processes the warm shutdown is slow
    assert worker.stop(timeout=KILLED_SHUTDOWN) == 0, celery_run.output()

    events = celery_run.items(lambda e: True)
    by_task = {e.get("tags", {}).get(TAG_TASK_ID): e for e in events}
    summary = f"{len(events)} events: {[_summary(e) for e in events]}\n{celery_run.output()}"
    assert len(events) == 4, summary
    assert set(by_task) == {hard, killed, retried, marker}, summary
    for task_id, task_name, exc_type, how, retries in (
        (hard, "tests.exceeds_time_limit", "TimeLimitExceeded", "hard time limit (1 s)", "0"),
        (killed, "tests.kills_its_process", "WorkerLostError", "signal 9 (SIGKILL)", "0"),
        (retried, "tests.retried_then_killed", "WorkerLostError", "signal 9 (SIGKILL)", "1"),
    ):
        event = by_task[task_id]
        assert event["tags"][TAG_TASK_NAME] == task_name
        assert event["tags"][TAG_RETRIES] == retries
        assert event["level"] == "error"
        (exception,) = event["exception"]["values"]
        assert exception["type"] == exc_type
        assert how in exception["value"]
        assert exception["mechanism"] == {"type": "celery", "handled": False}
        assert event["fingerprint"] == [KILLED_FINGERPRINT, task_name, exc_type]
    # the worker's own line about the dead process is a breadcrumb of the task's event
    crumbs = by_task[killed]["breadcrumbs"]["values"]
    assert any("exited with 'signal 9 (SIGKILL)'" in (c.get("message") or "") for c in crumbs)


def test_a_soft_time_limit_is_one_event_from_the_task(celery_run: CeleryRun) -> None:
    # (its own worker: after two pool processes were killed, billiard's pool sometimes never
    # finishes the warm shutdown that this test needs to count)
    worker = celery_run.worker()
    soft = celery_run.send("tests.exceeds_soft_time_limit", "soft")
    celery_run.wait_items(_task_id_is(soft))
    assert worker.stop(timeout=KILLED_SHUTDOWN) == 0, celery_run.output()

    (event,) = celery_run.items(lambda e: True)
    assert event["tags"][TAG_TASK_ID] == soft
    assert event["tags"][TAG_TASK_NAME] == "tests.exceeds_soft_time_limit"
    assert event["tags"][TAG_RETRIES] == "0"
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "SoftTimeLimitExceeded"
    assert exception["stacktrace"]["frames"][-1]["function"] == "soft_timeout_sighandler"


def _summary(event: dict[str, Any]) -> str:
    values = (event.get("exception") or {}).get("values") or [{}]
    message = (event.get("logentry") or {}).get("message") or event.get("message")
    return f"{values[-1].get('type')}: {values[-1].get('value')!r} {message!r}"
