"""Microseconds per request with the ASGI app driven in-process: no HTTP server, no load generator.

The HTTP benchmark (bench_overhead.py) moves by about ±10% between runs on a shared machine; this
one measures the same question — what does each configuration add per request? — with the noise of
sockets and a load generator removed. Each configuration runs in its own interpreter (sentry-sdk
patches Starlette's classes process-wide), on a trivial endpoint returning a small JSON. Sampled
transactions go over HTTP to a receiver on 127.0.0.1 that answers 200, as a real one would; it
runs in this (parent) process, not beside the measured app, so its work is not counted as theirs.

Noise on a shared machine only ever adds time, and comes in spells: each round times batches of
500 requests and keeps their first quartile; the ratio uses each configuration's best round
(rounds interleaved, so a slow spell hits every configuration alike); the median is shown beside.

    python benchmarks/bench_inprocess.py [--requests 10000] [--rounds 5]
    python benchmarks/bench_inprocess.py --instructions     # valgrind: ~15 min, repeatable

`--instructions` counts CPU instructions per request under valgrind's callgrind instead of
timing: the same count on every run whatever else the machine does (the count includes the
SDK's background threads, not the receiver, which runs in another process). Each configuration
runs twice, with 500 and 2,500 requests; the difference over 2,000 is the per-request count, so
interpreter start-up and imports cancel out. Sampling at 0.1 is random (about 200 of 2,000
requests, give or take 14), so those rows move by up to about 10% between runs; the others
repeat to within about 0.5%.
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
    # trace_lifecycle="stream": spans sent as span v2 items, batched, instead of transactions
    "sdk-stream-1.0": "bare sentry_sdk.init(FastApiIntegration), stream, traces 1.0",
    "install-stream-0.1": "install(), every feature, stream, traces 0.1",
    "install-stream-1.0": "install(), every feature, stream, traces 1.0",
}


_received = {"envelopes": 0}


def _receiver(port: int = 0) -> str:
    """A receiver in this process; its DSN. Port 80 gives a DSN without a port, as hosted
    Sentry's: sentry-sdk traces its own sends only for DSNs with one."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Sentry's own endpoint

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            _received["envelopes"] += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a measured child that exits mid-connection is not news

    try:
        server = Server(("127.0.0.1", port), Handler)
    except PermissionError:
        raise SystemExit(f"cannot listen on port {port}: ports below 1024 need root") from None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bound = server.server_address[1]
    return f"http://public@127.0.0.1{'' if bound == 80 else f':{bound}'}/1"


