"""Sentry down, hanging, slow, failing or rate-limiting must not hurt the service it monitors.

One real service (uvicorn in its own process, Sentry configured by `install` from `SENTRY_*`)
runs under load from a third process while the receiver cycles through its faults. The tests
keep the behavioural guarantees: no failed request, bounded memory, the configured queue cap,
honoured rate limits, recovery. What a fault costs in latency and CPU is a figure, not a
pass/fail line: `benchmarks/bench_faults.py` measures it (the p99 ratios) and writes it down.

The service runs with the outbox off (`SENTRY_SPOOL_MAX_EVENTS=0`) where these tests measure the
breaker and the queue caps: with it on, errors a fault kept are rightly sent before an event
captured after the recovery, and the backlog is the outbox's, not the queue's. What the outbox
keeps and delivers is proven in `tests/fastpath/test_delivery.py`; that its bytes bound holds
memory flat while Sentry hangs is proven below.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fault_support import (
    FAULT_MODES,
    FaultReceiver,
    LoadGenerator,
    Service,
    memory_kb,
    running_service,
    service_env,
)

pytestmark = pytest.mark.slow

QUEUE_SIZE = 50  # not the default (100): proves the setting reaches the SDK
REQUESTS = 400  # per load run (one per fault), half of them capture an error: 4x the queue
CONCURRENCY = 4
MEMORY_BOUND_KB = 30 * 1024
SHORT_RETRY_AFTER = 2  # seconds; the rate limit per fault, so recovery can be seen
LONG_RETRY_AFTER = 60
LARGE_QUEUE_SIZE = 20_000
QUEUE_MEMORY_EVENTS = 3000
OUTBOX_MB = 2  # the outbox's bound in the memory test: far less than 3,000 errors take


# What `X-Sentry-Rate-Limits: N:error;transaction:key` limits: envelopes carrying these items.
# Others (profile chunks, client reports) are rightly still sent, and are counted apart.
LIMITED_ITEMS = {"event", "transaction"}


def capture_marker(service: Service, marker: str) -> None:
    response = httpx.get(f"{service.url}/capture", params={"marker": marker}, timeout=10)
    assert response.status_code == 200, response.text


def flush_service(service: Service, timeout: float = 30.0) -> None:
    """The service's SDK sends (or drops) all it holds: what the receiver has after is final."""
    response = httpx.get(f"{service.url}/flush", params={"timeout": timeout}, timeout=timeout + 10)
    assert response.status_code == 200, response.text


def recovery_seconds(
    service: Service, receiver: FaultReceiver, mode: str, since: float, timeout: float = 20.0
) -> float:
    """Seconds from `since` (the recovery) until an event captured after it reaches the receiver.

    One new event every 0.25 s: events captured while the SDK's queue still holds the fault's
    backlog, or while a rate limit lasts, are rightly dropped, so the first one after is what
    counts.
    """
    prefix = f"recovered-{mode}-{uuid.uuid4().hex}"
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < timeout:
        capture_marker(service, f"{prefix}-{sent}")
        sent += 1
        with contextlib.suppress(TimeoutError):
            receiver.wait_for_text(prefix, timeout=0.25)
            return time.monotonic() - since
    raise TimeoutError(f"none of {sent} events captured after recovery from {mode} arrived")


