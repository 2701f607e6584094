"""What making tags safe text costs per event: `safe_tags` alone, and the share of the pipeline.

    .venv/bin/python benchmarks/bench_safe_text.py [--quick]

Every error and transaction passes `safe_tags` in the event pipeline (issue 12, point 8). Timed on
the typical event of bench_scrubbing.py (its usual tags, nothing to change: the common case), on
the same event with crafted tag values (CR/LF, ESC, 10 kB), beside the whole `before_send` of the
typical event (median of batches) for scale: the difference of two noisy pipeline timings would
be noise, on a shared machine.
Writes benchmarks/results/safe-text-<time>.json.
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.scrubbing.corpus import benchmark_events

import result_file
from fastapi_sentry._context import safe_tags
from fastapi_sentry._pipeline import EventPipeline
from fastapi_sentry._settings import load_settings

CRAFTED = {"tenant": "acme\r\nERROR forged\x1b[31m" + "t" * 10_000, "endpoint": "GET /x\u2028y"}


def per_call_us(func: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    calls, batches = (2_000, 6) if args.quick else (20_000, 20)
    load_before = result_file.machine()

    typical = benchmark_events()["typical"]
    crafted = {**typical, "tags": {**typical.get("tags", {}), **CRAFTED}}
    alone_clean = per_call_us(lambda: safe_tags(typical), calls)
    alone_crafted = per_call_us(lambda: safe_tags({"tags": dict(crafted["tags"])}), calls)

    pipeline = EventPipeline(load_settings(dsn="http://k@127.0.0.1:9/1"))
    per_batch = max(calls // 20, 50)

    def before_send_us() -> float:
        events = [copy.deepcopy(typical) for _ in range(per_batch)]  # the pipeline edits them
        start = time.perf_counter()
        for event in events:
            pipeline.before_send(event, {})
        return (time.perf_counter() - start) / per_batch * 1e6

    before_send_us()  # warm the scrubber's caches
    whole = statistics.median(before_send_us() for _ in range(batches))
    results = {
        "safe_tags_typical_event_us": round(alone_clean, 3),
        "safe_tags_crafted_tags_us": round(alone_crafted, 3),
        "before_send_typical_event_us": round(whole, 1),
        "share_of_before_send_percent": round(alone_clean / whole * 100, 2),
        "tags_on_typical_event": len(typical.get("tags", {})),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    rows = [
        (f"safe_tags, typical event ({results['tags_on_typical_event']} clean tags)",
         results["safe_tags_typical_event_us"]),
        ("safe_tags, crafted tags (CR/LF, ESC, 10 kB)", results["safe_tags_crafted_tags_us"]),
        ("whole before_send, typical event", results["before_send_typical_event_us"]),
    ]  # fmt: skip
    table = "\n".join(
        ["| measure | µs per event |", "|---|---|"]
        + [f"| {name} | {value} |" for name, value in rows]
        + [f"| safe_tags / before_send | {results['share_of_before_send_percent']} % |"]
    )
    result_file.write(
        "safe-text",
        results,
        table=table,
        settings={"calls": calls, "batches": batches, "quick": args.quick},
        load_before=load_before,
    )


if __name__ == "__main__":
    main()
