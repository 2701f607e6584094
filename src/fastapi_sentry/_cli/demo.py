"""`fastapi-sentry demo`: the example shop against a local inbox, with nothing else to install.

The shop is `fastapi_sentry.examples.shop`: the repository's `examples/shop/` (the code a reader
copies) shipped inside the package, so the demo runs from any folder, from a wheel as from a
checkout. SQLite is the database, the outside provider is a stub on 127.0.0.1 and Celery runs tasks
in-process (no broker), so neither Redis nor PostgreSQL is needed. The shop runs as a child process
in its own session: Ctrl-C reaches only the demo, which then stops the shop, the stub and the inbox
in order.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

SHOP = "fastapi_sentry.examples.shop"
#: What the demo and the shop import beyond the package's own dependencies: the inbox extra.
DEMO_MODULES = ("uvicorn", "jinja2", "httpx", "sqlalchemy", "celery", "redis")
MISSING_EXTRA = (
    "The demo needs {missing}, which {verb} not installed; install the inbox extra: "
    "pip install 'fastapi-sentry[inbox]'"
)
SHOP_DID_NOT_START = (
    "The example shop did not answer on {url} within {timeout:.0f} s; its last output:\n{output}"
)
STOP_HINT = "The inbox keeps running; press Ctrl-C to stop."


@dataclass(frozen=True)
class Step:
    """One scripted request and what the reader should expect Sentry to see."""

    what: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    auth: bool = False
    params: dict[str, str] | None = None


STEPS = (
    Step("a request that succeeds (a trace, no issue)", "GET", "/api/products/1"),
    Step(
        "an unhandled error (login with a legacy password hash)",
        "POST",
        "/api/auth/login",
        {"email": "grace@example.com", "password": "hunter2-not-sent"},
    ),
    Step(
        "a handled error with context (no shipping rate for a country)",
        "GET",
        "/api/products/1/shipping",
        params={"country": "ZZ"},
    ),
    Step("a validation error (not reported)", "POST", "/api/orders", {"quantity": 0}, auth=True),
    Step("a 404 (not reported)", "GET", "/api/orders/999999", auth=True),
    Step("a slow operation (the exchange-rate provider is slow)", "GET", "/api/reports/sales"),
    Step(
        "a failing external call (the card network is down)",
        "POST",
        "/api/orders",
        {"product_id": 1, "quantity": 1, "card_token": "tok_unavailable"},
        auth=True,
    ),
    Step(
        "a message (low stock) and a background task that fails after retries (receipt mail)",
        "POST",
        "/api/orders",
        {"product_id": 2, "quantity": 1, "card_token": "tok_visa"},
        auth=True,
    ),
)
#: Events the steps produce: unhandled, handled, slow, external (payments), low stock,
#: external (mail) once per attempt (3), the task's final failure.
EXPECTED_EVENTS = 9
DEMO_USER = {"email": "ada@example.com", "password": "correct horse battery staple"}


class ShopStartError(RuntimeError):
    """The example service did not come up; the message carries the end of its output."""


class _Stop(Exception):
    """Raised from the SIGTERM handler so that `finally` blocks clean up as for Ctrl-C."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastapi-sentry demo",
        description="Run the example shop against a local inbox and show the issues it creates.",
    )
    parser.add_argument("--inbox-port", type=int, default=0, help="inbox port (default: free)")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="stop everything after printing the issues instead of keeping the inbox open",
    )
    return parser


