"""Retention under load: 200,000 error events into an inbox kept at 10,000 events.

The inbox runs as the CLI runs it (``serve(max_events=...)``) in its own process; a load generator
process sends gzip envelopes (one ~6 KB sentry-sdk-shaped error each, unique event ids) from
concurrent keep-alive senders and samples the database file size (main file + WAL) as it goes. The
figures: ingest rate before the limit is reached and over the last part of the run, the file size
when the limit is reached and at the end, and that every acknowledged event was counted by its
issue.

    .venv/bin/python benchmarks/bench_inbox_retention.py --events 200000 --max-events 10000
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from typing import Any

import result_file
from bench_inbox_ingest import (
    make_event,
    peak_rss_mib,
    read_response,
    request_head,
    start_server,
)

_PLACEHOLDER = "f" * 32


def _template(number: int) -> bytes:
    event = make_event(number)
    event["event_id"] = _PLACEHOLDER
    payload = json.dumps(event).encode()
    header = json.dumps({"event_id": _PLACEHOLDER})
    item = json.dumps({"type": "event", "length": len(payload)})
    return f"{header}\n{item}\n".encode() + payload + b"\n"


def _file_size(db: str) -> int:
    return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))


async def _send(
    port: int, head: bytes, templates: list[bytes], state: dict[str, Any], total: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while state["sent"] < total:
            state["sent"] += 1
            template = templates[state["sent"] % len(templates)]
            body = gzip.compress(
                template.replace(_PLACEHOLDER.encode(), uuid.uuid4().hex.encode()), 1
            )
            writer.write(head % len(body) + body)
            status_line = await read_response(reader)
            if status_line.split()[1] == b"200":
                state["acked"] += 1
            else:
                state["errors"] += 1
    finally:
        writer.close()


async def _sample(
    db: str, state: dict[str, Any], total: int, samples: list[dict[str, Any]]
) -> None:
    started = time.monotonic()
    while state["acked"] + state["errors"] < total:
        samples.append(
            {"t": time.monotonic() - started, "acked": state["acked"], "bytes": _file_size(db)}
        )
        await asyncio.sleep(1.0)
    samples.append(
        {"t": time.monotonic() - started, "acked": state["acked"], "bytes": _file_size(db)}
    )


def load(port: int, project: int, key: str, db: str, senders: int, total: int, out: Any) -> None:
    templates = [_template(i) for i in range(200)]
    head = request_head(project, key)
    state = {"sent": 0, "acked": 0, "errors": 0}
    samples: list[dict[str, Any]] = []

    async def run() -> None:
        await asyncio.gather(
            _sample(db, state, total, samples),
            *(_send(port, head, templates, state, total) for _ in range(senders)),
        )

    asyncio.run(run())
    out.send({"samples": samples, "acked": state["acked"], "errors": state["errors"]})


def _rate(samples: list[dict[str, Any]], low: int, high: int) -> float:
    inside = [s for s in samples if low <= s["acked"] <= high]
    if len(inside) < 2:
        return float("nan")
    first, last = inside[0], inside[-1]
    return float(last["acked"] - first["acked"]) / max(float(last["t"] - first["t"]), 1e-9)


def _size_at(samples: list[dict[str, Any]], acked: int) -> int:
    return int(next((s["bytes"] for s in samples if s["acked"] >= acked), samples[-1]["bytes"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--max-events", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=8)
    args = parser.parse_args()
    load_before = result_file.machine()
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "inbox.db")
        server = start_server(db, "", args.max_events)
        try:
            assert server.stdout is not None
            info = json.loads(server.stdout.readline())
            port = int(info["url"].rsplit(":", 1)[1])
            parent, child = multiprocessing.Pipe()
            generator = multiprocessing.Process(
                target=load,
                args=(port, info["id"], info["key"], db, args.senders, args.events, child),
            )
            generator.start()
            result = parent.recv()
            generator.join()
            time.sleep(3)  # let the last retention pass finish before the final count (not a test)
            rss = peak_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
        with sqlite3.connect(db) as conn:
            kept = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            counted = conn.execute("SELECT SUM(count) FROM issues").fetchone()[0]
        final_bytes = _file_size(db)
    samples = result["samples"]
    limit = args.max_events
    summary = {
        "events": args.events,
        "max_events": limit,
        "acked": result["acked"],
        "errors": result["errors"],
        "kept": kept,
        "counted_by_issues": counted,
        "rate_before_limit": _rate(samples, 0, limit),
        "rate_last_quarter": _rate(samples, int(args.events * 0.75), args.events),
        "bytes_at_limit": _size_at(samples, limit),
        "bytes_at_half": _size_at(samples, args.events // 2),
        "bytes_at_end": final_bytes,
        "server_peak_rss_mib": rss,
        "load": os.getloadavg()[0],
        "samples": samples,
    }
    mib = 1024 * 1024
    lines = [
        f"inbox retention: {args.events} events into a {limit}-event limit, {os.cpu_count()} CPUs",
        "| | events/s | file (db + WAL) |",
        "|---|---|---|",
        f"| before the limit (first {limit}) | {summary['rate_before_limit']:.0f} "
        f"| {summary['bytes_at_limit'] / mib:.1f} MiB at {limit} |",
        f"| at half ({args.events // 2}) | | {summary['bytes_at_half'] / mib:.1f} MiB |",
        f"| last quarter, and the end | {summary['rate_last_quarter']:.0f} "
        f"| {final_bytes / mib:.1f} MiB at {args.events} |",
        f"acknowledged {result['acked']}, non-200 {result['errors']}, kept {kept}, "
        f"counted by issues {counted}, server peak RSS {rss:.0f} MiB, load {summary['load']:.1f}",
    ]
    result_file.write(
        "inbox-retention",
        summary,
        table="\n".join(lines),
        settings={"events": args.events, "max_events": limit},
        load_before=load_before,
    )
    if counted != result["acked"] or kept > limit + 1000:
        sys.exit("FAILED: issue counts are not true totals, or retention did not keep up")


if __name__ == "__main__":
    main()
