"""Sustained ingest rate of the inbox: gzip envelopes from concurrent senders, every ack verified.

The inbox runs in its own process (``serve()``, as the CLI runs it); the load generator runs in
another process, with N keep-alive connections sending pre-built gzip envelopes (one sentry-sdk-
shaped error event each, unique event ids) as fast as the answers come back. At the end the SQLite
file is opened directly: stored events must equal acknowledged ones, id for id.

    .venv/bin/python benchmarks/bench_inbox_ingest.py --senders 8 --seconds 10
    .venv/bin/python benchmarks/bench_inbox_ingest.py --senders 8 --rules both
    .venv/bin/python benchmarks/bench_inbox_ingest.py --senders 8 --server uvicorn

``--sizes 6 50`` (the default) runs each setting with sentry-sdk's ~6 KB error event and with a
~50 KB one (Bugsink's sizing unit: a 27-frame chained stack with local variables, 100 breadcrumbs
with data, the request's headers and body), side by side.
``--rules with`` starts the inbox with five alert rules (new issue, an event count, users affected,
a p95 and a failed cron) whose webhook hangs: it accepts connections and never answers, so every
delivery runs into its timeout while ingest goes on. ``--rules both`` measures without and with.
``--server`` picks the inbox's HTTP server: granian where installed (``auto``), or uvicorn.
Each run's figures go to ``benchmarks/results/inbox-ingest-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gzip
import json
import multiprocessing
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

SERVER = """
import json, sys
from fastapi_sentry.inbox import serve
def ready(info):
    print(json.dumps({"url": info.url, "key": info.project.public_key, "id": info.project.id}),
          flush=True)
serve(host="127.0.0.1", port=0, db_path=sys.argv[1], token=None, on_ready=ready,
      alerts=sys.argv[2] or None, max_events=int(sys.argv[3]) or None,
      server=sys.argv[4] if len(sys.argv) > 4 else "auto")
"""
RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Five rules, all notifying a webhook that never answers.
RULES = """
[delivery]
timeout = "10s"
attempts = 3
backoff = "1s"

[[rule]]
name = "new-error"
when = "new_issue"
notify = ["{url}"]

[[rule]]
name = "error-rate"
when = "event_count"
count = 10
window = "1m"
notify = ["{url}"]

[[rule]]
name = "users-affected"
when = "users_affected"
count = 100
window = "1h"
notify = ["{url}"]

[[rule]]
name = "slow-api"
when = "p95"
transaction = "GET /*"
threshold_ms = 2000
window = "5m"
notify = ["{url}"]

[[rule]]
name = "cron-failed"
when = "cron_failed"
notify = ["{url}"]
"""


def hanging_target() -> tuple[socket.socket, str]:
    """A listening socket that never accepts: connections complete, requests are never answered."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def _big_frame(number: int, depth: int) -> dict[str, Any]:
    """A frame as sentry-sdk sends it with local variables of a real handler: reprs of request
    objects, ORM rows and payload dicts, cut to sentry-sdk's string length."""
    return {
        "filename": f"app/services/layer_{depth}.py",
        "abs_path": f"/srv/app/services/layer_{depth}.py",
        "module": f"app.services.layer_{depth}",
        "function": f"process_step_{depth}",
        "lineno": 100 + depth * 7,
        "in_app": depth > 8,
        "pre_context": [f"    step_{depth}_{i} = session.get(Order, order_id)" for i in range(5)],
        "context_line": f"    result = validate(payload, rules[{depth}])",
        "post_context": [f"    audit.log('step {depth}', line={i})" for i in range(5)],
        "vars": {
            "self": f"<app.services.layer_{depth}.Processor object at 0x7f3a{depth:04x}c0>",
            "order_id": str(number),
            "payload": {
                "items": [
                    {"sku": f"SKU-{number % 97}-{i}", "qty": i + 1, "price": f"{9.99 * i:.2f}"}
                    for i in range(4)
                ],
                "customer": {"id": str(number % 500), "tier": "gold", "country": "DE"},
            },
            "rules": f"[<Rule max_qty>, <Rule fraud_score>, <Rule stock {depth}>, '...']",
            "session": "<sqlalchemy.orm.session.Session object at 0x7f3a9d2b1f90>",
            "started": f"{1764770000 + number}.{depth:06d}",
        },
    }


