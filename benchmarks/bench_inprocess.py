"""Microseconds per request with the ASGI app driven in-process: no HTTP server, no load generator.

The HTTP benchmark (bench_overhead.py) moves by about ±10% between runs on a shared machine; this
one measures the same question — what does each configuration add per request? — with the noise of
sockets and a second process removed. Each configuration runs in its own interpreter (sentry-sdk
patches Starlette's classes process-wide), on a trivial endpoint returning a small JSON. Sampled
transactions go to a receiver thread on 127.0.0.1 that answers 200, as a real one would.

    python benchmarks/bench_inprocess.py [--requests 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONFIGS: dict[str, str] = {
    "none": "no Sentry at all",
    "install-off": "install(), no DSN",
    "sdk-notrace": "bare sentry_sdk.init(FastApiIntegration), tracing off",
    "sdk-0.1": "bare sentry_sdk.init(FastApiIntegration), traces 0.1",
    "sdk-1.0": "bare sentry_sdk.init(FastApiIntegration), traces 1.0",
    "install-notrace": "install(), every feature, tracing off",
    "install-0.1": "install(), every feature, traces 0.1",
    "install-1.0": "install(), every feature, traces 1.0",
}


def _receiver() -> str:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://public@127.0.0.1:{server.server_address[1]}/1"


def _build(config: str) -> Any:
    from fastapi import FastAPI

    dsn = _receiver()
    if config.startswith("sdk-"):
        import sentry_sdk
        from sentry_sdk.integrations.fastapi import FastApiIntegration

        rate = None if config == "sdk-notrace" else float(config.split("-")[1])
        sentry_sdk.init(dsn=dsn, integrations=[FastApiIntegration()], traces_sample_rate=rate)
    app = FastAPI()
    if config.startswith("install"):
        import fastapi_sentry

        if config == "install-off":
            fastapi_sentry.install(app)
        elif config == "install-notrace":
            fastapi_sentry.install(app, dsn=dsn, enable_tracing=False)
        else:
            fastapi_sentry.install(app, dsn=dsn, traces_sample_rate=float(config.split("-")[1]))

    @app.get("/api/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


async def _drive(app: Any, count: int) -> float:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/hello",
        "raw_path": b"/api/hello",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    for _ in range(200):  # warm-up: route caches, first-request set-up
        await app(dict(scope), receive, send)
    start = time.perf_counter()
    for _ in range(count):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - start) / count * 1e6


def _child(config: str, count: int) -> None:
    app = _build(config)
    micros = asyncio.run(_drive(app, count))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"config": config, "us_per_request": micros, "peak_rss_mb": peak_mb}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.requests)
        return 0
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    for round_number in range(args.rounds):  # interleaved, so load hits every config alike
        for name in CONFIGS:
            out = subprocess.run(
                [sys.executable, __file__, "--child", name, "--requests", str(args.requests)],
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(
                f"round {round_number + 1}/{args.rounds} {name:16} "
                f"{results[name][-1]['us_per_request']:8.1f} µs",
                flush=True,
            )
    base = statistics.median(r["us_per_request"] for r in results["none"])
    print(f"\n{'configuration':62} {'µs/req':>8} {'range':>15} {'ratio':>6} {'RSS MB':>7}")
    for name, label in CONFIGS.items():
        values = [r["us_per_request"] for r in results[name]]
        median = statistics.median(values)
        rss = max(r["peak_rss_mb"] for r in results[name])
        spread = f"{min(values):.1f}-{max(values):.1f}"
        print(f"{label:62} {median:8.1f} {spread:>15} {base / median:6.2f} {rss:7.1f}")
    print("\nratio = requests per second relative to 'no Sentry at all' (1.00 = free)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
