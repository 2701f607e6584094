"""What Sentry's own normalizer would cost the inbox per event, beside what ingest costs today.

    .venv/bin/python benchmarks/bench_relay_normalizer.py [--quick]

Issue 15 point 4 asks whether the inbox should run Relay's `StoreNormalizer` (package
`sentry-relay`, the oracle of tests/compat/test_relay_oracle.py) on every event it ingests. This
times `normalize_event(raw_event=...)` on the bytes the inbox receives, with the result parsed
back into a dict as the inbox would need it, for:
- the one-error envelope payload bench_inbox_ingest.py sends (its server CPU per event is the
  figure to compare with: read from the newest inbox-ingest result file);
- the small, typical and large errors of tests/scrubbing/corpus.py (bench_scrubbing.py's);
- a transaction with 50 spans.
CPU time per call (process_time) is the median of interleaved batches, for one normalizer
reused (what the inbox would do) and for a new one per call, beside the inbox's own parsing of
the same payload (envelope parse, validation, grouping: ingest's work before SQLite and HTTP).
Peak RSS of this process is written beside the figures. Writes
benchmarks/results/relay-normalizer-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentry_relay.processing import StoreNormalizer
from tests.inbox_support import envelope, error_event
from tests.scrubbing.corpus import benchmark_events

import result_file
from fastapi_sentry.inbox._envelope import parse_envelope
from fastapi_sentry.inbox._ingest import records_from_envelope

RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def transaction(spans: int) -> dict[str, Any]:
    now = time.time()
    trace_id = uuid.uuid4().hex
    return {
        "type": "transaction",
        "event_id": uuid.uuid4().hex,
        "transaction": "/orders/{order_id}",
        "transaction_info": {"source": "route"},
        "start_timestamp": now - 0.2,
        "timestamp": now,
        "platform": "python",
        "contexts": {
            "trace": {"trace_id": trace_id, "span_id": uuid.uuid4().hex[:16], "op": "http.server"}
        },
        "spans": [
            {
                "trace_id": trace_id,
                "span_id": uuid.uuid4().hex[:16],
                "op": "db",
                "description": f"SELECT * FROM orders WHERE id = {i}",
                "start_timestamp": now - 0.2 + i * 0.003,
                "timestamp": now - 0.2 + i * 0.003 + 0.002,
            }
            for i in range(spans)
        ],
    }


def payloads() -> dict[str, bytes]:
    ingest_envelope = error_event()
    ingest_payload = ingest_envelope.split(b"\n")[2]  # the event item of the one-item envelope
    found = {"ingest bench error": ingest_payload}
    for name, event in benchmark_events().items():
        found[f"{name} error"] = json.dumps(event).encode()
    found["transaction, 50 spans"] = json.dumps(transaction(50)).encode()
    return found


def ingest_cpu_us() -> tuple[float | None, str | None]:
    """The inbox's server CPU per ingested event, from the newest inbox-ingest result file."""
    files = sorted(RESULTS.glob("inbox-ingest-*.json"))
    if not files:
        return None, None
    results = json.loads(files[-1].read_text())["results"]
    figures = [row["cpu_us"] for row in results.get("by_senders", []) if "cpu_us" in row]
    return (statistics.median(figures) if figures else None), files[-1].name


def time_calls(call: Callable[[], Any], calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - start) / calls * 1e6


def normalize(normalizer: StoreNormalizer, payload: bytes) -> dict[str, Any]:
    return normalizer.normalize_event(raw_event=payload)  # type: ignore[no-any-return]


def normalize_with_new(payload: bytes) -> dict[str, Any]:
    return normalize(StoreNormalizer(), payload)


def inbox_parse(body: bytes) -> None:
    """The inbox's own work on the same payload before SQLite: parse, validate, group."""
    records_from_envelope(parse_envelope(body), time.time())


def as_envelope(payload: bytes) -> bytes:
    kind = "transaction" if payload.startswith(b'{"type": "transaction"') else "event"
    return envelope(({"type": kind}, payload))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    args = parser.parse_args()
    calls, rounds = (50, 3) if args.quick else (400, 7)
    load_before = result_file.machine()
    rss_before = peak_rss_mib()

    shared = StoreNormalizer()
    cases = payloads()
    # warm-up; what Relay finds wrong is counted (the corpus's large error has bare spans)
    relay_errors = {
        name: len(shared.normalize_event(raw_event=payload).get("errors") or [])
        for name, payload in cases.items()
    }

    reused: dict[str, list[float]] = {name: [] for name in cases}
    fresh: dict[str, list[float]] = {name: [] for name in cases}
    parsed: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):  # interleaved, so a busy moment on the shared machine hits all
        for name, payload in cases.items():
            reused[name].append(time_calls(partial(normalize, shared, payload), calls))
            fresh[name].append(time_calls(partial(normalize_with_new, payload), calls))
            parsed[name].append(time_calls(partial(inbox_parse, as_envelope(payload)), calls))

    ingest_us, ingest_file = ingest_cpu_us()
    rows: list[dict[str, Any]] = []
    for name, payload in cases.items():
        us = statistics.median(reused[name])
        rows.append(
            {
                "event": name,
                "bytes": len(payload),
                "cpu_us_reused": us,
                "cpu_us_new_normalizer": statistics.median(fresh[name]),
                "inbox_parse_cpu_us": statistics.median(parsed[name]),
                "share_of_ingest_cpu": us / ingest_us if ingest_us else None,
                "relay_errors": relay_errors[name],
            }
        )
    rss = peak_rss_mib()
    lines = [
        f"inbox ingest today: {ingest_us:.0f} µs CPU per event ({ingest_file})"
        if ingest_us
        else "inbox ingest today: no inbox-ingest result file to compare with",
        "",
        "| event | bytes | normalize µs CPU (reused) | new normalizer µs "
        "| inbox parse µs | vs whole ingest |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        share = row["share_of_ingest_cpu"]
        lines.append(
            f"| {row['event']} | {row['bytes']} | {row['cpu_us_reused']:.0f} "
            f"| {row['cpu_us_new_normalizer']:.0f} | {row['inbox_parse_cpu_us']:.0f} | "
            + (f"+{share * 100:.0f} %" if share is not None else "-")
            + " |"
        )
    lines.append(f"\npeak RSS {rss:.0f} MiB (before the normalizer: {rss_before:.0f} MiB)")
    result_file.write(
        "relay-normalizer",
        {
            "rows": rows,
            "ingest_cpu_us_per_event": ingest_us,
            "ingest_result_file": ingest_file,
            "peak_rss_mib": rss,
            "peak_rss_mib_before_normalizer": rss_before,
        },
        table="\n".join(lines),
        settings={
            "calls_per_batch": calls,
            "rounds": rounds,
            "quick": args.quick,
            "sentry-relay": metadata.version("sentry-relay"),
        },
        load_before=load_before,
    )


if __name__ == "__main__":
    main()
