"""The circuit breaker: a receiver that is down is not hammered; one that recovers gets events."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from fastapi import FastAPI
from sentry_sdk.transport import HttpTransport

import fastapi_sentry
from fastapi_sentry._fastpath import transport as _transport
from fastapi_sentry._setup import COMPRESSION_LEVEL
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


@pytest.mark.lean_only  # the fallback keeps sentry-sdk's own transport: no breaker (README)
@pytest.mark.sdk_errors_expected
def test_network_errors_open_the_breaker(door: SlammingDoor) -> None:
    fastapi_sentry.install(FastAPI(), dsn=f"http://key@127.0.0.1:{door.port}/1")
    client = sentry_sdk.get_client()
    assert isinstance(client.transport, _transport.ResilientTransport)
    for n in range(50):
        sentry_sdk.capture_message(f"lost {n}")
    sentry_sdk.flush(timeout=5)
    # the tries a 5 s flush has time for (after pauses of 1 and 2 s: three), four connections
    # each (urllib3 retries 3 times), not 50 events' worth (200 connections)
    assert 1 <= door.accepted <= 16
    assert client.transport.backing_off


@pytest.mark.lean_only  # the fallback keeps sentry-sdk's own transport: no breaker (README)
def test_server_errors_back_off_and_recovery_delivers_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a pause no machine load can outlast while the 30 events are captured and flushed
    monkeypatch.setattr(_transport, "FIRST_BACKOFF", 60.0)
    with Receiver(status=500) as receiver:
        fastapi_sentry.install(FastAPI(), dsn=receiver.dsn)
        for n in range(30):
            sentry_sdk.capture_message(f"refused {n}")
        sentry_sdk.flush(timeout=5)
        assert len(receiver.bodies) == 1
        receiver.status = 200
        transport = sentry_sdk.get_client().transport
        assert isinstance(transport, _transport.ResilientTransport)
        assert transport.backing_off
        transport._closed_at = time.monotonic()  # the pause is over, without waiting a minute
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


def _send_three(receiver: Receiver) -> None:
    for n in range(3):
        sentry_sdk.capture_message(f"sent {n}")
    sentry_sdk.flush(timeout=5)
    receiver.wait_for(3)


@pytest.fixture
def http_breadcrumbs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """URLs of the HTTP breadcrumbs sentry-sdk's stdlib integration records, in any thread."""
    from sentry_sdk.integrations import stdlib

    urls: list[str] = []
    original = getattr(stdlib, "add_http_breadcrumb")  # noqa: B009 - not exported by the SDK

    def recording(status: Any, data: dict[str, Any]) -> None:
        urls.append(str(data.get("url")))
        original(status, data)

    monkeypatch.setattr(stdlib, "add_http_breadcrumb", recording)
    return urls


@pytest.mark.lean_only  # the fallback keeps sentry-sdk's own transport, which records its sends
def test_our_sends_are_not_instrumented_by_the_sdk_when_the_dsn_has_a_port(
    http_breadcrumbs: list[str],
) -> None:
    """sentry-sdk's own transport, for a DSN with a port, records its own POSTs (a span and a
    breadcrumb each: its host check leaves the port out); ours does not, and the app's outgoing
    calls are still recorded."""
    with Receiver() as receiver:
        sentry_sdk.init(dsn=receiver.dsn, traces_sample_rate=1.0)  # the SDK's own transport
        _send_three(receiver)
        assert len([u for u in http_breadcrumbs if f":{receiver.port}/" in u]) == 3, (
            "sentry-sdk no longer records its own sends: "
            "_transport's uninstrumented connections can go"
        )
    http_breadcrumbs.clear()
    with Receiver() as receiver, Receiver() as other_service:
        fastapi_sentry.install(
            FastAPI(), dsn=receiver.dsn, traces_sample_rate=1.0, profiles_sample_rate=0.0
        )
        _send_three(receiver)
        assert http_breadcrumbs == []
        # an outgoing http.client call of the app's, inside a transaction, still is traced
        with sentry_sdk.start_transaction(name="calls out", sampled=True):
            conn = http.client.HTTPConnection("127.0.0.1", other_service.port)
            conn.request("POST", "/somewhere", body=b"{}")
            conn.getresponse().read()
            conn.close()
        assert http_breadcrumbs == [f"http://127.0.0.1:{other_service.port}/somewhere"]
        assert "sentry-trace" in other_service.headers[0]


def test_envelopes_are_compressed_cheaply() -> None:
    """On the lean path and on the fallback alike: it is an SDK option, not our transport's.
    Leaving a small envelope plain is the lean transport's; the fallback compresses it too."""
    with Receiver() as receiver:
        fastapi_sentry.install(FastAPI(), dsn=receiver.dsn, traces_sample_rate=1.0)
        transport = sentry_sdk.get_client().transport
        assert isinstance(transport, HttpTransport)
        assert transport._compression_level == COMPRESSION_LEVEL == 1
        _send_three(receiver)  # error events carry the installed modules: several KB
        with sentry_sdk.start_transaction(name="small", sampled=True):
            pass  # a transaction without spans: far less, not worth compressing
        sentry_sdk.flush(timeout=5)
        receiver.wait_for(4)
        expected = "br" if transport._compression_algo == "br" else "gzip"
        encodings = [h.get("content-encoding") for h in receiver.headers]
        small = None if isinstance(transport, _transport.ResilientTransport) else expected
        assert encodings == [expected, expected, expected, small]
        assert all(b"sent" in body for body in receiver.bodies[:3])
        assert b'"transaction":"small"' in receiver.bodies[3]
