"""CPU instructions the running inbox server spends per error event, HTTP stack included.

    .venv/bin/python benchmarks/bench_inbox_server_instructions.py [--size 6|50] [--annotate]

bench_inbox_ingest_instructions.py counts parse, records and commit only; this one runs the real
server (``serve()``: uvicorn, the ASGI app, the write batcher, SQLite) under callgrind and sends it
gzip envelopes over 8 keep-alive connections from a process outside valgrind. Each figure is the
server's count for LARGE requests minus the count for SMALL, over their difference, so start-up
and shutdown cancel out. ``--annotate`` keeps the larger run's callgrind file and prints the C
functions with the highest inclusive counts (SQLite, zlib, orjson, httptools, the interpreter).
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks")]

from bench_inbox_ingest import SERVER, make_body, read_response, request_head  # noqa: E402

SMALL, LARGE, CONNECTIONS = 200, 1000, 8
_TOTAL = re.compile(r"Collected : (\d+)")


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


def server_instructions(count: int, size_kb: int, out_file: str) -> int:
    bodies = [make_body(n, size_kb)[1] for n in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]
        command += [sys.executable, "-c", SERVER, str(Path(tmp) / "inbox.db"), "", "0"]
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


def annotate(out_file: str, count: int) -> list[tuple[str, float]]:
    """The C functions with the most instructions (inclusive), per event."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", out_file],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+) \([^)]*\)\s+\S+:(\S+)", line)
        if match:
            rows.append((match.group(2), int(match.group(1).replace(",", "")) / count))
    return rows[:60]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, choices=(6, 50), default=6, help="event size, KB")
    parser.add_argument("--annotate", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = server_instructions(SMALL, args.size, f"{tmp}/small.out")
        large = server_instructions(LARGE, args.size, f"{tmp}/large.out")
        per = (large - small) // (LARGE - SMALL)
        print(f"Server instructions per {args.size} KB error event (HTTP, parse, store): {per:,}")
        top = annotate(f"{tmp}/large.out", LARGE) if args.annotate else []
    for name, value in top:
        print(f"{value:>12,.0f}  {name}")
    import result_file

    result_file.write(
        "inbox-server-instructions",
        {"instructions_per_event": per, "top_inclusive_per_event": top},
        settings={"size_kb": args.size, "small": SMALL, "large": LARGE},
    )


if __name__ == "__main__":
    main()