def _big_parts(number: int) -> dict[str, Any]:
    """The parts that make a ~50 KB event (Bugsink's sizing unit) beside the 17 frames with
    variables: a chained cause of 10 such frames, 100 breadcrumbs with data, the request with
    its headers and body."""
    cause = {
        "type": "TimeoutError",
        "value": f"database did not answer within 5s (order {number})",
        "mechanism": {"type": "chained", "handled": True, "exception_id": 1, "parent_id": 0},
        "stacktrace": {"frames": [_big_frame(number, d) for d in range(10)]},
    }
    crumbs = [
        {
            "timestamp": time.time(),
            "type": "http" if i % 3 == 0 else "default",
            "category": "httpx" if i % 3 == 0 else "query",
            "message": None if i % 3 == 0 else f"SELECT * FROM orders WHERE id = {number + i}",
            "data": {"url": f"http://stock/api/items/{i}", "method": "GET", "status_code": 200}
            if i % 3 == 0
            else {"duration_ms": i * 1.5, "rows": i % 7},
        }
        for i in range(100)
    ]
    headers = {f"x-custom-header-{i}": f"value-{number}-{i}-" + "ab" * 10 for i in range(12)}
    headers.update({"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0"})
    request = {
        "method": "POST",
        "url": f"http://localhost/orders/{number}/checkout",
        "query_string": f"ref=mail&campaign={number % 13}",
        "headers": headers,
        "data": {"items": [{"sku": f"SKU-{i}", "qty": i} for i in range(20)], "note": "gift"},
        "env": {"REMOTE_ADDR": "10.0.0.7", "SERVER_NAME": "shop", "SERVER_PORT": "8000"},
    }
    return {"cause": cause, "breadcrumbs": crumbs, "request": request}


def make_event(number: int, size_kb: int = 6) -> dict[str, Any]:
    """An error event the size and shape sentry-sdk sends from a FastAPI handler: ~6 KB, or
    ~50 KB with ``size_kb=50``."""
    frames = [
        {
            "filename": f"app/module_{depth}.py",
            "abs_path": f"/srv/app/module_{depth}.py",
            "module": f"app.module_{depth}",
            "function": f"handler_{depth}",
            "lineno": 10 + depth,
            "in_app": depth > 3,
            "pre_context": ["    x = 1", "    y = 2", "    z = compute(x, y)"],
            "context_line": f"    raise ValueError('bad {depth}')",
            "post_context": ["", "def other():", "    pass"],
            "vars": {"request": "<Request GET /orders/1>", "order_id": "1", "depth": str(depth)},
        }
        for depth in range(12)
    ]
    event: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "timestamp": time.time(),
        "platform": "python",
        "level": "error",
        "environment": "bench",
        "release": "bench@1.0",
        "transaction": f"GET /orders/{{id}}/{number % 20}",
        "exception": {
            "values": [
                {
                    "type": f"Error{number % 50}",
                    "value": f"order {number} failed",
                    "mechanism": {"type": "starlette", "handled": False},
                    "stacktrace": {"frames": frames},
                }
            ]
        },
        "breadcrumbs": {
            "values": [
                {"timestamp": time.time(), "category": "query", "message": f"SELECT {i}"}
                for i in range(10)
            ]
        },
        "user": {"id": str(number % 500)},
        "tags": {"endpoint": "orders", "request_id": uuid.uuid4().hex},
        # sentry-sdk always sends its trace context; the inbox indexes the trace id.
        "contexts": {
            "runtime": {"name": "CPython", "version": "3.11"},
            "trace": {"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16]},
        },
        "request": {"method": "GET", "url": "http://localhost/orders/1", "headers": {}},
        "sdk": {"name": "sentry.python.fastapi", "version": "2.75.0"},
    }
    if size_kb == 50:
        big = _big_parts(number)
        error = event["exception"]["values"][0]
        error["stacktrace"]["frames"] = [_big_frame(number, d) for d in range(17)]
        error["mechanism"] = {**error["mechanism"], "exception_id": 0}
        event["exception"]["values"] = [big["cause"], error]
        event["breadcrumbs"] = {"values": big["breadcrumbs"]}
        event["request"] = big["request"]
    return event


