"""Fault-test support: a receiver that can be told to fail, a small monitored service run the way
production runs it (uvicorn in its own process), a load generator in a third process, and
per-process memory readings.

Everything listens on 127.0.0.1 only. The service and the load generator are separate processes so
that the service's latency and memory are its own, not the test runner's, and SIGTERM behaves as it
does under a process manager.

`python -m tests.fault_support load URL... --requests N --concurrency C` prints one JSON line with
the latency of every request, so a test can compare phases; `load-server` does the same for each
JSON command line on stdin (`LoadGenerator`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import httpx
import sentry_sdk
from fastapi import FastAPI

from fastapi_sentry import install
from tests.support.ports import free_port
from tests.support.receiver import decompress, parse_envelope

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

Mode = Literal["healthy", "refuse", "blackhole", "slow", "error500", "ratelimit"]
FAULT_MODES: tuple[Mode, ...] = ("refuse", "blackhole", "slow", "error500", "ratelimit")


# --- the receiver -------------------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client cut off mid-request is part of the faults under test


@dataclass
class Arrival:
    """One request the receiver read, whatever it then did with it."""

    mode: Mode
    path: str
    at: float
    body: bytes
    encoding: str


def envelope_item_types(arrival: Arrival) -> set[str]:
    envelope = parse_envelope(decompress(arrival.body, arrival.encoding))
    return {str(headers.get("type")) for headers, _ in envelope.items}


class FaultReceiver:
    """A Sentry ingest endpoint on a fixed 127.0.0.1 port whose behaviour a test switches.

    healthy: 200; refuse: nothing listens (connections refused, open ones cut); blackhole: reads
    the request and never answers (until the mode changes, like a server restart); slow: 200 after
    `slow_seconds`; error500: 500; ratelimit: 429 with `Retry-After` and `X-Sentry-Rate-Limits`
    for `retry_after` seconds.
    """

    def __init__(self, *, slow_seconds: float = 5.0) -> None:
        self.slow_seconds = slow_seconds
        self.retry_after = 60
        self.arrivals: list[Arrival] = []
        self._mode: Mode = "healthy"
        self._lock = threading.Condition()
        self._release = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self._listen()
        self.dsn = f"http://faultkey@127.0.0.1:{self.port}/1"

    # -- lifecycle

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Sentry's ingest does

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver._connections.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    mode = receiver._mode
                    release = receiver._release
                    retry_after = receiver.retry_after
                    receiver.arrivals.append(
                        Arrival(
                            mode,
                            self.path,
                            time.monotonic(),
                            body,
                            self.headers.get("Content-Encoding", ""),
                        )
                    )
                    receiver._lock.notify_all()
                if mode in ("blackhole", "refuse"):
                    # never answer; drop the connection when the receiver "restarts"
                    release.wait(timeout=300)
                    self.close_connection = True
                    return
                if mode == "slow":
                    time.sleep(receiver.slow_seconds)
                headers: dict[str, str] = {}
                status = 200
                if mode == "error500":
                    status = 500
                elif mode == "ratelimit":
                    status = 429
                    headers = {
                        "Retry-After": str(retry_after),
                        "X-Sentry-Rate-Limits": f"{retry_after}:error;transaction:key",
                    }
                payload = b"{}" if status == 200 else b'{"detail":"fault test"}'
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _listen(self) -> None:
        server = _QuietServer(("127.0.0.1", self.port), self._handler())
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _cut_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def set_mode(self, mode: Mode, *, retry_after: int = 60) -> None:
        with self._lock:
            previous = self._mode
            self._mode = mode
            self.retry_after = retry_after
            if previous in ("blackhole", "refuse") and mode != previous:
                self._release.set()
                self._release = threading.Event()
        if mode == "refuse" and previous != "refuse":
            self._stop_listening()
            self._cut_connections()  # keep-alive connections must not outlive the listener
        elif previous == "refuse" and mode != "refuse":
            self._listen()

    def close(self) -> None:
        with self._lock:
            self._release.set()
        self._stop_listening()
        self._cut_connections()

    def __enter__(self) -> FaultReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what arrived

    def count(self, mode: Mode | None = None, since: float = 0.0) -> int:
        with self._lock:
            return sum(
                1 for a in self.arrivals if a.at >= since and (mode is None or a.mode == mode)
            )

    def count_carrying(self, item_types: set[str], mode: Mode, since: float = 0.0) -> int:
        """Requests in `mode` whose envelope holds an item of one of `item_types`."""
        with self._lock:
            arrivals = [a for a in self.arrivals if a.at >= since and a.mode == mode]
        return sum(1 for a in arrivals if item_types & envelope_item_types(a))

    def delivered_text(self, since: float = 0.0) -> str:
        """Decompressed bodies of the requests that were answered 200 (healthy or slow)."""
        with self._lock:
            arrivals = [a for a in self.arrivals if a.at >= since and a.mode in ("healthy", "slow")]
        return "\n".join(
            decompress(a.body, a.encoding).decode("utf-8", "replace") for a in arrivals
        )

    def wait_for_text(self, needle: str, timeout: float) -> float:
        """Seconds until a delivered body contained `needle`; TimeoutError after `timeout`."""
        start = time.monotonic()
        while needle not in self.delivered_text():
            if time.monotonic() - start > timeout:
                raise TimeoutError(
                    f"no delivered envelope contained {needle!r} within {timeout} s "
                    f"({self.count()} requests seen, modes "
                    f"{sorted({a.mode for a in self.arrivals})})"
                )
            time.sleep(0.05)
        return time.monotonic() - start


# --- the monitored service ----------------------------------------------------------------------


def create_service_app() -> FastAPI:
    """The service under test; Sentry is configured only through `install` and `SENTRY_*`."""
    app = FastAPI()

    @app.get("/capture")
    async def capture(marker: str = "load") -> dict[str, bool]:
        try:
            raise ValueError(f"fault-test error {marker}")
        except ValueError as exc:
            sentry_sdk.capture_exception(exc)
        return {"ok": True}

    @app.get("/messages/{count}")
    async def messages(count: int, marker: str) -> dict[str, int]:
        for index in range(count):
            sentry_sdk.capture_message(f"{marker} #{index}", level="error")
        return {"captured": count}

    @app.get("/plain")
    async def plain() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/flush")
    def flush(timeout: float = 30.0) -> dict[str, bool]:
        # sync, so it runs in the thread pool: it blocks until the SDK's queue is empty
        sentry_sdk.flush(timeout=timeout)
        return {"ok": True}

    install(app)
    return app


def service_env(dsn: str, queue_size: int, outbox_events: int | None = None) -> dict[str, str]:
    """The monitored service's settings: production, and a queue cap the tests can see
    (`outbox_events`: SENTRY_SPOOL_MAX_EVENTS, when not the default)."""
    env = {
        "SENTRY_DSN": dsn,
        "SENTRY_ENVIRONMENT": "production",
        "SENTRY_TRANSPORT_QUEUE_SIZE": str(queue_size),
    }
    if outbox_events is not None:
        env["SENTRY_SPOOL_MAX_EVENTS"] = str(outbox_events)
    return env


def memory_kb(pid: int, field: str = "VmRSS") -> int:
    """A /proc/<pid>/status memory figure in kB (VmRSS now, VmHWM the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(f"/proc/{pid}/status has no {field} line")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used: steadier than latency on a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("SENTRY_") and k != "ENVIRONMENT"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def wait_until_answers(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    # generous: on a loaded shared machine the service's imports alone have taken 15 s
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode} before answering")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout} s")
        time.sleep(0.05)


