"""CPU instructions the running inbox server spends per error event, HTTP stack included.

    .venv/bin/python benchmarks/bench_inbox_server_instructions.py [--size 6|50] [--server ...]

bench_inbox_ingest_instructions.py counts parse, records and commit only; this one runs the real
server (``serve()``: granian or uvicorn, the app, the write batcher, SQLite) under callgrind and
sends it gzip envelopes over 8 keep-alive connections from a process outside valgrind. Each figure
is the server's count for LARGE requests minus the count for SMALL, over their difference, so
start-up and shutdown cancel out; the same difference is split by shared object (the interpreter,
SQLite, orjson, zlib, libc). Only user-space instructions count: the kernel's socket and WAL
writes do not; granian's Rust threads are counted with the Python thread.
Needs valgrind; writes benchmarks/results/inbox-server-instructions-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks")]

from bench_inbox_ingest import SERVER, make_body, read_response, request_head  # noqa: E402

SMALL, LARGE, CONNECTIONS = 100, 400, 8
_TOTAL = re.compile(r"Collected : (\d+)")
_LINE = re.compile(r"\s*([\d,]+) \([^)]*\)\s+.*?:\S+(?: \[(.*)\])?$")


async def _send(port: int, head: bytes, bodies: list[bytes]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ok = 0
    for body in bodies:
        writer.write(head % len(body) + body)
        ok += (await read_response(reader)).split()[1] == b"200"
    writer.close()
    return ok


def _drive(port: int, project: int, key: str, bodies: list[bytes]) -> int:
    head = request_head(project, key)
    shares = [bodies[i::CONNECTIONS] for i in range(CONNECTIONS)]

    async def run() -> list[int]:
        return await asyncio.gather(*(_send(port, head, share) for share in shares))

    return sum(asyncio.run(run()))


def server_instructions(count: int, size_kb: int, out_file: str, http_server: str = "auto") -> int:
    bodies = [make_body(n, size_kb)[1] for n in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]
        command += [sys.executable, "-c", SERVER, str(Path(tmp) / "inbox.db"), "", "0", http_server]
        server = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        acked = _drive(int(info["url"].rsplit(":", 1)[1]), info["id"], info["key"], bodies)
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=600)
    if acked != count:
        raise SystemExit(f"only {acked} of {count} requests were acknowledged")
    found = _TOTAL.search(stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no total: {stderr[-1000:]}")
    return int(found.group(1))


def _by_library(out_file: str) -> Counter[str]:
    """Callgrind's exclusive counts summed by the shared object they ran in."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", out_file],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    totals: Counter[str] = Counter()
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            library = (match.group(2) or "?").rsplit("/", 1)[-1]
            totals[library] += int(match.group(1).replace(",", ""))
    return totals


def by_library(small_file: str, large_file: str) -> dict[str, int]:
    """Instructions per event by shared object (the interpreter, SQLite, orjson, zlib, libc):
    the larger run's counts less the smaller's, over the events between them."""
    totals = _by_library(large_file)
    totals.subtract(_by_library(small_file))
    return {lib: count // (LARGE - SMALL) for lib, count in totals.most_common(12)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, choices=(6, 50), default=6, help="event size, KB")
    parser.add_argument(
        "--server",
        choices=("auto", "granian", "uvicorn"),
        default="auto",
        help="the inbox's HTTP server (auto: granian where installed)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = server_instructions(SMALL, args.size, f"{tmp}/small.out", args.server)
        large = server_instructions(LARGE, args.size, f"{tmp}/large.out", args.server)
        per = (large - small) // (LARGE - SMALL)
        print(f"Server instructions per {args.size} KB error event (HTTP, parse, store): {per:,}")
        libraries = by_library(f"{tmp}/small.out", f"{tmp}/large.out")
    for name, value in libraries.items():
        print(f"{value:>12,}  {name}")
    import result_file

    result_file.write(
        "inbox-server-instructions",
        {"instructions_per_event": per, "by_library_per_event": libraries},
        settings={"size_kb": args.size, "small": SMALL, "large": LARGE, "server": args.server},
    )


if __name__ == "__main__":
    main()