def make_body(number: int, size_kb: int = 6) -> tuple[str, bytes]:
    event = make_event(number, size_kb)
    payload = json.dumps(event).encode()
    # sent_at is the sender's clock when it sends, as sentry-sdk stamps it: the bodies are built
    # seconds before they go out, so no clock-drift correction applies (a fixed date in the past
    # would make the inbox correct, and re-serialize, every event as Relay would).
    sent_at = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    header = json.dumps({"event_id": event["event_id"], "sent_at": sent_at})
    item = json.dumps({"type": "event", "length": len(payload)})
    envelope = f"{header}\n{item}\n".encode() + payload + b"\n"
    return event["event_id"], gzip.compress(envelope, compresslevel=6)


def request_head(project: int, key: str) -> bytes:
    """An envelope POST's head, with ``%d`` where the body's length goes."""
    return (
        f"POST /api/{project}/envelope/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-sentry-envelope\r\nContent-Encoding: gzip\r\n"
        f"X-Sentry-Auth: Sentry sentry_key={key}, sentry_version=7\r\n"
        "Content-Length: %d\r\n\r\n"
    ).encode()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """Read one HTTP response off a keep-alive connection; returns its status line. One read for
    the head: the senders share the server's two cores, so their cost per request counts."""
    head = await reader.readuntil(b"\r\n\r\n")
    at = head.lower().find(b"content-length:")
    if at != -1:
        await reader.readexactly(int(head[at + 15 : head.index(b"\r\n", at)]))
    return head[: head.index(b"\r\n") + 2]