@dataclass
class Service:
    """uvicorn serving `create_service_app` in its own process."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; the return code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@contextlib.contextmanager
def running_service(
    sentry_env: Mapping[str, str], log: Path, target: str = "tests.fault_support:create_service_app"
) -> Iterator[Service]:
    """`python -m uvicorn --factory <target>` on a free port, with these `SENTRY_*` variables."""
    port = free_port()
    argv = [PYTHON, "-m", "uvicorn", "--factory", target, "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=child_env(sentry_env), stdout=out, stderr=subprocess.STDOUT
        )
    service = Service(proc, f"http://127.0.0.1:{port}", log)
    try:
        wait_until_answers(service.url + "/plain", proc)
        yield service
    finally:
        service.stop()


# --- load ---------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    latencies: list[float]  # seconds, one per request
    statuses: dict[int, int]
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(n for code, n in self.statuses.items() if code != 200) + len(self.errors)

    def p(self, fraction: float) -> float:
        return percentile(self.latencies, fraction)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a latency that happened)."""
    if not values:
        raise ValueError("percentile of no values; the load run made no requests")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class LoadGenerator:
    """The load generator in its own process, reused across runs (no start-up cost per phase)."""

    def __init__(self, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self._proc = subprocess.Popen(
            [PYTHON, "-m", "tests.fault_support", "load-server"],
            cwd=REPO,
            env=child_env({}),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def run(self, urls: list[str], requests: int, concurrency: int) -> LoadResult:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        command = {"urls": urls, "requests": requests, "concurrency": concurrency}
        self._proc.stdin.write(json.dumps(command).encode() + b"\n")
        self._proc.stdin.flush()
        answer: list[bytes] = []
        stdout = self._proc.stdout
        reader = threading.Thread(target=lambda: answer.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.timeout)
        if not answer or not answer[0]:
            raise RuntimeError(
                f"the load generator gave no result within {self.timeout} s "
                f"(exit code {self._proc.poll()})"
            )
        data = json.loads(answer[0])
        return LoadResult(
            latencies=data["latencies"],
            statuses={int(k): v for k, v in data["statuses"].items()},
            errors=data["errors"],
            seconds=data["seconds"],
        )

    def close(self) -> None:
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _load(urls: list[str], requests: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def worker() -> None:
            for index in counter:
                url = urls[index % len(urls)]
                start = time.perf_counter()
                try:
                    response = await client.get(url)
                except httpx.HTTPError as exc:
                    errors.append(f"{url}: {type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - start)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    return {"latencies": latencies, "statuses": statuses, "errors": errors, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fault_support")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="GET the URLs in turn; print latencies as JSON")
    load.add_argument("urls", nargs="+")
    load.add_argument("--requests", type=int, default=500)
    load.add_argument("--concurrency", type=int, default=4)
    commands.add_parser("load-server", help="run the load described by each JSON line on stdin")
    args = parser.parse_args(argv)
    if args.command == "load":
        result = asyncio.run(_load(args.urls, args.requests, args.concurrency))
        print(json.dumps(result))
        return 0
    for line in sys.stdin:
        command = json.loads(line)
        result = asyncio.run(_load(command["urls"], command["requests"], command["concurrency"]))
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
