"""Transactions delivered per second against a receiver that takes its time: is delivery bound by
the receiver's latency?

A sender that waits for each answer before the next POST delivers at most 1/RTT envelopes a
second, whatever the CPU: against a real Sentry 20-100 ms away that is 10-50 a second. This
benchmark puts a delay in front of each answer and offers transaction envelopes at a fixed rate:

- the receiver: asyncio, in its own process, on 127.0.0.1; it answers each envelope POST after
  `--delays` milliseconds (per request, so concurrent requests wait side by side, as they would
  for a remote receiver) and counts the transaction items it got
- the sender: a process per run with sentry-sdk's own transport (`bare`, `sentry_sdk.init`) or
  `install()`'s (`ours`); it hands a fresh copy of one real transaction envelope (five spans) to
  the transport's `capture_envelope` at `--rates` a second for `--seconds`, then flushes for
  at most one second (bounded: every run stops by itself)

Reported per run: transactions delivered per second during the offer window, delivered in all
(after the flush), dropped by reason (what the transport recorded for its client reports), the
sender's CPU (user+system, whole process: the offering loop is the same for both) per delivered
envelope, and its peak RSS. CPU per envelope is the figure a shared machine moves least; the
delivered rate against the delay shows the latency bound.

    python benchmarks/bench_delivery.py [--seconds 3] [--rates 200,1000] [--delays 0,5,20,50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODES = ("bare", "ours")


# --- the receiver (its own process: `--receiver`)


def _count_transactions(body: bytes, encoding: str) -> int:
    if encoding == "br":
        import brotli

        body = brotli.decompress(body)
    elif encoding == "gzip":
        import gzip

        body = gzip.decompress(body)
    return int(b'"type":"transaction"' in body)  # one per envelope (item header and payload)


async def _serve(delays: dict[str, float]) -> None:
    counts = {"posts": 0, "transactions": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                fields = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:])
                }
                body = await reader.readexactly(int(fields.get("content-length", "0")))
                target = lines[0].split(" ")[1]
                if target.startswith("/delay/"):  # the bench sets the delay of the next run
                    delays["now"] = float(target.rsplit("/", 1)[1]) / 1000
                    counts.update(posts=0, transactions=0)
                    answer = b"{}"
                elif target == "/count":
                    answer = json.dumps(counts).encode()
                else:
                    if delays["now"]:
                        await asyncio.sleep(delays["now"])
                    counts["posts"] += 1
                    encoding = fields.get("content-encoding", "")
                    counts["transactions"] += _count_transactions(body, encoding)
                    answer = b"{}"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def _ask(port: int, target: str) -> dict[str, int]:
    """A one-off GET to the receiver (its own connection: the sender's are not disturbed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data.partition(b"\r\n\r\n")[2] or b"{}")  # type: ignore[no-any-return]


# --- the sender (its own process per run: `--child`)


def _transaction_envelope(transport: Any) -> Any:
    import sentry_sdk

    caught: list[Any] = []
    transport.capture_envelope = caught.append  # this instance only: keep, do not send
    with sentry_sdk.start_transaction(name="/api/items/{item_id}", op="http.server", sampled=True):
        for n in range(5):
            with sentry_sdk.start_span(op="db", name=f"SELECT * FROM items WHERE id = {n}"):
                pass
    sentry_sdk.flush(timeout=1)
    del transport.capture_envelope
    return next(e for e in caught if any(i.type == "transaction" for i in e.items))


def _fresh(envelope: Any) -> Any:
    from sentry_sdk.envelope import Envelope, Item, PayloadRef

    items = [
        Item(payload=PayloadRef(json=i.payload.json), headers=i.headers) for i in envelope.items
    ]
    return Envelope(headers=envelope.headers, items=items)


def _child(mode: str, dsn: str, port: int, rate: int, seconds: float) -> None:
    import sentry_sdk

    if mode == "bare":
        sentry_sdk.init(dsn=dsn, traces_sample_rate=1.0)
    else:
        from fastapi import FastAPI

        import fastapi_sentry

        fastapi_sentry.install(FastAPI(), dsn=dsn, traces_sample_rate=1.0, profiles_sample_rate=0)
    transport: Any = sentry_sdk.get_client().transport
    envelope = _transaction_envelope(transport)
    dropped: Counter[str] = Counter()
    record = transport.record_lost_event

    def counting(reason: str, data_category: Any = None, item: Any = None, **kw: Any) -> None:
        category = item.data_category if item is not None else data_category
        if str(category) == "transaction":
            dropped[reason] += 1 if item is not None else kw.get("quantity", 1)
        record(reason, data_category, item, **kw)

    transport.record_lost_event = counting
    copies = [_fresh(envelope) for _ in range(int(rate * seconds))]
    _ask(port, "/count")  # the receiver is up
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    tick = 0.01
    for n, copy in enumerate(copies):
        due = start + n / rate
        now = time.monotonic()
        if due - now > tick / 2:
            time.sleep(due - now)
        transport.capture_envelope(copy)
    left = start + seconds - time.monotonic()
    if left > 0:
        time.sleep(left)
    in_window = _ask(port, "/count")["transactions"]
    sentry_sdk.flush(timeout=1.0)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    total = _ask(port, "/count")["transactions"]
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    print(
        json.dumps(
            {
                "offered": len(copies),
                "delivered_per_s": in_window / seconds,
                "delivered": total,
                "dropped": dict(dropped),
                "cpu_s": cpu,
                "cpu_ms_per_delivered": 1000 * cpu / total if total else None,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        ),
        flush=True,
    )
    sentry_sdk.get_client().close(timeout=0.5)


# --- the run


def _run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import result_file

    load_before = result_file.machine()
    receiver = subprocess.Popen(
        [sys.executable, __file__, "--receiver"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        dsn = f"http://public@127.0.0.1:{port}/1"
        rates = [int(r) for r in args.rates.split(",")]
        delays = [int(d) for d in args.delays.split(",")]
        modes = args.modes.split(",")
        results: list[dict[str, Any]] = []
        header = (
            f"{'sender':6} {'delay':>6} {'offered/s':>9} {'delivered/s':>11} {'delivered':>9} "
            f"{'dropped (reason: n)':28} {'CPU ms/env':>10} {'peak RSS':>9}"
        )
        print(header, flush=True)
        lines = [header]
        for rate in rates:
            for delay in delays:
                for mode in modes:
                    _ask(port, f"/delay/{delay}")
                    done = subprocess.run(
                        [sys.executable, __file__, "--child", mode, "--dsn", dsn, "--port",
                         str(port), "--rate", str(rate), "--seconds", str(args.seconds)],
                        capture_output=True, text=True, timeout=60, check=False,
                        env=_child_env(),
                    )  # fmt: skip
                    if done.returncode != 0:
                        raise SystemExit(f"the {mode} sender failed:\n{done.stderr[-2000:]}")
                    row = json.loads(done.stdout.strip().splitlines()[-1])
                    row.update(mode=mode, delay_ms=delay, offered_per_s=rate)
                    results.append(row)
                    drops = ", ".join(f"{k}: {v}" for k, v in sorted(row["dropped"].items()))
                    per = row["cpu_ms_per_delivered"]
                    lines.append(
                        f"{mode:6} {delay:4} ms {rate:9} {row['delivered_per_s']:11.0f} "
                        f"{row['delivered']:9} {drops or '-':28} "
                        f"{'-' if per is None else f'{per:.2f}':>10} "
                        f"{row['peak_rss_mb']:6.1f} MB"
                    )
                    print(lines[-1], flush=True)
    finally:
        receiver.terminate()
        receiver.wait(10)
    lines.append(
        "\ndelivered/s: transactions at the receiver during the offer window; delivered: after "
        "a flush of at most 1 s;\nCPU ms/env: the sender process's CPU (offering included) per "
        "delivered transaction"
    )
    result_file.write(
        "delivery",
        {"runs": results},
        table="\n".join(lines),
        settings={"seconds": args.seconds, "rates": rates, "delays_ms": delays, "modes": modes},
        load_before=load_before,
    )


def _child_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    for name in [n for n in env if n.startswith("SENTRY_")]:
        del env[name]  # a developer's own settings must not change the run
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rates", default="200,1000")
    parser.add_argument("--delays", default="0,5,20,50")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        asyncio.run(_serve({"now": 0.0}))
    elif args.child:
        _child(args.child, args.dsn, args.port, args.rate, args.seconds)
    else:
        _run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