async def _sender(
    port: int,
    request_head: bytes,
    bodies: list[tuple[str, bytes]],
    stop_at: float,
    acked: list[str],
    latencies: list[float],
    errors: list[str],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for event_id, body in bodies:
            if time.monotonic() >= stop_at:
                break
            started = time.monotonic()
            writer.write(request_head % len(body) + body)
            status_line = await read_response(reader)
            if status_line.split()[1] == b"200":
                acked.append(event_id)
                latencies.append(time.monotonic() - started)
            else:
                errors.append(status_line.decode().strip())
    finally:
        writer.close()


def _event_loop_run(main: Coroutine[Any, Any, float]) -> float:
    """Run the senders on uvloop where it is installed (uvicorn's own loop): less CPU per request
    on the cores the server needs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def load(
    port: int, project: int, key: str, senders: int, seconds: float, out: Any, size_kb: int = 6
) -> None:
    """The load generator process: builds every body first, then sends for `seconds`."""
    per_sender = int(seconds * (8000 if size_kb == 6 else 1500) / senders) + 200  # more than used
    bodies = [
        [make_body(s * per_sender + i, size_kb) for i in range(per_sender)] for s in range(senders)
    ]
    head = request_head(project, key)
    acked: list[str] = []
    latencies: list[float] = []
    errors: list[str] = []

    async def run() -> float:
        started = time.monotonic()
        await asyncio.gather(
            *(
                _sender(port, head, bodies[s], started + seconds, acked, latencies, errors)
                for s in range(senders)
            )
        )
        return time.monotonic() - started

    elapsed = _event_loop_run(run())
    out.send({"acked": acked, "latencies": latencies, "errors": errors, "elapsed": elapsed})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(
    db: str, rules: str = "", max_events: int = 0, server: str = "auto"
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SERVER, db, rules, str(max_events), server],
        stdout=subprocess.PIPE,
        text=True,
    )


def run_once(
    senders: int,
    seconds: float,
    with_rules: bool = False,
    size_kb: int = 6,
    server_kind: str = "auto",
) -> dict[str, Any]:
    target, url = hanging_target()
    with tempfile.TemporaryDirectory() as tmp, target:
        db = os.path.join(tmp, "inbox.db")
        rules = ""
        if with_rules:
            rules = os.path.join(tmp, "alerts.toml")
            Path(rules).write_text(RULES.format(url=url))
        server = start_server(db, rules, server=server_kind)
        try:
            assert server.stdout is not None
            info = json.loads(server.stdout.readline())
            port = int(info["url"].rsplit(":", 1)[1])
            cpu_before = cpu_seconds(server.pid)
            parent, child = multiprocessing.Pipe()
            generator = multiprocessing.Process(
                target=load,
                args=(port, info["id"], info["key"], senders, seconds, child, size_kb),
            )
            generator.start()
            result = parent.recv()
            generator.join()
            rss = peak_rss_mib(server.pid)
            cpu = cpu_seconds(server.pid) - cpu_before
        finally:
            server.terminate()
            server.wait(timeout=30)
        with contextlib.closing(sqlite3.connect(db)) as conn:
            stored = {row[0] for row in conn.execute("SELECT event_id FROM events")}
            issues = conn.execute("SELECT COUNT(*), SUM(count) FROM issues").fetchone()
    acked = result["acked"]
    missing = [event_id for event_id in acked if event_id not in stored]
    lat = sorted(result["latencies"]) or [0.0]
    from fastapi_sentry.inbox._server import choose_server

    return {
        "server": choose_server(server_kind),
        "event_kb": size_kb,
        "rules": 5 if with_rules else 0,
        "senders": senders,
        "seconds": result["elapsed"],
        "acked": len(acked),
        "stored": len(stored),
        "missing": len(missing),
        "errors": len(result["errors"]),
        "rate": len(acked) / result["elapsed"],
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99) - 1 if len(lat) > 1 else 0] * 1000,
        "rss": rss,
        "cpu_us": cpu / max(len(acked), 1) * 1e6,
        "load": os.getloadavg()[0],  # the machine is shared: other work lowers events/s
        "issues": issues,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--rules",
        choices=("without", "with", "both"),
        default="without",
        help="run with five alert rules whose webhook hangs (default: without rules)",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        choices=(6, 50),
        default=[6, 50],
        help="event sizes in KB: sentry-sdk's ~6 KB error, Bugsink's ~50 KB sizing unit",
    )
    parser.add_argument(
        "--server",
        choices=("auto", "granian", "uvicorn"),
        default="auto",
        help="the inbox's HTTP server (auto: granian where installed)",
    )
    args = parser.parse_args()
    print(
        f"inbox ingest on {args.server}, gzip envelopes (one error event each), "
        f"{os.cpu_count()} CPUs"
    )
    print(
        "| event KB | rules | senders | seconds | acked | stored | missing | non-200 | events/s "
        "| p50 ms | p99 ms | server CPU µs/event | server peak RSS MiB | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    import result_file

    load_before = result_file.machine()
    failed = False
    modes = {"without": [False], "with": [True], "both": [False, True]}[args.rules]
    rows = []
    runs = [(k, n, w) for n in args.senders for w in modes for k in args.sizes]
    for size_kb, senders, with_rules in runs:
        r = run_once(senders, args.seconds, with_rules, size_kb, args.server)
        rows.append(r)
        print(
            f"| {r['event_kb']} | {r['rules']} | {r['senders']} | {r['seconds']:.1f} "
            f"| {r['acked']} | {r['stored']} | {r['missing']} | {r['errors']} | {r['rate']:.0f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['cpu_us']:.0f} | {r['rss']:.0f} "
            f"| {r['load']:.1f} |",
            flush=True,
        )
        failed |= r["missing"] > 0 or r["stored"] != r["acked"]
    result_file.write(
        "inbox-ingest",
        {"by_senders": rows},
        settings={
            "senders": args.senders,
            "seconds": args.seconds,
            "rules": args.rules,
            "sizes_kb": args.sizes,
            "server": args.server,
        },
        load_before=load_before,
    )
    if failed:
        sys.exit("FAILED: some acknowledged events are not stored")


if __name__ == "__main__":
    main()
