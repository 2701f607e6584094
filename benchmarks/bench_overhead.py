"""What Sentry costs per request: the example shop under uvicorn, six ways, one run, one machine.

    .venv/bin/python benchmarks/bench_overhead.py            # from the repository root

Needs `wrk`, PostgreSQL and Redis on 127.0.0.1. Each configuration runs in its own uvicorn process
(one worker, uvloop + httptools), one after another; wrk (one thread, in its own process) first
warms it up, then loads it for a fixed time, and we report the requests it completed. Besides
requests per second and wrk's p50/p99 latency, the server's own CPU time per request is
reported: it is much less sensitive to other load on the machine than the throughput.

Configurations:
  a  no Sentry at all
  b  fastapi_sentry.install() without a DSN
  c  bare sentry_sdk.init(integrations=[FastApiIntegration()], traces_sample_rate=0.1)
  d  fastapi_sentry.install() with every feature on, traces 0.1 (events really sent)
  e  the seeds' pattern: a BaseHTTPMiddleware copying headers into the scope and loading the
     user from the database on every request, their before_send filters, traces 0.1
  f  (d) with traces 1.0
  g, h  diagnostics, run only when asked (`--configs abcdefgh`): (d) in a process that
        profiles, and (d) without tracing

Profiling is decided once per process (`profile_session_sample_rate`, 0.1 in production): a
tenth of the servers would run sentry-sdk's profiler thread for every sampled request and the
rest none, so a cell's median would depend on which servers drew it. (d) and (f) are pinned to
the nine in ten that do not profile (as the bare SDK rows, which have no profiling), (g) to the
one that does.

`--profile` runs the chosen configurations once each under py-spy (GIL samples) instead, and
prints which Sentry functions the server's CPU time goes to.

The same module is the uvicorn app factory (`bench_overhead:create_bench_app`), chosen by
the BENCH_CONFIG environment variable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

CONFIGS = {
    "a": "no Sentry at all",
    "b": "install(), no DSN",
    "c": "bare sentry_sdk.init(FastApiIntegration), traces 0.1",
    "d": "install(), every feature, traces 0.1",  # profiling session not sampled, see below
    "e": "seeds' pattern (BaseHTTPMiddleware + DB user lookup), traces 0.1",
    "f": "install(), every feature, traces 1.0",
    # diagnostics (not run by default): what part of (d) tracing and profiling cost
    "g": "(d) in a process whose profiling session is sampled",
    "h": "(d) without tracing (errors only)",
    # issue 7's tracing-off and 1.0 comparisons over HTTP (not run by default): `--configs acdfhij`
    "i": "bare sentry_sdk.init(FastApiIntegration), tracing off",
    "j": "bare sentry_sdk.init(FastApiIntegration), traces 1.0",
}
DEFAULT_CONFIGS = "abcdef"
ENDPOINTS = {"trivial": "/api/hello", "realistic": "/api/products/1"}
#: (numerator, denominator, target) for the ratios of requests per second.
RATIOS = (
    ("b", "a", 0.99),
    ("d", "c", 1.0),
    ("d", "e", 1.5),
    ("d", "a", None),
    ("f", "a", None),
    ("h", "a", None),
    ("i", "a", None),
    ("h", "i", None),
    ("c", "a", None),
    ("j", "a", None),
    ("f", "j", None),
)
JWT_SECRET = "bench-secret"

WRK_SCRIPT = """
function done(summary, latency, requests)
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


# --- the server side ------------------------------------------------------------------------


