"""Sentry down, hanging, slow, failing or rate-limiting must not hurt the service it monitors.

One real service (uvicorn in its own process, Sentry configured by `install` from `SENTRY_*`)
runs under steady load from a third process while the receiver cycles through its faults. Each
fault is measured in rounds interleaved with healthy rounds, and the medians are compared, so that
a burst of load from something else on the machine hits both sides rather than one.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.fault_support import (
    FAULT_MODES,
    FaultReceiver,
    LoadGenerator,
    LoadResult,
    Mode,
    Service,
    cpu_seconds,
    memory_kb,
    percentile,
    running_service,
)

pytestmark = pytest.mark.slow

QUEUE_SIZE = 50  # not the default (100): proves the setting reaches the SDK
REQUESTS = 400  # per round, half of them capture an error
CONCURRENCY = 4
ROUNDS = 7
# p99 of one 400-request round is its 4th-slowest request, so a burst from another tenant of this
# 2-core machine can move a median of 7 ratios past the limit (seen in two full-suite runs). A mode
# over the limit gets more rounds, up to this many, and is judged on all of them: a real cost of a
# fault (a refusing receiver without the circuit breaker: ~1.6x) stays over the limit however many
# rounds are run; a burst does not.
MAX_ROUNDS = 15
P99_RATIO = 1.2
MEMORY_BOUND_KB = 30 * 1024
SHORT_RETRY_AFTER = 2  # seconds; the rate limit in the rounds, so recovery can be seen
LONG_RETRY_AFTER = 60
LARGE_QUEUE_SIZE = 20_000
QUEUE_MEMORY_EVENTS = 3000


# What `X-Sentry-Rate-Limits: N:error;transaction:key` limits: envelopes carrying these items.
# Others (profile chunks, client reports) are rightly still sent, and are counted apart.
LIMITED_ITEMS = {"event", "transaction"}


@dataclass
class Block:
    result: LoadResult
    cpu_per_request: float
    receiver_requests: int
    limited_requests: int


@dataclass
class FaultFigures:
    mode: Mode
    healthy: list[Block] = field(default_factory=list)
    faulty: list[Block] = field(default_factory=list)
    rss_kb: int = 0
    recovery_seconds: float = 0.0

    @staticmethod
    def _p99(blocks: list[Block]) -> float:
        return statistics.median(b.result.p(0.99) for b in blocks)

    @property
    def pooled_ratio(self) -> float:
        """p99 of every fault-round request over p99 of every healthy-round request."""
        healthy = [x for b in self.healthy for x in b.result.latencies]
        faulty = [x for b in self.faulty for x in b.result.latencies]
        return percentile(faulty, 0.99) / percentile(healthy, 0.99)

    @property
    def ratio(self) -> float:
        """Median over rounds of p99(fault) / p99(the healthy round just before it)."""
        return statistics.median(
            f.result.p(0.99) / h.result.p(0.99)
            for h, f in zip(self.healthy, self.faulty, strict=True)
        )

    @staticmethod
    def _cpu(blocks: list[Block]) -> float:
        return statistics.median(b.cpu_per_request for b in blocks)

    def row(self) -> str:
        return (
            f"{self.mode:<10} {self._p99(self.healthy) * 1000:>8.1f} "
            f"{self._p99(self.faulty) * 1000:>8.1f} {self.ratio:>6.2f} {self.pooled_ratio:>6.2f} "
            f"{self._cpu(self.healthy) * 1e6:>9.0f} {self._cpu(self.faulty) * 1e6:>9.0f} "
            f"{self.rss_kb / 1024:>7.1f} "
            f"{max(b.receiver_requests for b in self.faulty):>9} "
            f"{max(b.limited_requests for b in self.faulty):>9} {self.recovery_seconds:>8.1f} "
            f"{len(self.faulty):>6}"
        )


HEADER = (
    f"{'fault':<10} {'p99 ok':>8} {'p99 bad':>8} {'ratio':>6} {'pooled':>6} "
    f"{'cpu/r ok':>9} {'cpu/r bad':>9} "
    f"{'RSS MB':>7} {'rx reqs':>9} {'429-able':>9} {'recov s':>8} {'rounds':>6}\n"
    f"{'':<10} {'(ms)':>8} {'(ms)':>8} {'':>6} {'':>6} {'(µs)':>9} {'(µs)':>9}"
)


def block(service: Service, receiver: FaultReceiver, load: LoadGenerator, urls: list[str]) -> Block:
    started = time.monotonic()
    cpu_before = cpu_seconds(service.pid)
    result = load.run(urls, REQUESTS, CONCURRENCY)
    cpu = cpu_seconds(service.pid) - cpu_before
    limited = receiver.count_carrying(LIMITED_ITEMS, "ratelimit", since=started)
    return Block(result, cpu / REQUESTS, receiver.count(since=started), limited)


def capture_marker(service: Service, marker: str) -> None:
    response = httpx.get(f"{service.url}/capture", params={"marker": marker}, timeout=10)
    assert response.status_code == 200, response.text


def recovery_seconds(
    service: Service, receiver: FaultReceiver, mode: str, since: float, timeout: float = 20.0
) -> float:
    """Seconds from `since` (the recovery) until an event captured after it reaches the receiver.

    One new event every 0.25 s: events captured while the SDK's queue still holds the fault's
    backlog are rightly dropped, so the first one after the drain is what counts.
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


