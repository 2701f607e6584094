"""Errors lost under saturation and across an outage: bare sentry-sdk beside `install()`.

    .venv/bin/python benchmarks/bench_loss.py [--seconds 8] [--error-rate 40]

A trivial service (uvicorn, one worker, its own process) is saturated by `wrk` (one thread, 16
connections, on a route that does nothing) while a second client calls a route that raises, at a
steady rate. The receiver is a Sentry ingest endpoint in this process that counts what arrives.
For each configuration: errors raised (the 500s the second client got), errors delivered while the
load ran and after a graceful stop (SIGTERM; the app's shutdown flush runs), transactions sampled
(handed to the transport, counted inside the service) and delivered, and the service's peak RSS.
Configurations: traces 1.0 and 0.1 with the receiver healthy, and traces 0.1 with the receiver
refusing connections for 3 s from 1 s into a 10 s load. Needs `wrk`
(`bash scripts/setup.sh bench`); without it a bounded Python load generator is used and the
result file says so. Writes `benchmarks/results/loss-<time>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402
import sentry_sdk  # noqa: E402
from fastapi import FastAPI  # noqa: E402

import fastapi_sentry  # noqa: E402

CONNECTIONS = 16
OUTAGE_AT = 1.0  # seconds into the load
OUTAGE_SECONDS = 3.0
MARKER = "loss-bench error"


# --- the service (runs in its own process: `uvicorn --factory benchmarks.bench_loss:create_app`)


def create_app() -> FastAPI:
    """`BENCH_MODE=bare`: `sentry_sdk.init` as its README shows; `ours`: `install(app)`."""
    app = FastAPI()
    counts = {"transaction": 0, "event": 0}

    @app.get("/plain")
    async def plain() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/boom/{n}")
    async def boom(n: int) -> None:
        raise ValueError(f"{MARKER} #{n}")

    @app.get("/health/handed")
    async def handed() -> dict[str, int]:
        return counts

    if os.environ["BENCH_MODE"] == "bare":
        sentry_sdk.init(
            dsn=os.environ["SENTRY_DSN"],
            traces_sample_rate=float(os.environ["SENTRY_TRACES_SAMPLE_RATE"]),
        )
    else:
        fastapi_sentry.install(app)
    transport = sentry_sdk.get_client().transport
    assert transport is not None
    capture = transport.capture_envelope

    def counting(envelope: Any) -> None:
        for item in envelope.items:
            if item.type in counts:
                counts[item.type] += 1
        capture(envelope)

    transport.capture_envelope = counting  # type: ignore[method-assign]
    return app


# --- the benchmark


@dataclass
class Row:
    case: str
    sdk: str
    traces: float
    errors_raised: int
    errors_live: int
    errors_after_stop: int
    errors_lost: int
    duplicates: int
    transactions_sampled: int
    transactions_delivered: int
    requests_per_second: float
    load_generator: str
    peak_rss_mb: float


def delivered(receiver: Any) -> tuple[list[str], int]:
    """The error markers (with repeats) and the transactions in what was answered 200."""
    from tests.support.receiver import decompress, parse_envelope

    with receiver._lock:
        arrivals = [a for a in receiver.arrivals if a.mode == "healthy"]
    markers, transactions = [], 0
    for arrival in arrivals:
        for headers, payload in parse_envelope(decompress(arrival.body, arrival.encoding)).items:
            if headers.get("type") == "transaction":
                transactions += 1
            elif headers.get("type") == "event" and MARKER.encode() in payload:
                event = json.loads(payload)
                for exc in (event.get("exception") or {}).get("values", []):
                    if str(exc.get("value", "")).startswith(MARKER):
                        markers.append(exc["value"])
    return markers, transactions


class ErrorClient:
    """Calls the raising route `rate` times a second until stopped; counts the 500s."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.rate, self.raised = url, rate, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            start, n = time.monotonic(), 0
            while not self._stop.is_set():
                try:
                    if client.get(f"{self.url}/boom/{n}").status_code == 500:
                        self.raised += 1
                except httpx.HTTPError:
                    pass
                n += 1
                self._stop.wait(max(0.0, start + n / self.rate - time.monotonic()))

    def __enter__(self) -> ErrorClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def saturate(url: str, seconds: float) -> tuple[str, float]:
    """Load `/plain` for `seconds`; the generator's name and requests per second."""
    if shutil.which("wrk"):
        out = subprocess.run(
            ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:.0f}s", f"{url}/plain"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in out.splitlines():
            if line.startswith("Requests/sec:"):
                return "wrk", float(line.split()[1])
        raise RuntimeError(f"wrk printed no summary: {out}")
    from tests.fault_support import LoadGenerator

    with LoadGenerator() as load:
        started = time.monotonic()
        done = 0
        while time.monotonic() - started < seconds:  # bounded: 400 requests a round
            done += len(load.run([f"{url}/plain"], 400, CONNECTIONS).latencies)
        return "python", done / (time.monotonic() - started)


