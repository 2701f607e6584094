"""The circuit breaker: a receiver that is down is not hammered; one that recovers gets events."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import sentry_sdk
from fastapi import FastAPI

import fastapi_sentry
from fastapi_sentry import _transport
from tests.support.receiver import Receiver


class SlammingDoor:
    """Accepts TCP connections and closes them at once: every send is a network error."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def door() -> Iterator[SlammingDoor]:
    slamming = SlammingDoor()
    yield slamming
    slamming.close()


@pytest.fixture
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_transport, "FIRST_BACKOFF", 0.5)


@pytest.mark.sdk_errors_expected
def test_network_errors_open_the_breaker(door: SlammingDoor) -> None:
    fastapi_sentry.install(FastAPI(), dsn=f"http://key@127.0.0.1:{door.port}/1")
    client = sentry_sdk.get_client()
    assert isinstance(client.transport, _transport.ResilientTransport)
    for n in range(50):
        sentry_sdk.capture_message(f"lost {n}")
    sentry_sdk.flush(timeout=5)
    # one event's attempts (urllib3 retries 3 times), not 50 events' worth (200 connections)
    assert 1 <= door.accepted <= 8
    assert client.transport.backing_off


def test_server_errors_back_off_and_recovery_delivers_again(short_backoff: None) -> None:
    with Receiver(status=500) as receiver:
        fastapi_sentry.install(FastAPI(), dsn=receiver.dsn)
        for n in range(30):
            sentry_sdk.capture_message(f"refused {n}")
        sentry_sdk.flush(timeout=5)
        assert len(receiver.bodies) == 1
        receiver.status = 200
        time.sleep(0.6)  # the first pause is over
        sentry_sdk.capture_message("after recovery")
        sentry_sdk.flush(timeout=5)
        assert b"after recovery" in b"".join(receiver.bodies)
        sentry_sdk.capture_message("and the next one")
        sentry_sdk.flush(timeout=5)
        assert b"and the next one" in b"".join(receiver.bodies)


def test_pauses_double_up_to_a_minute(short_backoff: None) -> None:
    transport = _transport.ResilientTransport(
        sentry_sdk.Client(dsn="http://key@127.0.0.1:9/1", transport=None).options
    )
    pauses = []
    for _ in range(10):
        start = time.monotonic()
        transport._failed()
        pauses.append(round(transport._closed_at - start, 1))
    assert pauses[:4] == [0.5, 1.0, 2.0, 4.0]
    assert pauses[-1] == _transport.MAX_BACKOFF
    transport.kill()