def create_bench_app() -> Any:
    """The uvicorn factory: the example shop wired as BENCH_CONFIG says."""
    sys.path.insert(0, str(REPO_ROOT))
    from examples.shop.app import create_app

    config = os.environ["BENCH_CONFIG"]
    dsn = os.environ.get("BENCH_DSN")
    if config == "a":
        return create_app(with_sentry=False)
    if config in ("b", "d", "f", "g", "h"):
        return create_app()  # install(); the SENTRY_* variables decide the rest
    if config in ("c", "i", "j"):
        import sentry_sdk
        from sentry_sdk.integrations.fastapi import FastApiIntegration

        rate = {"c": 0.1, "i": None, "j": 1.0}[config]
        sentry_sdk.init(dsn=dsn, integrations=[FastApiIntegration()], traces_sample_rate=rate)
        return create_app(with_sentry=False)
    if config == "e":
        _seed_init(dsn)
        app = create_app(with_sentry=False)
        app.add_middleware(_seed_middleware())
        return app
    raise SystemExit(f"BENCH_CONFIG is {config!r}; use one of {', '.join(CONFIGS)}")


def _seed_init(dsn: str | None) -> None:
    """Seed 002's init, minus the arguments sentry-sdk 2.x rejects."""
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.fastapi import FastApiIntegration
    from sentry_sdk.integrations.httpx import HttpxIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.integrations.redis import RedisIntegration
    from sentry_sdk.integrations.sqlalchemy import SqlalchemyIntegration

    def filter_sensitive_data(event: Any, hint: Any) -> Any:
        request = event.get("request") or {}
        headers = request.get("headers") or {}
        for header in ("authorization", "cookie", "x-api-key"):
            if header in headers:
                headers[header] = "[Filtered]"
        data = request.get("data")
        if isinstance(data, dict):
            for field in ("password", "token", "secret", "key", "credit_card"):
                if field in data:
                    data[field] = "[Filtered]"
        for exception in (event.get("exception") or {}).get("values", []):
            if exception.get("type") in ("ValidationError", "HTTPException"):
                return None
        return event

    def filter_transaction_data(event: Any, hint: Any) -> Any:
        name = event.get("transaction", "")
        if name.endswith("/health") or name.startswith("/static/"):
            return None
        return event

    sentry_sdk.init(
        dsn=dsn,
        environment="production",
        release="1.0.0",
        server_name="localhost",
        integrations=[
            FastApiIntegration(
                transaction_style="endpoint",
                failed_request_status_codes={400, 401, 403, 404, 413, 429, 500, 502, 503, 504},
            ),
            SqlalchemyIntegration(),
            CeleryIntegration(monitor_beat_tasks=True, propagate_traces=True),
            RedisIntegration(),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
            HttpxIntegration(),
        ],
        traces_sample_rate=0.1,
        profiles_sample_rate=0.1,
        sample_rate=1.0,
        attach_stacktrace=True,
        send_default_pii=False,
        max_breadcrumbs=100,
        before_send=filter_sensitive_data,
        before_send_transaction=filter_transaction_data,
    )


def _seed_middleware() -> Any:
    """Seed 002's SentryContextMiddleware, with the isolation scope for `configure_scope`.

    BaseHTTPMiddleware and the synchronous user query inside `dispatch` are the point: this is
    the pattern being measured, not one to copy.
    """
    import sentry_sdk
    from examples.shop.auth import InvalidTokenError, decode_token
    from examples.shop.models import User, sessions
    from sqlalchemy import select
    from starlette.middleware.base import BaseHTTPMiddleware

    class SentryContextMiddleware(BaseHTTPMiddleware):
        async def dispatch(self, request: Any, call_next: Any) -> Any:
            scope = sentry_sdk.get_isolation_scope()
            scope.set_tag("request_id", getattr(request.state, "request_id", "unknown"))
            scope.set_tag("endpoint", f"{request.method} {request.url.path}")
            scope.set_context(
                "request",
                {
                    "method": request.method,
                    "url": str(request.url),
                    "headers": dict(request.headers),
                    "query_params": dict(request.query_params),
                },
            )
            self._add_user_context(request, scope)
            response = await call_next(request)
            if response.status_code >= 400:
                scope.set_context(
                    "response",
                    {"status_code": response.status_code, "headers": dict(response.headers)},
                )
            return response

        def _add_user_context(self, request: Any, scope: Any) -> None:
            auth_header = request.headers.get("authorization")
            if not auth_header or not auth_header.startswith("Bearer "):
                return
            try:
                payload = decode_token(auth_header.split(" ")[1], JWT_SECRET)
            except InvalidTokenError:
                return
            user_id = payload.get("sub")
            if user_id:
                settings = request.app.state.settings
                with sessions(settings)() as db:
                    user = db.execute(select(User).where(User.id == int(user_id))).scalars().first()
                    if user:
                        scope.set_user(
                            {"id": str(user.id), "email": user.email, "username": user.name}
                        )
                        scope.set_tag("user_id", str(user.id))

    return SentryContextMiddleware