def fast_receiver() -> Any:
    """The fault tests' receiver, answering without Nagle's delay (its headers and body are two
    writes: with delayed ACKs each answer would wait 40 ms, a receiver slower than any real one)."""
    from http.server import BaseHTTPRequestHandler

    from tests.fault_support import FaultReceiver

    class FastReceiver(FaultReceiver):
        def _handler(self) -> type[BaseHTTPRequestHandler]:
            handler = super()._handler()
            handler.disable_nagle_algorithm = True
            return handler

    return FastReceiver()


def run_case(case: str, sdk: str, traces: float, args: argparse.Namespace, log: Path) -> Row:
    from tests.fault_support import memory_kb, running_service

    with fast_receiver() as receiver:
        env = {
            "BENCH_MODE": sdk,
            "SENTRY_DSN": receiver.dsn,
            "SENTRY_ENVIRONMENT": "production",
            "SENTRY_TRACES_SAMPLE_RATE": str(traces),
            "SENTRY_PROFILES_SAMPLE_RATE": "0",
        }
        target = "benchmarks.bench_loss:create_app"
        with running_service(env, log, target=target) as service:
            outage: threading.Timer | None = None
            if case == "outage":

                def down() -> None:
                    receiver.set_mode("refuse")
                    threading.Timer(OUTAGE_SECONDS, receiver.set_mode, ("healthy",)).start()

                outage = threading.Timer(OUTAGE_AT, down)
                outage.start()
            with ErrorClient(service.url, args.error_rate) as errors:
                seconds = args.outage_seconds if case == "outage" else args.seconds
                generator, rps = saturate(service.url, seconds)
            live, _ = delivered(receiver)
            handed = httpx.get(f"{service.url}/health/handed", timeout=10).json()
            peak = memory_kb(service.pid, "VmHWM")
            service.stop(timeout=30)
        markers, transactions = delivered(receiver)
    unique = set(markers)
    return Row(
        case=case,
        sdk="bare sentry-sdk" if sdk == "bare" else "install()",
        traces=traces,
        errors_raised=errors.raised,
        errors_live=len(set(live)),
        errors_after_stop=len(unique),
        errors_lost=errors.raised - len(unique),
        duplicates=len(markers) - len(unique),
        transactions_sampled=handed["transaction"],
        transactions_delivered=transactions,
        requests_per_second=round(rps),
        load_generator=generator,
        peak_rss_mb=round(peak / 1024, 1),
    )


def table(rows: list[Row], load: tuple[float, ...]) -> str:
    lines = [
        "| Case | SDK | Traces | Errors raised | Delivered live | After graceful stop | Lost "
        "| Transactions sampled / delivered | req/s | Peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.case} | {r.sdk} | {r.traces} | {r.errors_raised} | {r.errors_live} "
            f"| {r.errors_after_stop} | **{r.errors_lost}** "
            f"| {r.transactions_sampled:,} / {r.transactions_delivered:,} "
            f"| {r.requests_per_second:,.0f} | {r.peak_rss_mb} MB |"
        )
    lines.append(f"\nload average before: {', '.join(f'{x:.2f}' for x in load)}")
    return "\n".join(lines)


def main() -> int:
    import result_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="load per case")
    parser.add_argument(
        "--outage-seconds", type=float, default=10.0, help="load in the outage case"
    )
    parser.add_argument("--error-rate", type=float, default=40.0, help="errors raised a second")
    args = parser.parse_args()
    before = result_file.machine()
    cases = [
        ("saturated", 1.0),
        ("saturated", 0.1),
        ("outage", 0.1),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, traces in cases:
            for sdk in ("bare", "ours"):
                row = run_case(case, sdk, traces, args, Path(tmp) / f"{case}-{sdk}-{traces}.log")
                print(json.dumps(asdict(row)), flush=True)
                rows.append(row)
    result_file.write(
        "loss",
        {"rows": [asdict(r) for r in rows]},
        table=table(rows, tuple(before["loadavg"])),
        settings={
            "seconds": args.seconds,
            "error_rate": args.error_rate,
            "connections": CONNECTIONS,
            "outage": f"receiver refusing connections {OUTAGE_SECONDS} s, "
            f"from {OUTAGE_AT} s into the load",
        },
        load_before=before,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