def test_receiver_faults_leave_the_service_working_bounded_and_recovering(tmp_path: Path) -> None:
    problems: list[str] = []
    with FaultReceiver() as receiver:
        env = service_env(receiver.dsn, QUEUE_SIZE, outbox_events=0)
        with (
            running_service(env, tmp_path / "service.log") as service,
            LoadGenerator() as load,
        ):
            urls = [f"{service.url}/capture", f"{service.url}/plain"]
            load.run(urls, 300, CONCURRENCY)  # warm-up: imports, pools, first envelopes
            baseline_kb = memory_kb(service.pid)

            for mode in FAULT_MODES:
                receiver.set_mode(mode, retry_after=SHORT_RETRY_AFTER)
                started = time.monotonic()
                result = load.run(urls, REQUESTS, CONCURRENCY)
                limited = receiver.count_carrying(LIMITED_ITEMS, "ratelimit", since=started)
                rss_kb = memory_kb(service.pid)

                switched = time.monotonic()
                receiver.set_mode("healthy")
                if mode == "slow":
                    # The two queues (errors, the rest) held up to QUEUE_SIZE envelopes each
                    # behind the one in flight (answered 200 after slow_seconds, so no error path
                    # can drop them); the flush waits for that one and sends them, so what arrived
                    # since the switch is the backlog. Errors are half the load: their queue fills.
                    flush_service(service)
                    backlog = receiver.count(since=switched)
                    print(f"\nbacklog sent after the slow phase: {backlog} (queues {QUEUE_SIZE})")
                    if not QUEUE_SIZE - 5 <= backlog <= 2 * QUEUE_SIZE + 3:
                        problems.append(
                            f"after the slow phase the SDK sent a backlog of {backlog} requests; "
                            f"SENTRY_TRANSPORT_QUEUE_SIZE={QUEUE_SIZE} per queue should cap it"
                        )
                try:
                    recovered = recovery_seconds(service, receiver, mode, switched)
                    print(f"{mode}: recovered in {recovered:.1f} s")
                except TimeoutError as exc:
                    problems.append(f"{mode}: no recovery: {exc}")

                if result.failed:
                    problems.append(
                        f"{mode}: {result.failed} service requests failed "
                        f"(statuses {result.statuses}, errors {result.errors[:3]})"
                    )
                if rss_kb - baseline_kb > MEMORY_BOUND_KB:
                    problems.append(
                        f"{mode}: RSS grew {(rss_kb - baseline_kb) / 1024:.1f} MB "
                        f"(limit {MEMORY_BOUND_KB / 1024:.0f} MB)"
                    )
                if mode == "ratelimit":
                    allowed = result.seconds / SHORT_RETRY_AFTER + 2
                    if limited > allowed:
                        problems.append(
                            f"ratelimit: {limited} error/transaction requests in "
                            f"{result.seconds:.1f} s under Retry-After "
                            f"{SHORT_RETRY_AFTER} (at most {allowed:.0f})"
                        )

            # A long rate limit is honoured for its whole length: a few requests, then silence.
            started = time.monotonic()
            receiver.set_mode("ratelimit", retry_after=LONG_RETRY_AFTER)
            long_limited = load.run(urls, REQUESTS, CONCURRENCY)
            flush_service(service)  # what the SDK still held is sent or dropped by now
            under_limit = receiver.count_carrying(LIMITED_ITEMS, "ratelimit", since=started)
            under_limit_all = receiver.count("ratelimit", since=started)
            receiver.set_mode("healthy")
            marker = f"inside-the-limit-{uuid.uuid4().hex}"
            capture_marker(service, marker)
            flush_service(service)  # the marker is sent or dropped by now
            if under_limit > 2:
                problems.append(
                    f"ratelimit {LONG_RETRY_AFTER} s: the receiver saw {under_limit} requests "
                    f"carrying errors or transactions for {REQUESTS // 2} errors (a retry "
                    "storm; at most 2 expected: the one answered 429 and one in flight)"
                )
            if marker in receiver.delivered_text(since=started):
                problems.append(
                    f"ratelimit {LONG_RETRY_AFTER} s: an event was sent inside the window"
                )
            if long_limited.failed:
                problems.append(f"ratelimit {LONG_RETRY_AFTER} s: service requests failed")
            final_kb = memory_kb(service.pid)
        log = (tmp_path / "service.log").read_text(errors="replace")

    print(f"\nbaseline RSS {baseline_kb / 1024:.1f} MB, final {final_kb / 1024:.1f} MB")
    print(
        f"ratelimit {LONG_RETRY_AFTER} s: {under_limit} error/transaction requests "
        f"({under_limit_all} in all) for {REQUESTS // 2} errors in {long_limited.seconds:.1f} s"
    )
    if "Traceback" in log:
        problems.append("the service logged a traceback:\n" + log[-3000:])
    assert not problems, "\n".join(problems)


def test_the_queue_cap_is_what_bounds_memory_while_sentry_hangs(tmp_path: Path) -> None:
    """With the receiver hanging, a small queue keeps memory flat and a large one lets it grow:
    the cap (SENTRY_TRANSPORT_QUEUE_SIZE) is the bound, not luck. With the outbox on, the errors
    the full queue cannot take go to the outbox, and SENTRY_SPOOL_MAX_MB is their bound."""
    growth_kb: dict[str, int] = {}
    runs = {
        f"queue {QUEUE_SIZE}": (QUEUE_SIZE, "0", "20"),
        f"queue {LARGE_QUEUE_SIZE}": (LARGE_QUEUE_SIZE, "0", "20"),
        f"queue {QUEUE_SIZE}, outbox {OUTBOX_MB} MB": (QUEUE_SIZE, "100000", str(OUTBOX_MB)),
    }
    for name, (size, outbox_events, outbox_mb) in runs.items():
        with FaultReceiver() as receiver:
            receiver.set_mode("blackhole")
            env = {
                "SENTRY_DSN": receiver.dsn,
                "SENTRY_ENVIRONMENT": "production",
                "SENTRY_ENABLE_TRACING": "false",
                "SENTRY_TRANSPORT_QUEUE_SIZE": str(size),
                "SENTRY_SPOOL_MAX_EVENTS": outbox_events,
                "SENTRY_SPOOL_MAX_MB": outbox_mb,
            }
            with (
                running_service(env, tmp_path / f"service-{len(growth_kb)}.log") as service,
                LoadGenerator() as load,
            ):
                urls = [f"{service.url}/capture"]
                load.run(urls, 200, CONCURRENCY)  # warm-up; fills the small queue already
                before = memory_kb(service.pid)
                result = load.run(urls, QUEUE_MEMORY_EVENTS, CONCURRENCY)
                growth_kb[name] = memory_kb(service.pid) - before
            assert result.failed == 0, result.statuses
    print(
        f"\nRSS growth over {QUEUE_MEMORY_EVENTS} errors with the receiver hanging: "
        + ", ".join(f"{name}: {kb / 1024:+.1f} MB" for name, kb in growth_kb.items())
    )
    small, large, outbox = growth_kb.values()
    assert small < 5 * 1024
    assert large > small + 10 * 1024
    assert outbox < (OUTBOX_MB + 5) * 1024
