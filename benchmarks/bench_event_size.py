"""Oversized errors: lost with bare sentry-sdk, delivered with fastapi-sentry; what the check costs.

    .venv/bin/python benchmarks/bench_event_size.py [--quick]

Prints two tables and writes benchmarks/results/event-size-<time>.json:
1. an error raised with a large local (a 2 or 10 MB string, a list of rows of 2 or 10 MB, a request
   body of 2 or 10 MB read into a local), captured once by bare sentry-sdk and once through
   fastapi-sentry's pipeline, each sending to a real inbox on 127.0.0.1 (it answers 413 above
   1 MiB per event, as Sentry does): stored or not, and the size of what was stored;
2. the cost of the size check on a normal event (the typical event of bench_scrubbing.py):
   microseconds for fit_event alone, beside a whole `capture_exception` of an error with 30
   frames of locals through the same pipeline, timed in interleaved batches.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, MutableMapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sentry_sdk
from sentry_sdk.transport import Transport
from tests.scrubbing.corpus import benchmark_events

from fastapi_sentry import _pipeline
from fastapi_sentry._event_size import fit_event
from fastapi_sentry._settings import load_settings
from fastapi_sentry._setup import build_init_options
from fastapi_sentry.inbox import InboxServer

MB = 1_000_000
RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def raise_with(case: str, mb: int) -> None:
    """An error whose innermost frame holds the large local, as an endpoint would."""
    if case == "string local":
        blob = "x" * (mb * MB)
        raise ValueError(f"failed with a {len(blob)} character local")
    if case == "list of rows":
        table = [{"id": i, "payload": "p" * (mb * MB // 10)} for i in range(50)]
        raise LookupError(f"{len(table)} rows")
    raw_body = json.dumps({"rows": "b" * (mb * MB)}).encode()
    raise RuntimeError(f"rejected a body of {len(raw_body)} bytes")


CASES = [(case, mb) for case in ("string local", "list of rows", "request body") for mb in (2, 10)]


def deliver(inbox: InboxServer, options: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for case, mb in CASES:
        before = len(inbox.events("error"))
        sentry_sdk.init(**options)
        try:
            raise_with(case, mb)
        except Exception:
            sentry_sdk.capture_exception()
        sentry_sdk.flush(timeout=30)
        # the inbox answers before the client returns from flush: stored now or never
        stored = inbox.events("error")[before:]
        rows.append(
            {
                "case": f"{case}, {mb} MB",
                "delivered": bool(stored),
                "stored_bytes": len(json.dumps(stored[0])) if stored else None,
            }
        )
    return rows


class NullTransport(Transport):
    def capture_envelope(self, envelope: Any) -> None:
        for item in envelope.items:
            item.get_bytes()  # what a real transport does with it


def deep(n: int, payload: dict[str, Any]) -> None:
    order = {"id": n, "items": ["SKU-88172-BLK"] * 3, "note": "n" * 200}  # noqa: F841
    if n:
        deep(n - 1, payload)
    else:
        raise KeyError(payload["key"])


def interleaved(
    runs: dict[str, Callable[[], object]], iterations: int, batches: int
) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(batches):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(iterations):
                run()
            samples[name].append((time.perf_counter() - start) / iterations * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def cost(quick: bool) -> dict[str, float]:
    settings = load_settings(dsn="http://key@127.0.0.1:9/1", environment="production")
    options = build_init_options(settings, lean=False)
    options["transport"] = NullTransport
    sentry_sdk.init(**options)
    typical = benchmark_events()["typical"]

    def capture() -> None:
        try:
            deep(28, {"key": "order-42"})
        except KeyError:
            sentry_sdk.capture_exception()

    return with_and_without(
        ("fit_event, typical event", lambda: fit_event(typical)),
        ("capture_exception", capture),
        20 if quick else 60,
        5 if quick else 11,
    )


def with_and_without(
    alone: tuple[str, Callable[[], object]],
    whole: tuple[str, Callable[[], object]],
    iterations: int,
    batches: int,
) -> dict[str, float]:
    """`alone` timed beside `whole` with the pipeline's fit_event and with it replaced."""

    def toggled(check: Callable[..., Any]) -> Callable[[], object]:
        def run() -> None:
            setattr(_pipeline, "fit_event", check)  # noqa: B010
            whole[1]()

        return run

    runs: dict[str, Callable[[], object]] = {
        alone[0]: alone[1],
        f"{whole[0]} with the check": toggled(fit_event),
        f"{whole[0]} without it": toggled(_identity),
    }
    try:
        return interleaved(runs, iterations, batches)
    finally:
        setattr(_pipeline, "fit_event", fit_event)  # noqa: B010