def quiet_count(receiver: FaultReceiver, since: float, quiet: float = 1.0) -> int:
    """Requests seen since `since`, once none has arrived for `quiet` seconds (at most 15 s)."""
    deadline = time.monotonic() + 15
    last = -1
    while time.monotonic() < deadline:
        now = receiver.count(since=since)
        if now == last:
            return now
        last = now
        time.sleep(quiet)
    return receiver.count(since=since)


def test_receiver_faults_leave_the_service_fast_bounded_and_recovering(tmp_path: Path) -> None:
    problems: list[str] = []
    figures: list[FaultFigures] = []
    with FaultReceiver() as receiver:
        env = {
            "SENTRY_DSN": receiver.dsn,
            "SENTRY_ENVIRONMENT": "production",
            "SENTRY_TRANSPORT_QUEUE_SIZE": str(QUEUE_SIZE),
        }
        with (
            running_service(env, tmp_path / "service.log") as service,
            LoadGenerator() as load,
        ):
            urls = [f"{service.url}/capture", f"{service.url}/plain"]
            load.run(urls, 300, CONCURRENCY)  # warm-up: imports, pools, first envelopes
            baseline_kb = memory_kb(service.pid)

            for mode in FAULT_MODES:
                fig = FaultFigures(mode)
                figures.append(fig)
                round_ = 0
                while round_ < ROUNDS or (fig.ratio > P99_RATIO and round_ < MAX_ROUNDS):
                    # alternate which comes first, so that neither side always runs second
                    sides = [("healthy", fig.healthy), (mode, fig.faulty)]
                    for side, blocks in sides if round_ % 2 == 0 else sides[::-1]:
                        receiver.set_mode(side, retry_after=SHORT_RETRY_AFTER)
                        blocks.append(block(service, receiver, load, urls))
                    round_ += 1
                fig.rss_kb = memory_kb(service.pid)

                switched = time.monotonic()
                receiver.set_mode("healthy")
                if mode == "slow":
                    # The queue held QUEUE_SIZE envelopes behind the one in flight (answered 200
                    # after slow_seconds, so no error path can drop them); they go out now.
                    time.sleep(receiver.slow_seconds)
                    backlog = quiet_count(receiver, switched)
                    print(f"\nbacklog sent after the slow phase: {backlog} (queue {QUEUE_SIZE})")
                    if not QUEUE_SIZE - 5 <= backlog <= QUEUE_SIZE + 3:
                        problems.append(
                            f"after the slow phase the SDK sent a backlog of {backlog} requests; "
                            f"SENTRY_TRANSPORT_QUEUE_SIZE={QUEUE_SIZE} should cap it there"
                        )
                if mode == "ratelimit":
                    time.sleep(SHORT_RETRY_AFTER + 0.5)  # the SDK rightly drops until then
                try:
                    fig.recovery_seconds = recovery_seconds(service, receiver, mode, switched)
                except TimeoutError as exc:
                    problems.append(f"{mode}: no recovery: {exc}")

                for b in fig.healthy + fig.faulty:
                    if b.result.failed:
                        problems.append(
                            f"{mode}: {b.result.failed} service requests failed "
                            f"(statuses {b.result.statuses}, errors {b.result.errors[:3]})"
                        )
                if fig.ratio > P99_RATIO:
                    problems.append(
                        f"{mode}: p99 {fig.ratio:.2f}x the healthy rounds' over "
                        f"{len(fig.faulty)} rounds (limit {P99_RATIO}x)"
                    )
                if fig.rss_kb - baseline_kb > MEMORY_BOUND_KB:
                    problems.append(
                        f"{mode}: RSS grew {(fig.rss_kb - baseline_kb) / 1024:.1f} MB "
                        f"(limit {MEMORY_BOUND_KB / 1024:.0f} MB)"
                    )
                if mode == "ratelimit":
                    for b in fig.faulty:
                        allowed = b.result.seconds / SHORT_RETRY_AFTER + 2
                        if b.limited_requests > allowed:
                            problems.append(
                                f"ratelimit: {b.limited_requests} error/transaction requests in "
                                f"{b.result.seconds:.1f} s under Retry-After "
                                f"{SHORT_RETRY_AFTER} (at most {allowed:.0f})"
                            )

            # A long rate limit is honoured for its whole length: a few requests, then silence.
            started = time.monotonic()
            receiver.set_mode("ratelimit", retry_after=LONG_RETRY_AFTER)
            long_limited = load.run(urls, REQUESTS, CONCURRENCY)
            under_limit = receiver.count_carrying(LIMITED_ITEMS, "ratelimit", since=started)
            under_limit_all = receiver.count("ratelimit", since=started)
            receiver.set_mode("healthy")
            marker = f"inside-the-limit-{uuid.uuid4().hex}"
            capture_marker(service, marker)
            time.sleep(3)
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
    print(HEADER)
    for fig in figures:
        print(fig.row())
    print(
        f"ratelimit {LONG_RETRY_AFTER} s: {under_limit} error/transaction requests "
        f"({under_limit_all} in all) for {REQUESTS // 2} errors in {long_limited.seconds:.1f} s"
    )
    if "Traceback" in log:
        problems.append("the service logged a traceback:\n" + log[-3000:])
    assert not problems, "\n".join(problems)


