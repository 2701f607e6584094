"""Stopping a service with SIGTERM delivers what it captured just before, within the flush timeout.

The service runs under `python -m uvicorn` in its own process, the way a process manager runs it.
Its factory removes every atexit handler after `install`, so the only way the events can leave is
the flush `install` adds to the lifespan shutdown. (Plain uvicorn 0.54 would not run atexit either:
after a graceful stop it re-raises SIGTERM and the process dies by the signal.)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.fault_support import FaultReceiver, Service, create_service_app, running_service
from tests.support.receiver import Receiver

pytestmark = pytest.mark.slow

EVENTS = 20
RECEIVER_DELAY = 0.1  # per request: draining takes EVENTS * 0.1 = 2 s, well after the signal
SHUTDOWN_TIMEOUT = 5.0
EXIT_MARGIN = 3.0  # interpreter and uvicorn teardown on a busy machine
TARGET = "tests.test_graceful_stop:create_app_without_atexit"


def create_app_without_atexit() -> FastAPI:
    """The fault-test service with no atexit handlers left (sentry-sdk registers one)."""
    app = create_service_app()
    atexit._clear()
    return app


def delivered(receiver: Receiver, marker: str) -> list[int]:
    """The numbers of the marked messages the receiver got, sorted, without repeats."""
    pattern = re.compile(re.escape(marker) + r" #(\d+)")
    found = set()
    for item in receiver.envelope_items("event"):
        match = pattern.search(json.dumps(item))
        if match:
            found.add(int(match.group(1)))
    return sorted(found)


@contextlib.contextmanager
def service_reporting_to(dsn: str, shutdown_timeout: float, log: Path) -> Iterator[Service]:
    env = {
        "SENTRY_DSN": dsn,
        "SENTRY_SHUTDOWN_TIMEOUT": str(shutdown_timeout),
        "SENTRY_ENABLE_TRACING": "false",
    }
    with running_service(env, log, target=TARGET) as service:
        yield service


def capture_messages(service: Service, count: int, marker: str) -> None:
    response = httpx.get(f"{service.url}/messages/{count}", params={"marker": marker}, timeout=10)
    assert response.json() == {"captured": count}


def wait_for_exit(service: Service, since: float, timeout: float) -> tuple[int, float]:
    """The return code and the seconds from `since` to the exit."""
    returncode = service.proc.wait(timeout)
    return returncode, time.monotonic() - since


def test_sigterm_delivers_events_captured_just_before(tmp_path: Path) -> None:
    marker = f"before-sigterm-{uuid.uuid4().hex}"
    log = tmp_path / "service.log"
    with (
        Receiver(delay=RECEIVER_DELAY) as receiver,
        service_reporting_to(receiver.dsn, SHUTDOWN_TIMEOUT, log) as service,
    ):
        capture_messages(service, EVENTS, marker)
        signalled = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        at_signal = delivered(receiver, marker)
        returncode, stopped_after = wait_for_exit(
            service, signalled, SHUTDOWN_TIMEOUT + EXIT_MARGIN
        )
        indices = delivered(receiver, marker)
    # they were still queued when the signal came, so the flush is what delivered them
    assert len(at_signal) < EVENTS
    assert indices == list(range(EVENTS)), f"delivered {indices}"
    assert returncode in (0, -signal.SIGTERM), log.read_text()
    assert stopped_after <= SHUTDOWN_TIMEOUT + EXIT_MARGIN
    print(
        f"\n{EVENTS} events captured before SIGTERM, {len(at_signal)} delivered at the "
        f"signal, {len(indices)} after; exit {returncode} in {stopped_after:.2f} s"
    )


def test_sigterm_with_a_hanging_receiver_stops_within_the_flush_timeout(tmp_path: Path) -> None:
    timeout = 2.0
    with (
        FaultReceiver() as receiver,
        service_reporting_to(receiver.dsn, timeout, tmp_path / "service.log") as service,
    ):
        receiver.set_mode("blackhole")
        capture_messages(service, 5, "never-answered")
        deadline = time.monotonic() + 5
        while receiver.count("blackhole") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.count("blackhole") >= 1  # the SDK is stuck on an unanswered request
        signalled = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        returncode, stopped_after = wait_for_exit(service, signalled, timeout + EXIT_MARGIN + 5)
    assert returncode in (0, -signal.SIGTERM)
    # the flush waits for the timeout, not for the receiver (the SDK's HTTP timeout is 30 s)
    assert timeout - 0.5 <= stopped_after <= timeout + EXIT_MARGIN, stopped_after
    print(f"\nhanging receiver: exit {returncode} {stopped_after:.2f} s after SIGTERM")
