"""The helpers: what each one puts on the events sentry-sdk really produces, and that misuse,
threads and a missing client never raise into the caller."""

from __future__ import annotations

import asyncio
import inspect
import logging
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import sentry_sdk
import sentry_sdk.utils
from sentry_sdk.integrations.celery import CeleryIntegration

from fastapi_sentry import _helpers
from fastapi_sentry._helpers import (
    CONTEXT_NAME,
    MAX_STRING,
    NO_EXCEPTION_MESSAGE,
    Operation,
    capture_exception,
    capture_message,
    operation,
    trace,
    track_business_event,
    track_external_api_error,
    track_slow_operation,
)
from fastapi_sentry._pipeline import latest_event_id, remember_sent_event
from fastapi_sentry.testing import CapturedEnvelopes

DSN = "http://publickey@127.0.0.1:9/42"


class SwallowedLog(logging.Handler):
    """Keeps the records a helper's guard logged (they carry a traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def loud_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[SwallowedLog]:
    """Fail the test if a helper swallowed an exception: quiet in production, loud in tests."""
    handler = SwallowedLog()
    log = logging.getLogger("fastapi_sentry")
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
    swallowed = [r for r in handler.records if r.exc_info]
    if swallowed:
        pytest.fail("a helper swallowed an error: " + "; ".join(r.getMessage() for r in swallowed))


@pytest.fixture
def sent(sentry_events: CapturedEnvelopes) -> CapturedEnvelopes:
    """A live client whose envelopes stay in memory (conftest resets the SDK afterwards)."""
    sentry_sdk.init(dsn=DSN, traces_sample_rate=1.0, before_send=remember_sent_event)
    return sentry_events


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def crumbs(event: dict[str, Any], category: str) -> list[dict[str, Any]]:
    values = (event.get("breadcrumbs") or {}).get("values", [])
    return [c for c in values if c.get("category") == category]


def run_python_ok(script: str) -> None:
    """Run `script` in a fresh interpreter (this one imported sentry_sdk long ago); it prints ok."""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- off means free ---------------------------------------------------------------------------


def test_disabled_helpers_do_nothing_and_never_import_sentry_sdk() -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from fastapi_sentry import _helpers as h

        @h.trace
        def add(a, b):
            return a + b

        @h.trace(op="job")
        async def job():
            return "done"

        assert h.capture_exception(ValueError("x"), tags={"a": 1}, order=1) is None
        assert h.capture_message("hello", level="warning", order=1) is None
        assert h.track_slow_operation("q", 9000) is None
        assert h.track_external_api_error("s", "/e", 502, 3.0) is None
        assert h.track_business_event("signup", plan="pro") is None
        assert add(1, 2) == 3 and asyncio.run(job()) == "done"
        with h.trace(name="block") as span:
            assert span is None
        with h.operation("service.step", order=1) as op:
            pass
        assert op.duration_ms is not None
        try:
            with h.operation("service.fail"):
                raise KeyError("k")
        except KeyError:
            pass
        assert "sentry_sdk" not in sys.modules, "a disabled helper imported sentry_sdk"
        print("ok")
        """
    )
    run_python_ok(script)


def test_before_install_helpers_are_noops_without_errors(loud_guard: SwallowedLog) -> None:
    assert not sentry_sdk.get_client().is_active()
    assert capture_exception(ValueError("early"), order=1) is None
    assert capture_message("early") is None
    assert track_slow_operation("early", 5000, 10) is None
    assert track_external_api_error("svc", "/x", 500, 1.0) is None
    track_business_event("early")
    with trace(name="early") as span:
        assert span is None
    with operation("early"):
        pass
    assert loud_guard.records == []


# --- capture ----------------------------------------------------------------------------------


def test_capture_exception_puts_context_tags_and_level_on_that_event_only(
    sent: CapturedEnvelopes,
) -> None:
    try:
        raise ValueError("payment declined")
    except ValueError as exc:
        event_id = capture_exception(
            exc, level="warning", tags={"feature": "checkout"}, order_id=42, amount=10.5
        )
    later_id = capture_message("after")

    first, second = sent.events
    assert event_id == first["event_id"]
    assert first["exception"]["values"][-1]["type"] == "ValueError"
    assert first["level"] == "warning"
    assert first["tags"]["feature"] == "checkout"
    assert first["contexts"][CONTEXT_NAME] == {"order_id": 42, "amount": 10.5}
    # nothing leaked into the next event
    assert later_id == second["event_id"]
    assert "feature" not in second.get("tags", {})
    assert CONTEXT_NAME not in second.get("contexts", {})
    assert second["level"] == "info"
    assert latest_event_id() == later_id