def test_the_queue_cap_is_what_bounds_memory_while_sentry_hangs(tmp_path: Path) -> None:
    """With the receiver hanging, a small queue keeps memory flat and a large one lets it grow:
    the cap (SENTRY_TRANSPORT_QUEUE_SIZE) is the bound, not luck."""
    growth_kb: dict[int, int] = {}
    for size in (QUEUE_SIZE, LARGE_QUEUE_SIZE):
        with FaultReceiver() as receiver:
            receiver.set_mode("blackhole")
            env = {
                "SENTRY_DSN": receiver.dsn,
                "SENTRY_ENVIRONMENT": "production",
                "SENTRY_ENABLE_TRACING": "false",
                "SENTRY_TRANSPORT_QUEUE_SIZE": str(size),
            }
            with (
                running_service(env, tmp_path / f"service-{size}.log") as service,
                LoadGenerator() as load,
            ):
                urls = [f"{service.url}/capture"]
                load.run(urls, 200, CONCURRENCY)  # warm-up; fills the small queue already
                before = memory_kb(service.pid)
                result = load.run(urls, QUEUE_MEMORY_EVENTS, CONCURRENCY)
                growth_kb[size] = memory_kb(service.pid) - before
            assert result.failed == 0, result.statuses
    print(
        f"\nRSS growth over {QUEUE_MEMORY_EVENTS} errors with the receiver hanging: "
        + ", ".join(f"queue {size}: {kb / 1024:+.1f} MB" for size, kb in growth_kb.items())
    )
    assert growth_kb[QUEUE_SIZE] < 5 * 1024
    assert growth_kb[LARGE_QUEUE_SIZE] > growth_kb[QUEUE_SIZE] + 10 * 1024