def request_cost(quick: bool) -> dict[str, float]:
    """A trivial endpoint at traces 1.0 driven in-process: every request sends a transaction."""
    import asyncio

    from fastapi import FastAPI

    import fastapi_sentry

    app = FastAPI()

    @app.get("/ok")
    def ok() -> dict[str, bool]:
        return {"ok": True}

    fastapi_sentry.install(
        app, dsn="http://key@127.0.0.1:9/1", environment="production", traces_sample_rate=1.0
    )
    client = sentry_sdk.get_client()
    client.transport = NullTransport(client.options)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/ok", "raw_path": b"/ok", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver")], "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
    }  # fmt: skip
    transactions: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    async def requests(n: int) -> None:
        for _ in range(n):
            await app(dict(scope), receive, send)

    def keep(event: Any, **options: Any) -> Any:
        transactions.append(event)
        return fit_event(event, **options)

    loop = asyncio.new_event_loop()
    setattr(_pipeline, "fit_event", keep)  # noqa: B010
    loop.run_until_complete(requests(3))
    transaction = transactions[-1]

    try:
        return with_and_without(
            ("fit_event, a trivial request's transaction", lambda: fit_event(transaction)),
            ("10 requests at traces 1.0", lambda: loop.run_until_complete(requests(10))),
            10 if quick else 30,
            5 if quick else 11,
        )
    finally:
        loop.close()


def _identity(event: Any, **_: Any) -> Any:
    return event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, InboxServer(Path(folder) / "inbox.db") as inbox:
        bare = deliver(inbox, {"dsn": inbox.dsn})
        ours = deliver(inbox, build_init_options(load_settings(dsn=inbox.dsn), lean=False))
    print(
        "An error with a large local, sent to the inbox (413 above 1 MiB per event, as Sentry).\n"
    )
    print(f"| {'case':<24} | {'bare sentry-sdk':>16} | {'fastapi-sentry':>22} |")
    print(f"|{'-' * 26}|{'-' * 18}|{'-' * 24}|")
    for b, o in zip(bare, ours, strict=True):
        got = f"delivered, {o['stored_bytes'] / 1024:.0f} KB" if o["delivered"] else "lost"
        print(f"| {b['case']:<24} | {'delivered' if b['delivered'] else 'lost':>16} | {got:>22} |")
    timings = cost(args.quick)
    requests = request_cost(args.quick)
    per_request = requests["10 requests at traces 1.0 without it"] / 10
    request_share = requests["fit_event, a trivial request's transaction"] / per_request * 100
    with_check = timings["capture_exception with the check"]
    without = timings["capture_exception without it"]
    share = timings["fit_event, typical event"] / without * 100
    print("\nCost of the check on a normal event, microseconds (median of interleaved batches).\n")
    for name, us in timings.items():
        print(f"| {name:<36} | {us:>8.0f} |")
    print(f"\nfit_event on the typical event = {share:.1f}% of a capture_exception without it")
    print(f"capture_exception with / without: {with_check / without:.3f}")
    print()
    for name, us in requests.items():
        print(f"| {name:<44} | {us:>8.0f} |")
    print(f"\nfit_event on the transaction = {request_share:.1f}% of a traced request")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"event-size-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "delivery": {"bare_sentry_sdk": bare, "fastapi_sentry": ours},
                "cost_us": timings,
                "fit_share_of_capture_percent": share,
                "capture_with_over_without": with_check / without,
                "request_cost_us": requests,
                "fit_share_of_traced_request_percent": request_share,
                "peak_rss_mb": peak_rss_mb(),
            },
            indent=2,
        )
    )
    print(f"wrote {out.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