def test_capture_exception_without_argument_reports_the_handled_exception(
    sent: CapturedEnvelopes,
) -> None:
    table: dict[str, int] = {}
    try:
        table["missing"]
    except KeyError:
        event_id = capture_exception(user_action="lookup")
    event = only(sent.errors)
    assert event["event_id"] == event_id
    assert event["exception"]["values"][-1]["type"] == "KeyError"
    assert event["contexts"][CONTEXT_NAME] == {"user_action": "lookup"}


def test_capture_exception_outside_except_sends_nothing_and_says_why(
    sent: CapturedEnvelopes, loud_guard: SwallowedLog
) -> None:
    assert capture_exception() is None
    assert sent.events == []
    assert [r.getMessage() for r in loud_guard.records] == [NO_EXCEPTION_MESSAGE]


def test_seed_004_context_dict_is_taken_as_the_context(sent: CapturedEnvelopes) -> None:
    capture_exception(RuntimeError("x"), context={"user_id": "u1", "item_id": 7})
    assert only(sent.errors)["contexts"][CONTEXT_NAME] == {"user_id": "u1", "item_id": 7}


def test_capture_message_level_and_context(sent: CapturedEnvelopes) -> None:
    event_id = capture_message("rate limit hit", level="warning", user_id=5, limit=100)
    event = only(sent.messages)
    assert event["event_id"] == event_id
    assert event["message"] == "rate limit hit"
    assert event["level"] == "warning"
    assert event["contexts"][CONTEXT_NAME] == {"user_id": 5, "limit": 100}


# --- misuse -----------------------------------------------------------------------------------


class Unshowable:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")

    __str__ = __repr__


def test_misuse_never_raises_and_the_event_still_arrives(
    sent: CapturedEnvelopes, loud_guard: SwallowedLog
) -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(3000):  # deeper than the recursion limit
        node["next"] = {}
        node = node["next"]
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    huge = "x" * 2_000_000

    event_id = capture_exception(
        ValueError("misused"),
        level="loud",  # type: ignore[arg-type]
        tags={"obj": Unshowable(), 3: "three"},  # type: ignore[dict-item]
        odd=Unshowable(),
        deep=deep,
        cyclic=cyclic,
        huge=huge,
        raw=b"\xff\xfe" * 10,
        many=list(range(10_000)),
    )

    event = only(sent.errors)
    assert event["event_id"] == event_id
    details = event["contexts"][CONTEXT_NAME]
    assert details["odd"] == "<Unshowable object that cannot be shown>"
    assert event["tags"]["obj"] == "<Unshowable object that cannot be shown>"
    assert event["tags"]["3"] == "three"
    assert len(details["huge"]) < MAX_STRING + 100
    assert details["huge"].endswith(f"[{2_000_000 - MAX_STRING} more characters]")
    assert len(details["many"]) == _helpers.MAX_ITEMS
    depth, node = 0, details["deep"]
    while isinstance(node, dict):
        node, depth = node["next"], depth + 1
    assert depth <= _helpers.MAX_DEPTH
    assert event["level"] == "error"  # the bad level was ignored, not fatal
    assert any("ignored level 'loud'" in r.getMessage() for r in loud_guard.records)