# --- a receiver that answers 200, so the SDK really sends ---------------------------------------


class _Receiver:
    def __init__(self) -> None:
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests += 1
                # one write: headers and body written apart meet Nagle's algorithm and the
                # client's delayed ACK, 40 ms per envelope, which capped the SDK at ~23 a second
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that hangs up (the server being stopped) is not news

        self.server = Server(("127.0.0.1", 0), Handler)
        self.dsn = f"http://benchkey@127.0.0.1:{self.server.server_address[1]}/1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the runner -----------------------------------------------------------------------------


def _proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _wrk(url: str, seconds: float, connections: int, script: Path, token: str) -> dict[str, Any]:
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
    ]
    argv += [str(script), "-H", f"Authorization: Bearer {token}", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            result: dict[str, Any] = json.loads(line[len("BENCH ") :])
            return result
    raise RuntimeError(f"wrk printed no summary: {out.stdout}{out.stderr}")


def _server_env(config: str, base: dict[str, str], dsn: str) -> dict[str, str]:
    env = dict(base)
    env["BENCH_CONFIG"] = config
    if config in ("c", "e", "i", "j"):
        env["BENCH_DSN"] = dsn
    if config in ("d", "f", "g", "h"):
        env.update(
            {
                "SENTRY_DSN": dsn,
                "SENTRY_ENVIRONMENT": "production",
                "SENTRY_RELEASE": "shop@bench",
                "SENTRY_TRACES_SAMPLE_RATE": "1.0" if config == "f" else "0.1",
                "SENTRY_ENABLE_LOGS": "true",
            }
        )
    if config in ("d", "f"):
        env["SENTRY_PROFILES_SAMPLE_RATE"] = "0"
    if config == "g":
        env["SENTRY_PROFILES_SAMPLE_RATE"] = "1.0"
    if config == "h":
        env["SENTRY_ENABLE_TRACING"] = "false"
    return env


def run_one(
    config: str,
    path: str,
    base_env: dict[str, str],
    args: argparse.Namespace,
    tools: dict[str, Any],
    profile: Path | None = None,
) -> dict[str, Any]:
    from fastapi_sentry._cli.demo import _free_port  # the one helper, shared with the demo

    port = _free_port()
    log = tools["workdir"] / f"server-{config}.log"
    argv = [sys.executable, "-m", "uvicorn", "bench_overhead:create_bench_app", "--factory"]
    argv += ["--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    with log.open("wb") as out:
        server = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=_server_env(config, base_env, tools["dsn"]),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}{path}"
            _wait_ready(url, server, log)
            _wrk(url, args.warmup, args.connections, tools["script"], tools["token"])
            spy = _start_py_spy(server.pid, args.duration, profile) if profile else None
            cpu_before = _cpu_seconds(server.pid)
            received_before = tools["receiver"].requests
            result = _wrk(url, args.duration, args.connections, tools["script"], tools["token"])
            cpu = _cpu_seconds(server.pid) - cpu_before
            # what the SDK got out during the load: when sending cannot keep up, its queue (100)
            # drops the rest, and a cheaper send shows here rather than in req/s
            result["envelopes_received"] = tools["receiver"].requests - received_before
            if spy is not None:
                spy.wait(60)
            result["peak_rss_mb"] = round(_proc_status(server.pid, "VmHWM") / 1024, 1)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(5)
    seconds = result["duration_us"] / 1e6
    result["rps"] = round(result["requests"] / seconds, 1)
    requests = result["requests"]
    result["server_cpu_us_per_request"] = round(cpu * 1e6 / requests, 1) if requests else None
    result["envelopes_per_request"] = (
        round(result["envelopes_received"] / requests, 4) if requests else None
    )
    return result


def _start_py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    argv += ["--rate", "250", "--format", "raw", "--gil", "--nonblocking", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_SENTRY_PATHS = ("sentry_sdk/", "fastapi_sentry/")
#: The app's own stack and the libraries it calls (whose I/O the SDK's wrappers enclose).
_FRAMEWORK_PATHS = (
    "starlette/",
    "fastapi/",
    "uvicorn/",
    "examples/",
    "anyio/",
    "sqlalchemy/",
    "psycopg/",
    "redis/",
    "httpx/",
    "httpcore/",
)


def _function(frame: str) -> str:
    function, _, where = frame.partition(" (")
    return f"{where.rsplit('/', 1)[-1].split(':')[0]}:{function}"


#: Where Sentry's per-request work goes; a sample belongs to the innermost Sentry frame that
#: matches one of these (function-name fragments), checked from the leaf up.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fastapi-sentry: scrubbing", ("_scrubbing.py", "before_send")),
    ("fastapi-sentry: request context middleware", ("_middleware.py", "_users.py")),
    ("fastapi-sentry: traces sampler", ("_filters.py",)),
    ("transport thread: envelope, gzip, HTTP", ("worker.py", "transport.py", "envelope.py")),
    (
        "sampled transactions: finish, serialise",
        ("Transaction.finish", "capture_event", "_prepare_event", "serializer.py"),
    ),
    ("release-health sessions", ("session", "Session")),
    (
        "trace start: continue_trace, transaction, sampling",
        ("continue_trace", "start_transaction", "Transaction.__init__", "sampl", "Propagation"),
    ),
    ("profiler", ("profiler",)),
    ("scope fork / lookups", ("isolation_scope", "Scope.__copy__", "get_client", "scope.py")),
    ("Starlette middleware wrappers", ("_create_span_call", "exceptionmiddleware")),
    ("FastAPI handler wrapper", ("fastapi.py:",)),
    ("ASGI wrapper (headers, request info, rest)", ("asgi.py", "_asgi_common.py", "starlette.py")),
)


def profile_summary(collapsed: Path, cpu_us_per_request: float | None = None, top: int = 15) -> str:
    """Which parts of Sentry own the GIL-holding samples.

    A sample is Sentry's when, walking from the leaf up, the first frame that is either Sentry
    code or the app's stack (Starlette, FastAPI, uvicorn, the shop) is Sentry code: its own
    work and whatever stdlib it calls (json, uuid, gzip). Work of the app that merely runs
    inside Sentry's wrappers stays the app's. Sentry's samples are then grouped by component,
    and each Sentry function on such a stack is credited once (inclusive).
    """
    total = 0
    sentry = 0
    inclusive: dict[str, int] = {}
    components: dict[str, int] = {}
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for depth in range(len(frames) - 1, -1, -1):
            frame = frames[depth]
            if any(p in frame for p in _SENTRY_PATHS):
                sentry += count
                ours = [
                    _function(f) for f in frames[: depth + 1] if any(p in f for p in _SENTRY_PATHS)
                ]
                for name in set(ours):
                    inclusive[name] = inclusive.get(name, 0) + count
                component = _component(ours)
                components[component] = components.get(component, 0) + count
                break
            if any(p in frame for p in _FRAMEWORK_PATHS):
                break
    if not total:
        return "py-spy recorded no samples"

    def share(count: int) -> str:
        text = f"{count / total:6.1%}"
        if cpu_us_per_request:
            text += f"  ~{count / total * cpu_us_per_request:5.0f} µs/req"
        return text

    lines = [f"{total} samples holding the GIL; {share(sentry).strip()} are Sentry's own work:"]
    for name, count in sorted(components.items(), key=lambda item: -item[1]):
        lines.append(f"  {share(count)}  {name}")
    lines.append("by Sentry function (inclusive of the Sentry work it calls):")
    for name, count in sorted(inclusive.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {share(count)}  {name}")
    return "\n".join(lines)


def _component(functions: list[str]) -> str:
    for function in reversed(functions):
        for name, fragments in COMPONENTS:
            if any(fragment in function for fragment in fragments):
                return name
    return "other Sentry code"


def _wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server for {url} did not start; its log:\n{log.read_text()}")
        time.sleep(0.1)


def _table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        f"{'endpoint':<10} {'cfg':<3} {'configuration':<66} {'requests':>9} {'req/s':>7} "
        f"{'(range over rounds)':>19} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs/req':>10} "
        f"{'peak RSS MB':>11} {'errors':>6} {'sent/req':>8}"
    ]
    for endpoint, by_config in results.items():
        for config, r in by_config.items():
            head = f"{endpoint:<10} {config:<3} {CONFIGS[config]:<66} {r['requests']:>9}"
            if not r["requests"]:
                lines.append(f"{head} {'stalled: no request completed':>37}")
                continue
            spread = f"{min(r['rps_all_rounds']):.0f}-{max(r['rps_all_rounds']):.0f}"
            lines.append(
                f"{head} {r['rps']:>7.0f} {spread:>19} {r['p50_us'] / 1000:>7.2f} "
                f"{r['p99_us'] / 1000:>7.2f} {r['server_cpu_us_per_request']:>10.0f} "
                f"{r['peak_rss_mb']:>11.1f} {r['status_errors'] + r['socket_errors']:>6} "
                f"{r.get('envelopes_per_request') or 0:>8.3f}"
            )
    lines.append("")
    lines.append(f"{'ratio':<8} {'endpoint':<10} {'req/s':>7} {'CPU':>7} {'target':>8}  met")
    for endpoint, by_config in results.items():
        for numerator, denominator, target in RATIOS:
            if numerator not in by_config or denominator not in by_config:
                continue
            top, bottom = by_config[numerator], by_config[denominator]
            shown = "" if target is None else f"{target:.2f}"
            if not top["requests"] or not bottom["requests"]:
                stalled = numerator if not top["requests"] else denominator
                met = "-" if target is None else ("yes" if stalled == denominator else "NO")
                lines.append(
                    f"({numerator})/({denominator}) {endpoint:<10} ({stalled}) stalled"
                    f"{shown:>13}  {met}"
                )
                continue
            ratio = top["rps"] / bottom["rps"]
            # CPU per request, inverted so that higher is better like the throughput ratio
            cpu = bottom["server_cpu_us_per_request"] / top["server_cpu_us_per_request"]
            met = "-" if target is None else ("yes" if ratio >= target else "NO")
            lines.append(
                f"({numerator})/({denominator}) {endpoint:<10} {ratio:>7.3f} {cpu:>7.3f} "
                f"{shown:>8}  {met}"
            )
    return "\n".join(lines)


def _ratios(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for endpoint, by_config in results.items():
        for numerator, denominator, _ in RATIOS:
            if by_config.get(numerator, {}).get("rps") and by_config.get(denominator, {}).get(
                "rps"
            ):
                found.setdefault(endpoint, {})[f"{numerator}/{denominator}"] = round(
                    by_config[numerator]["rps"] / by_config[denominator]["rps"], 4
                )
    return found


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell; the median is kept")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="e.g. abcdefgh")
    parser.add_argument("--endpoints", default="trivial,realistic")
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the table: run each config once under py-spy and show where Sentry's "
        "share of the CPU goes",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed; install it with `apt-get install -y wrk`.", file=sys.stderr)
        return 2
    configs = [c for c in args.configs if c in CONFIGS]
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip() in ENDPOINTS]

    sys.path.insert(0, str(REPO_ROOT))
    from examples.shop.auth import issue_token

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    script = workdir / "summary.lua"
    script.write_text(WRK_SCRIPT)
    receiver = _Receiver()
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SENTRY_", "SHOP_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    base_env.update(
        {
            # src first: a checkout's own code, not whichever one the venv has installed
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
            "DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
            "SHOP_DATABASE_SCHEMA": schema,
            "REDIS_URL": "redis://127.0.0.1:6379/12",
            "SHOP_JWT_SECRET": JWT_SECRET,
        }
    )
    tools = {
        "workdir": workdir,
        "script": script,
        "dsn": receiver.dsn,
        "receiver": receiver,
        "token": issue_token({"sub": "1"}, JWT_SECRET, 24 * 3600),
    }
    import result_file  # here, not at the top: the bench app's own process never needs it

    load_before = result_file.machine()
    started = time.monotonic()
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        if args.profile:
            for endpoint in endpoints:
                for config in configs:
                    collapsed = Path(tempfile.gettempdir()) / f"overhead-{endpoint}-{config}.txt"
                    result = run_one(config, ENDPOINTS[endpoint], base_env, args, tools, collapsed)
                    print(
                        f"\n== {endpoint} ({config}) {CONFIGS[config]}: {result['rps']:.0f} "
                        f"req/s, {result['server_cpu_us_per_request']:.0f} CPU µs/req"
                    )
                    print(profile_summary(collapsed, result["server_cpu_us_per_request"]))
                    print(f"(py-spy's collapsed stacks: {collapsed})")
            return 0
        for round_number in range(args.rounds):
            for endpoint in endpoints:
                for config in configs:
                    result = run_one(config, ENDPOINTS[endpoint], base_env, args, tools)
                    runs.setdefault(endpoint, {}).setdefault(config, []).append(result)
                    print(
                        f"round {round_number + 1}/{args.rounds} {endpoint:<9} ({config}) "
                        f"{result['rps']:>8.0f} req/s  p99 {result['p99_us'] / 1000:6.2f} ms  "
                        f"{result['server_cpu_us_per_request'] or 0:5.0f} CPU µs/req  "
                        f"errors {result['status_errors'] + result['socket_errors']}",
                        flush=True,
                    )
    finally:
        receiver.close()
        _drop_schema(schema)
        shutil.rmtree(workdir, ignore_errors=True)

    results = {
        endpoint: {config: _median_run(rounds) for config, rounds in by_config.items()}
        for endpoint, by_config in runs.items()
    }
    table = _table(results)
    print()
    print(table)
    versions = _versions()
    result_file.write(
        "overhead",
        {
            "configs": CONFIGS,
            "endpoints": ENDPOINTS,
            "by_endpoint": results,
            "ratios_rps": _ratios(results),
            "all_runs": runs,
            "envelopes_received": receiver.requests,
            "wall_seconds": round(time.monotonic() - started, 1),
        },
        table=table,
        settings={
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "rounds": args.rounds,
            "load_generator": f"{versions['wrk']} -t1 (duration-based; completed requests count)",
            "server": "uvicorn, 1 worker, uvloop + httptools",
            "versions": versions,
        },
        load_before=load_before,
        out=args.out,
    )
    return 0


def _median_run(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput (the lower middle one for an even count)."""
    ordered = sorted(rounds, key=lambda r: r["rps"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["rps_all_rounds"] = [r["rps"] for r in rounds]
    chosen["rps_spread"] = round(statistics.pstdev(r["rps"] for r in rounds), 1)
    return chosen


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ("sentry-sdk", "fastapi", "starlette", "uvicorn", "sqlalchemy", "redis", "psycopg")
    found = {name: version(name) for name in names}
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    found["wrk"] = (wrk.stdout or wrk.stderr).split("\n")[0].strip()
    return found


if __name__ == "__main__":
    sys.exit(main())