def run_demo(argv: list[str]) -> int:
    """Run the demo; the exit status is 0 on success and after Ctrl-C in the final wait."""
    args = _parser().parse_args(argv)
    missing = [name for name in DEMO_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        print(MISSING_EXTRA.format(missing=", ".join(missing), verb=verb), file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    workdir = Path(tempfile.mkdtemp(prefix="fastapi-sentry-demo-"))
    try:
        return _run(workdir, args.inbox_port, wait=not args.no_wait)
    except ShopStartError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Stop):
        print("\nInterrupted; everything is stopped.", flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(workdir, ignore_errors=True)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _run(workdir: Path, inbox_port: int, *, wait: bool) -> int:
    import httpx

    from fastapi_sentry.inbox import InboxServer

    # by name: in a checkout the shop's files are in examples/, found at run time through
    # fastapi_sentry/examples/__init__.py, where mypy does not look
    stub_module: Any = importlib.import_module(f"{SHOP}.stub")

    with (
        InboxServer(workdir / "inbox.db", port=inbox_port) as inbox,
        stub_module.ProviderStub(rates_delay=0.4) as stub,
    ):
        print(f"Inbox listening on {inbox.url}", flush=True)
        with _shop(workdir, inbox.dsn, stub.url) as base:
            print(f"Example shop listening on {base} (SQLite, tasks run in-process)\n", flush=True)
            with httpx.Client(base_url=base, timeout=30.0) as client:
                token = client.post("/api/auth/login", json=DEMO_USER).json()["access_token"]
                for number, step in enumerate(STEPS, start=1):
                    status = _send(client, step, token)
                    print(
                        f"[{number}/{len(STEPS)}] {step.what}: {step.method} {step.path} -> "
                        f"{status}",
                        flush=True,
                    )
            print("\nWaiting for the events to arrive ...", flush=True)
            try:
                inbox.wait_for(EXPECTED_EVENTS, timeout=20.0, type="error,default")
            except TimeoutError as exc:
                print(f"Not every event arrived: {exc}", file=sys.stderr)
        _print_issues(inbox.url, inbox.issues())
        if not wait:
            return 0
        print(f"\n{STOP_HINT}", flush=True)
        try:
            threading.Event().wait()
        except (KeyboardInterrupt, _Stop):
            print("\nStopping the inbox.", flush=True)
        return 0


def _send(client: Any, step: Step, token: str) -> int:
    headers = (
        {"Authorization": f"Bearer {token}", "Connection": "close"}
        if step.auth
        else {"Connection": "close"}
    )
    response = client.request(
        step.method, step.path, json=step.body, params=step.params, headers=headers
    )
    return int(response.status_code)


def _print_issues(url: str, issues: list[dict[str, Any]]) -> None:
    print(f"\n{len(issues)} issues in the inbox at {url}:")
    for issue in sorted(issues, key=lambda i: i["title"]):
        print(f"  {issue['count']:>3}x  {issue['level']:<8} {issue['title']}")
    print(f"\nOpen {url} to see them, with their traces, breadcrumbs and context.", flush=True)


@contextlib.contextmanager
def _shop(workdir: Path, dsn: str, provider_url: str) -> Iterator[str]:
    """The example shop under uvicorn in its own session; yields its base URL.

    It runs in the demo's scratch folder, so no `.env` of the folder the demo was started from
    reaches the shop's settings.
    """
    import httpx

    port = _free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SENTRY_", "SHOP_")) and name not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        {
            "SENTRY_DSN": dsn,
            "SENTRY_ENVIRONMENT": "development",
            "SENTRY_RELEASE": "shop@demo",
            "DATABASE_URL": f"sqlite:///{workdir / 'shop.db'}",
            "SHOP_EXTERNAL_API_URL": provider_url,
            "SHOP_RECEIPT_RETRY_DELAY": "0.1",
        }
    )
    log_path = workdir / "shop.log"
    argv = [sys.executable, "-m", "uvicorn", f"{SHOP}.app:create_app", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30.0
            while True:
                try:
                    httpx.get(f"{base}/health", timeout=1.0)
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        # the scratch folder is removed on exit, so the output goes in the message
                        output = log_path.read_text(errors="replace").splitlines()[-20:]
                        raise ShopStartError(
                            SHOP_DID_NOT_START.format(
                                url=base, timeout=30.0, output="\n".join(output)
                            )
                        ) from None
                    time.sleep(0.1)
            yield base
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM lets uvicorn run the app's shutdown, which flushes Sentry; then make sure."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