def test_helpers_near_the_recursion_limit_never_raise(
    sent: CapturedEnvelopes, loud_guard: SwallowedLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK hits the limit too and swallows it: expected here, anything else stays loud.
    record = sentry_sdk.utils.capture_internal_exception

    def allow_recursion_errors(exc_info: Any) -> None:
        if not isinstance(exc_info[1], RecursionError):
            record(exc_info)

    monkeypatch.setattr(sentry_sdk.utils, "capture_internal_exception", allow_recursion_errors)

    @trace
    def traced() -> str:
        return "ran"

    escaped: list[tuple[int, BaseException]] = []
    ran: list[int] = []

    def at_depth(frames_left: int) -> None:
        # Called with `frames_left` frames to spare before the recursion limit.
        try:
            capture_message("deep", depth=frames_left)
            track_business_event("deep")
            with operation("deep.op"):
                pass
            if traced() == "ran":
                ran.append(frames_left)
        except BaseException as exc:
            escaped.append((frames_left, exc))

    def dive(n: int, frames_left: int) -> None:
        if n == 0:
            at_depth(frames_left)
        else:
            dive(n - 1, frames_left)

    def room(n: int = 0) -> int:
        """How many more frames fit below this one."""
        try:
            return room(n + 1)
        except RecursionError:
            return n

    free = room()
    for frames_left in range(5, 120, 2):  # below 5, any call of two frames fails anyway
        dive(free - frames_left, frames_left)
    assert [(n, repr(e)) for n, e in escaped] == []
    assert ran  # the traced function itself ran wherever a call still could
    assert len(sent.messages) > 10  # and the events were sent wherever they still could be
    loud_guard.records.clear()  # the swallowed RecursionErrors are the point of this test


def test_a_non_exception_passed_as_exception_becomes_a_message(sent: CapturedEnvelopes) -> None:
    event_id = capture_exception("boom")  # type: ignore[arg-type]
    event = only(sent.messages)
    assert event["event_id"] == event_id
    assert event["message"].startswith("capture_exception() got a str, not an exception: boom")


def test_a_failing_sdk_call_is_swallowed_and_logged(
    sent: CapturedEnvelopes, monkeypatch: pytest.MonkeyPatch, loud_guard: SwallowedLog
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("sdk bug")

    monkeypatch.setattr(sentry_sdk, "capture_message", broken)
    assert capture_message("hello") is None  # no exception reached us
    swallowed = [r for r in loud_guard.records if r.exc_info]
    assert len(swallowed) == 1
    assert "could not send the event" in swallowed[0].getMessage()
    loud_guard.records.clear()  # expected here; the fixture would fail the test otherwise


def test_helpers_from_many_threads_keep_their_own_context(sent: CapturedEnvelopes) -> None:
    ids: dict[int, str | None] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            ids[n] = capture_message(f"from thread {n}", worker=n, tags=None)
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors
    assert not any(thread.is_alive() for thread in threads)
    by_id = {event["event_id"]: event for event in sent.messages}
    assert len(by_id) == 16
    for n, event_id in ids.items():
        event = by_id[event_id]
        assert event["message"] == f"from thread {n}"
        assert event["contexts"][CONTEXT_NAME] == {"worker": n}


# --- trace ------------------------------------------------------------------------------------


def plain(a: int, b: int = 2) -> int:
    """Adds."""
    return a + b


async def coro(name: str) -> str:
    await asyncio.sleep(0)
    return f"hi {name}"


def test_trace_forms_preserve_signatures() -> None:
    bare = trace(plain)
    empty = trace()(plain)
    with_op = trace(op="db")(plain)
    async_traced = trace(coro)
    typed: Callable[[int, int], int] = with_op  # a mypy check: ParamSpec kept the signature
    assert typed(1, 3) == 4
    for wrapped in (bare, empty, with_op):
        assert inspect.signature(wrapped) == inspect.signature(plain)
        assert wrapped.__name__ == "plain"
        assert wrapped.__doc__ == "Adds."
        assert wrapped(1, b=3) == 4
    assert inspect.iscoroutinefunction(async_traced)
    assert asyncio.run(async_traced("x")) == "hi x"


def test_trace_starts_a_transaction_when_none_is_active(sent: CapturedEnvelopes) -> None:
    @trace(op="task")
    def nightly() -> int:
        with trace(op="db", name="load rows"):
            pass
        return 7

    assert nightly() == 7
    transaction = only(sent.transactions)
    assert transaction["transaction"] == f"{__name__}.{nightly.__qualname__}"
    assert transaction["contexts"]["trace"]["op"] == "task"
    assert [(s["op"], s["description"]) for s in transaction["spans"]] == [("db", "load rows")]


def test_trace_inside_a_transaction_adds_child_spans(sent: CapturedEnvelopes) -> None:
    @trace
    async def fetch() -> str:
        return "data"

    async def handler() -> str:
        with sentry_sdk.start_transaction(op="http.server", name="GET /x"):
            return await fetch()

    assert asyncio.run(handler()) == "data"
    transaction = only(sent.transactions)
    assert transaction["transaction"] == "GET /x"
    (span,) = transaction["spans"]
    assert span["op"] == "function"
    assert span["description"].endswith("fetch")
    assert span["parent_span_id"] == transaction["contexts"]["trace"]["span_id"]


def test_trace_lets_errors_through_and_marks_the_span_failed(sent: CapturedEnvelopes) -> None:
    @trace(name="fails")
    def fails() -> None:
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        fails()
    transaction = only(sent.transactions)
    assert transaction["contexts"]["trace"]["status"] == "internal_error"
    assert sent.errors == []  # timing only: reporting is the integrations' job


def test_trace_leaves_generator_functions_alone(loud_guard: SwallowedLog) -> None:
    def numbers() -> Iterator[int]:
        yield 1

    assert trace(numbers) is numbers
    assert "left" in loud_guard.records[0].getMessage()


# --- tracking ---------------------------------------------------------------------------------


def test_business_event_is_a_breadcrumb_on_the_next_error_without_tags(
    sent: CapturedEnvelopes,
) -> None:
    track_business_event("order.placed", order_id=9, total=99.5)
    assert sent.events == []  # a breadcrumb, not an event
    capture_exception(RuntimeError("later failure"))
    event = only(sent.errors)
    (crumb,) = crumbs(event, "business")
    assert crumb["message"] == "order.placed"
    assert crumb["data"] == {"order_id": 9, "total": 99.5}
    assert "event_type" not in event.get("tags", {})


def test_slow_operation_warns_above_threshold_only_and_tags_do_not_leak(
    sent: CapturedEnvelopes,
) -> None:
    assert track_slow_operation("report.build", 900, threshold_ms=1000) is None
    assert sent.events == []
    event_id = track_slow_operation("report.build", 2500, threshold_ms=1000)
    capture_message("unrelated")

    slow, unrelated = sent.messages
    assert slow["event_id"] == event_id
    assert slow["level"] == "warning"
    assert slow["message"] == "Slow operation: report.build took 2500 ms (threshold 1000 ms)"
    assert slow["fingerprint"] == ["slow-operation", "report.build"]
    assert slow["tags"]["performance_issue"] == "true"
    assert slow["contexts"]["performance"] == {
        "operation": "report.build",
        "duration_ms": 2500.0,
        "threshold_ms": 1000.0,
        "slowdown_factor": 2.5,
    }
    assert "performance_issue" not in unrelated.get("tags", {})
    assert "performance" not in unrelated.get("contexts", {})
    assert "fingerprint" not in unrelated


def test_external_api_error_event_and_no_secrets_from_the_url(sent: CapturedEnvelopes) -> None:
    endpoint = "https://user:hunter2@api.example.com:8443/v1/charge?token=abc123#frag"
    event_id = track_external_api_error("payments", endpoint, 503, 812.5)
    event = only(sent.messages)
    assert event["event_id"] == event_id
    assert event["level"] == "error"
    safe = "https://api.example.com:8443/v1/charge"
    assert event["message"] == f"External API error: payments {safe} returned 503"
    assert event["tags"]["external_service"] == "payments"
    assert event["tags"]["external_status"] == "503"
    assert event["contexts"]["external_api"] == {
        "service": "payments",
        "endpoint": safe,
        "status_code": 503,
        "response_time_ms": 812.5,
    }
    assert event["fingerprint"] == ["external-api-error", "payments", safe, "503"]
    for secret in ("hunter2", "abc123", "frag"):
        assert secret not in str(event)


# --- operation --------------------------------------------------------------------------------


def test_operation_success_leaves_a_breadcrumb_and_no_event(sent: CapturedEnvelopes) -> None:
    with operation("UserService.create", user_id=3) as op:
        op.set(created=True)
    assert isinstance(op, Operation)
    assert op.duration_ms is not None
    assert sent.events == []
    capture_message("next")
    (crumb,) = crumbs(only(sent.messages), "service")
    assert crumb["message"] == "UserService.create completed"
    assert crumb["data"]["user_id"] == 3
    assert crumb["data"]["created"] is True
    assert crumb["data"]["duration_ms"] == pytest.approx(op.duration_ms, abs=0.01)


def test_slow_operation_sends_a_warning(sent: CapturedEnvelopes) -> None:
    with operation("Report.render", threshold_ms=20, report=1):
        time.sleep(0.05)
    slow = only(sent.messages)
    assert slow["level"] == "warning"
    assert slow["fingerprint"] == ["slow-operation", "Report.render"]
    assert slow["contexts"]["performance"]["report"] == 1
    assert slow["contexts"]["performance"]["duration_ms"] >= 50


def test_operation_error_is_captured_once_with_context_and_reraised(
    sent: CapturedEnvelopes,
) -> None:
    error = ValueError("bad input")
    with (
        pytest.raises(ValueError, match="bad input") as raised,
        operation("Billing.charge", invoice=12),
    ):
        raise error
    assert raised.value is error  # the very same exception, unchanged
    event = only(sent.errors)
    assert event["tags"]["operation"] == "Billing.charge"
    context = event["contexts"]["operation"]
    assert context["name"] == "Billing.charge"
    assert context["invoice"] == 12
    assert context["duration_ms"] >= 0
    # reporting it again (as a framework would, with the re-raised error) sends nothing more
    assert sentry_sdk.capture_exception(error) is None
    assert len(sent.errors) == 1


def test_operation_adds_a_child_span_inside_a_transaction(sent: CapturedEnvelopes) -> None:
    with sentry_sdk.start_transaction(op="task", name="job"), operation("Step.one"):
        pass
    (span,) = only(sent.transactions)["spans"]
    assert span["description"] == "Step.one"


def test_operation_does_not_report_cancellation(sent: CapturedEnvelopes) -> None:
    async def cancelled() -> None:
        with operation("Waiter.wait"):
            await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(cancelled())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert sent.events == []


# --- inside a Celery task ---------------------------------------------------------------------


@pytest.mark.services
def test_helpers_inside_a_celery_task_on_a_real_worker(
    sent: CapturedEnvelopes, redis_url: str
) -> None:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    queue = f"fastapi-sentry-helpers-{uuid.uuid4().hex}"
    app = Celery("helpers_test", broker=redis_url, set_as_current=False)
    app.conf.update(task_default_queue=queue, worker_hijack_root_logger=False)
    # The integration hooks the worker's tracer: it must be set up before the worker starts.
    sentry_sdk.init(
        dsn=DSN,
        traces_sample_rate=1.0,
        before_send=remember_sent_event,
        integrations=[CeleryIntegration()],
    )

    @app.task(name="audit.scan", shared=False)
    def scan(audit_id: str) -> None:
        track_business_event("scan.started", audit_id=audit_id)
        try:
            int("not a number")
        except ValueError:
            capture_exception(audit_id=audit_id, step="parse")
        with operation("Scanner.fetch", audit_id=audit_id):
            raise ConnectionError("site unreachable")

    @app.task(name="audit.done", shared=False)
    def done() -> None:
        sentry_sdk.capture_message("audit.done")

    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            scan.delay("a-1")
            # the solo pool runs one task at a time: a third (duplicate) report of the scan's
            # failure, made while the scan ends, is captured before the marker task starts
            done.delay()
            wait_for_events(sent, errors=2, timeout=20)
            wait_until(lambda: "audit.done" in [m.get("message") for m in sent.messages], 20)
    finally:
        with redis.Redis.from_url(redis_url) as client:
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    handled, failed = sent.errors
    assert handled["contexts"][CONTEXT_NAME] == {"audit_id": "a-1", "step": "parse"}
    assert handled["exception"]["values"][-1]["type"] == "ValueError"
    assert failed["exception"]["values"][-1]["type"] == "ConnectionError"
    assert failed["contexts"]["operation"]["audit_id"] == "a-1"
    assert failed["transaction"] == "audit.scan"  # inside the integration's task transaction
    assert [c["message"] for c in crumbs(failed, "business")] == ["scan.started"]
    assert len(sent.errors) == 2  # the integration's own report of the task failure was dropped


def wait_for_events(sent: CapturedEnvelopes, *, errors: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(sent.errors) < errors:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(sent.errors)} of {errors} error events within {timeout} s")
        time.sleep(0.05)


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(0.05)
