"""What a failing Sentry costs the service it monitors: p99 latency and CPU per request, by fault.

    .venv/bin/python benchmarks/bench_faults.py [--rounds 7] [--max-rounds 15] [--requests 400]

One real service (uvicorn in its own process, Sentry configured by `install` from `SENTRY_*`, as
in `tests/test_faults_receiver.py`, which keeps the behavioural guarantees) runs under steady load
from a third process while the receiver cycles through its faults. Each fault is measured in
rounds interleaved with healthy rounds and the medians are compared, so that a burst of load from
something else on the machine hits both sides rather than one. p99 of a 400-request round is its
4th-slowest request, so a mode whose ratio is over `--limit` gets more rounds, up to
`--max-rounds`, and is judged on all of them: a real cost (a refusing receiver without the
transport's circuit breaker: about 1.6x) stays over the limit however many rounds run; a burst
does not. Peak RSS of the service (VmHWM) sits beside every figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
    service_env,
)

import result_file

QUEUE_SIZE = 50
CONCURRENCY = 4
SHORT_RETRY_AFTER = 2


@dataclass
class Block:
    result: LoadResult
    cpu_per_request: float


@dataclass
class FaultFigures:
    mode: Mode
    healthy: list[Block] = field(default_factory=list)
    faulty: list[Block] = field(default_factory=list)
    rss_kb: int = 0
    peak_rss_kb: int = 0

    @staticmethod
    def p99(blocks: list[Block]) -> float:
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
    def cpu(blocks: list[Block]) -> float:
        return statistics.median(b.cpu_per_request for b in blocks)

    def row(self) -> str:
        return (
            f"{self.mode:<10} {self.p99(self.healthy) * 1000:>8.1f} "
            f"{self.p99(self.faulty) * 1000:>8.1f} {self.ratio:>6.2f} {self.pooled_ratio:>6.2f} "
            f"{self.cpu(self.healthy) * 1e6:>9.0f} {self.cpu(self.faulty) * 1e6:>9.0f} "
            f"{self.rss_kb / 1024:>7.1f} {self.peak_rss_kb / 1024:>8.1f} {len(self.faulty):>6}"
        )

    def figures(self) -> dict[str, Any]:
        return {
            "p99_healthy_ms": round(self.p99(self.healthy) * 1000, 2),
            "p99_fault_ms": round(self.p99(self.faulty) * 1000, 2),
            "p99_ratio": round(self.ratio, 3),
            "p99_pooled_ratio": round(self.pooled_ratio, 3),
            "cpu_us_per_request_healthy": round(self.cpu(self.healthy) * 1e6, 1),
            "cpu_us_per_request_fault": round(self.cpu(self.faulty) * 1e6, 1),
            "rss_mb": round(self.rss_kb / 1024, 1),
            "peak_rss_mb": round(self.peak_rss_kb / 1024, 1),
            "rounds": len(self.faulty),
        }


HEADER = (
    f"{'fault':<10} {'p99 ok':>8} {'p99 bad':>8} {'ratio':>6} {'pooled':>6} "
    f"{'cpu/r ok':>9} {'cpu/r bad':>9} {'RSS MB':>7} {'peak MB':>8} {'rounds':>6}\n"
    f"{'':<10} {'(ms)':>8} {'(ms)':>8} {'':>6} {'':>6} {'(µs)':>9} {'(µs)':>9}"
)


def block(service: Service, load: LoadGenerator, urls: list[str], requests: int) -> Block:
    cpu_before = cpu_seconds(service.pid)
    result = load.run(urls, requests, CONCURRENCY)
    return Block(result, (cpu_seconds(service.pid) - cpu_before) / requests)


def measure(args: argparse.Namespace, modes: list[Mode], log: Path) -> list[FaultFigures]:
    figures: list[FaultFigures] = []
    with FaultReceiver() as receiver:
        env = service_env(receiver.dsn, QUEUE_SIZE)
        with running_service(env, log) as service, LoadGenerator() as load:
            urls = [f"{service.url}/capture", f"{service.url}/plain"]
            load.run(urls, 300, CONCURRENCY)  # warm-up: imports, pools, first envelopes
            for mode in modes:
                fig = FaultFigures(mode)
                figures.append(fig)
                round_ = 0
                while round_ < args.rounds or (fig.ratio > args.limit and round_ < args.max_rounds):
                    # alternate which comes first, so that neither side always runs second
                    sides = [("healthy", fig.healthy), (mode, fig.faulty)]
                    for side, blocks in sides if round_ % 2 == 0 else sides[::-1]:
                        receiver.set_mode(side, retry_after=SHORT_RETRY_AFTER)
                        blocks.append(block(service, load, urls, args.requests))
                    round_ += 1
                fig.rss_kb = memory_kb(service.pid)
                fig.peak_rss_kb = memory_kb(service.pid, "VmHWM")
                receiver.set_mode("healthy")
                print(fig.row(), flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--max-rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=400, help="per round, half capture")
    parser.add_argument("--limit", type=float, default=1.2, help="p99 ratio that earns rounds")
    parser.add_argument("--modes", default=",".join(FAULT_MODES))
    args = parser.parse_args()
    modes: list[Mode] = []
    for name in args.modes.split(","):
        if name not in FAULT_MODES:
            parser.error(f"unknown fault {name!r}; choose from {', '.join(FAULT_MODES)}")
        modes.append(name)
    load_before = result_file.machine()
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(args, modes, Path(tmp) / "service.log")
    result_file.write(
        "faults",
        {fig.mode: fig.figures() for fig in figures},
        table=HEADER + "\n" + "\n".join(fig.row() for fig in figures),
        settings={
            "rounds": args.rounds,
            "max_rounds": args.max_rounds,
            "requests_per_round": args.requests,
            "concurrency": CONCURRENCY,
            "queue_size": QUEUE_SIZE,
            "retry_after_s": SHORT_RETRY_AFTER,
            "p99_limit_for_more_rounds": args.limit,
        },
        load_before=load_before,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