_SCOPE: dict[str, Any] = {
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


def _build(config: str, dsn: str, queue_size: int = 100) -> Any:
    """`queue_size` is the SDK's transport queue (its default, 100, unless every event must be
    sent: a flat-out loop outruns the sending thread, and the SDK drops what does not fit)."""
    from fastapi import FastAPI

    if config.startswith("sdk-"):
        import sentry_sdk
        from sentry_sdk.integrations.fastapi import FastApiIntegration

        rate = None if config == "sdk-notrace" else float(config.rsplit("-", 1)[1])
        sentry_sdk.init(
            dsn=dsn,
            integrations=[FastApiIntegration()],
            traces_sample_rate=rate,
            transport_queue_size=queue_size,
            trace_lifecycle="stream" if "-stream-" in config else "static",
        )
    app = FastAPI()
    if config.startswith("install"):
        import fastapi_sentry

        if config == "install-off":
            fastapi_sentry.install(app)
        elif config == "install-notrace":
            fastapi_sentry.install(
                app, dsn=dsn, enable_tracing=False, transport_queue_size=queue_size
            )
        else:
            fastapi_sentry.install(
                app,
                dsn=dsn,
                traces_sample_rate=float(config.rsplit("-", 1)[1]),
                # profiling is decided once per process (1 in 10 in production): pinned off, as
                # the bare SDK rows have none, so a count does not depend on that one draw
                profiles_sample_rate=0.0,
                transport_queue_size=queue_size,
                trace_lifecycle="stream" if "-stream-" in config else "static",
            )

    @app.get("/api/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    pass


async def _drive(app: Any, count: int) -> float:
    scope, receive, send = _SCOPE, _receive, _send
    for _ in range(200):  # warm-up: route caches, first-request set-up
        await app(dict(scope), receive, send)
    # batches of 500: a noisy neighbour spoils a few batches, not the whole figure
    batches = []
    for _ in range(max(1, count // 500)):
        start = time.perf_counter()
        for _ in range(500):
            await app(dict(scope), receive, send)
        batches.append((time.perf_counter() - start) / 500 * 1e6)
    batches.sort()
    return batches[len(batches) // 4]  # the first quartile: the machine's quiet time


def _instructions(config: str, count: int, dsn: str) -> tuple[int, int]:
    """Instructions callgrind counts for start-up plus `count` requests (no timing, no warm-up),
    and how many envelopes reached the receiver meanwhile."""
    from callgrind import count_instructions  # the parent's only: children must not load it

    before = _received["envelopes"]
    total = count_instructions(
        [__file__, "--child", config, "--dsn", dsn, "--requests", str(count), "--plain"]
    )
    time.sleep(0.5)  # the last envelopes' requests may still be being read
    return total, _received["envelopes"] - before


def _peak_rss_mb(config: str, count: int, dsn: str) -> float:
    """Peak RSS of the same child run natively: under valgrind it would be valgrind's."""
    argv = [sys.executable, __file__, "--child", config, "--dsn", dsn, "--plain"]
    out = subprocess.run(
        [*argv, "--requests", str(count)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def _instruction_table(dsn: str, configs: list[str], counts: tuple[int, int] = (500, 2500)) -> None:
    import result_file  # the parent's only: the measured children must not load it

    load_before = result_file.machine()
    per_request: dict[str, float] = {}
    sent: dict[str, float] = {}
    rss: dict[str, float] = {}
    for name in configs:
        small, sent_small = _instructions(name, counts[0], dsn)
        large, sent_large = _instructions(name, counts[1], dsn)
        per_request[name] = (large - small) / (counts[1] - counts[0])
        sent[name] = (sent_small + sent_large) / (counts[0] + counts[1])
        rss[name] = _peak_rss_mb(name, 2500, dsn)
        print(f"{name:16} {per_request[name]:12,.0f} instructions per request", flush=True)
    base = per_request.get("none")
    lines = [
        f"{'configuration':58} {'instr/req':>10} {'ratio':>6} {'vs SDK':>7} {'sent/req':>8}"
        f" {'peak RSS MB':>11}"
    ]
    results: dict[str, dict[str, Any]] = {}
    for name in configs:
        twin = name.replace("install-", "sdk-")
        versus = ""
        if twin != name and twin in per_request:
            versus = f"{per_request[twin] / per_request[name]:6.2f}x"
        ratio = f"{base / per_request[name]:6.2f}" if base else ""
        lines.append(
            f"{CONFIGS[name]:58} {per_request[name]:10,.0f} {ratio:>6} {versus:>7} "
            f"{sent[name]:8.3f} {rss[name]:11.1f}"
        )
        results[name] = {
            "label": CONFIGS[name],
            "instructions_per_request": round(per_request[name]),
            "ratio_to_no_sentry": round(base / per_request[name], 3) if base else None,
            "times_bare_sdk": (round(per_request[twin] / per_request[name], 3) if versus else None),
            "envelopes_sent_per_request": round(sent[name], 4),
            "peak_rss_mb": round(rss[name], 1),
        }
    lines.append(
        "\nratio = instructions of 'no Sentry at all' / this configuration's (1.00 = free);"
        "\nsent/req = envelopes that reached the receiver per request (every sampled transaction"
        "\nis sent and counted: the queue is large and the child flushes before it exits);"
        "\npeak RSS MB = the same child's 2,500 requests run without valgrind"
    )
    result_file.write(
        "inprocess-instructions",
        results,
        table="\n".join(lines),
        settings={"requests": list(counts), "tool": "valgrind --tool=callgrind"},
        load_before=load_before,
    )


async def _plain_drive(app: Any, count: int) -> None:
    """Requests and nothing else: what callgrind counts must not include timing code."""
    scope, receive, send = _SCOPE, _receive, _send
    for _ in range(count):
        await app(dict(scope), receive, send)


def _child(config: str, count: int, dsn: str, plain: bool = False) -> None:
    if plain:
        # every sampled transaction is sent, and its sending counted: a big queue, then a flush
        asyncio.run(_plain_drive(_build(config, dsn, queue_size=100_000), count))
        if "sentry_sdk" in sys.modules:
            import sentry_sdk

            sentry_sdk.flush(timeout=600)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"config": config, "peak_rss_mb": peak_mb}))
        return
    app = _build(config, dsn)
    micros = asyncio.run(_drive(app, count))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"config": config, "us_per_request": micros, "peak_rss_mb": peak_mb}))


def _profile(config: str, count: int) -> None:
    """Where the time of one configuration goes: cProfile's own time per function, grouped.

    cProfile slows every call down, small ones most, so read the shares, not the µs.
    """
    import cProfile
    import pstats

    app = _build(config, _receiver())
    asyncio.run(_drive(app, 200))
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(_drive(app, count))
    profiler.disable()
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in stats.values())
    groups: dict[str, float] = {}
    ours: list[tuple[float, str]] = []
    for (filename, line, function), row in stats.items():
        own = row[2]
        if "fastapi_sentry" in filename:
            group = "fastapi_sentry"
        elif "sentry_sdk" in filename:
            group = "sentry_sdk"
        else:
            group = "app, framework, event loop, stdlib"
        groups[group] = groups.get(group, 0.0) + own
        if group != "app, framework, event loop, stdlib":
            short = filename.split("site-packages/")[-1].split("src/")[-1]
            ours.append((own, f"{short}:{line} {function}"))
    print(f"profile of {config!r}, {count} requests (cProfile: shares matter, not µs)")
    for group, own in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"  {own / total:6.1%}  {group}")
    print("  top functions of fastapi_sentry and sentry_sdk (own time):")
    for own, name in sorted(ours, reverse=True)[:25]:
        print(f"  {own / total:6.1%}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--profile", choices=CONFIGS, help="profile one configuration instead")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under valgrind instead"
    )
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help="comma-separated, for --instructions"
    )
    parser.add_argument(
        "--counts",
        default="500,2500",
        help="the two request counts whose difference --instructions divides (e.g. 100,500: "
        "a fifth of the time on a busy machine, with more spread at traces 0.1)",
    )
    parser.add_argument(
        "--receiver-port",
        type=int,
        default=0,
        help="80: a DSN without a port, as hosted Sentry's (needs root); default: any free port",
    )
    args = parser.parse_args()
    if args.profile:
        _profile(args.profile, args.requests)
        return 0
    if args.child:
        _child(args.child, args.requests, args.dsn, args.plain)
        return 0
    dsn = _receiver(args.receiver_port)
    if args.instructions:
        chosen = args.configs.split(",")
        unknown = sorted(set(chosen) - set(CONFIGS))
        if unknown:
            parser.error(f"unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}")
        small, large = (int(n) for n in args.counts.split(","))
        if not 0 <= small < large:
            parser.error(f"--counts needs two request counts, smaller first; got {args.counts!r}")
        _instruction_table(dsn, chosen, (small, large))
        return 0
    import result_file  # the parent's only: the measured children must not load it

    load_before = result_file.machine()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    for round_number in range(args.rounds):  # interleaved, so load hits every config alike
        for name in CONFIGS:
            out = subprocess.run(
                [
                    *(sys.executable, __file__, "--child", name, "--dsn", dsn),
                    *("--requests", str(args.requests)),
                ],
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
    base = min(r["us_per_request"] for r in results["none"])
    lines = [
        f"{'configuration':58} {'best µs':>8} {'median':>7} {'ratio':>6} {'vs SDK':>7} "
        f"{'RSS MB':>7}"
    ]
    best = {name: min(r["us_per_request"] for r in results[name]) for name in CONFIGS}
    figures: dict[str, dict[str, Any]] = {}
    for name, label in CONFIGS.items():
        median = statistics.median(r["us_per_request"] for r in results[name])
        rss = max(r["peak_rss_mb"] for r in results[name])
        twin = name.replace("install-", "sdk-")
        versus = f"{best[twin] / best[name]:6.2f}x" if twin != name and twin in best else ""
        lines.append(
            f"{label:58} {best[name]:8.1f} {median:7.1f} {base / best[name]:6.2f} "
            f"{versus:>7} {rss:7.1f}"
        )
        figures[name] = {
            "label": label,
            "best_us_per_request": round(best[name], 2),
            "median_us_per_request": round(median, 2),
            "ratio_to_no_sentry": round(base / best[name], 3),
            "times_bare_sdk": round(best[twin] / best[name], 3) if versus else None,
            "peak_rss_mb": round(rss, 1),
            "rounds": results[name],
        }
    lines.append(
        "\nratio = requests per second relative to 'no Sentry at all' (1.00 = free), best rounds;"
        "\nvs SDK = how many times the bare SDK's time per request at the same tracing rate"
    )
    result_file.write(
        "inprocess",
        figures,
        table="\n".join(lines),
        settings={"requests": args.requests, "rounds": args.rounds},
        load_before=load_before,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
