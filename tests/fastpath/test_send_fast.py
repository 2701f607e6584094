"""The cheaper send: envelope bytes by orjson and our own HTTP/1.1 POST, each against the SDK's."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import sentry_sdk
from fastapi import FastAPI
from sentry_sdk.consts import EndpointType
from sentry_sdk.envelope import Envelope, Item, PayloadRef

import fastapi_sentry
from fastapi_sentry._fastpath import transport as _transport
from fastapi_sentry._fastpath.http1 import Connection
from fastapi_sentry._fastpath.transport import ResilientTransport, envelope_bytes
from tests.support.raw_http import read_message
from tests.support.receiver import Receiver

# -- envelope bytes


def _envelope(payload: Any, **headers: Any) -> Envelope:
    envelope = Envelope(headers={"event_id": "a" * 32, "sent_at": "2026-12-03T10:00:00Z"})
    envelope.add_item(Item(payload=PayloadRef(json=payload), type="transaction", headers=headers))
    envelope.add_item(Item(payload=b"raw \xff bytes\n", type="attachment", filename="a.txt"))
    return envelope


def _parsed(body: bytes) -> list[tuple[dict[str, Any], Any]]:
    """Headers and payloads, the lengths aside (orjson writes UTF-8 where the SDK writes \\u
    escapes; a wrong length would not parse back)."""
    envelope = Envelope.deserialize(body)
    assert envelope.headers is not None
    items: list[tuple[dict[str, Any], Any]] = [(dict(envelope.headers), None)]
    for item in envelope.items:
        raw = item.payload.get_bytes()
        payload = json.loads(raw) if item.type == "transaction" else raw
        headers = dict(item.headers)
        headers.pop("length")
        items.append((headers, payload))
    return items


TRANSACTION = {
    "type": "transaction",
    "transaction": "/api/héllo ✓",
    "spans": [{"op": "db", "data": {"rows": 3, "ratio": 0.25, "big": 2**63 - 1, "ok": True}}],
    "contexts": {"trace": {"trace_id": "b" * 32, "span_id": "c" * 16}},
    "extra": {"nothing": None, "nested": [[1, 2], {"emoji": "🙂", "quote": '"\\'}]},
    "timestamp": 1764756000.123456,
}


def test_orjson_is_what_makes_the_bytes() -> None:
    """The faster path is the one the tests below compare: orjson is installed here."""
    assert _transport.ORJSON


@pytest.mark.parametrize(
    "payload",
    [
        TRANSACTION,
        {"unicode": "\u2028\u2029\x00\x1f\x7f", "float": 1e16, "small": 5e-324, "neg": -0.0},
    ],
    ids=["transaction", "edge-strings-and-floats"],
)
def test_envelope_bytes_parse_to_what_the_sdk_serializes(payload: dict[str, Any]) -> None:
    ours = envelope_bytes(_envelope(payload, custom="x"))
    theirs = _envelope(payload, custom="x").serialize()
    assert _parsed(ours) == _parsed(theirs)


@pytest.mark.parametrize(
    "payload",
    [
        {"big": 2**64},  # past 64 bits
        {1: "non-string key", None: "x", False: "y"},
        {"surrogate": "\ud800"},
    ],
    ids=["big-int", "non-string-keys", "lone-surrogate"],
)
def test_what_orjson_refuses_is_written_by_the_sdks_own_json(payload: dict[Any, Any]) -> None:
    assert envelope_bytes(_envelope(payload)) == _envelope(payload).serialize()


def test_what_the_sdk_cannot_write_fails_the_same_way() -> None:
    payload = {"when": datetime.now(timezone.utc)}  # orjson could; the standard library cannot
    with pytest.raises(TypeError):
        _envelope(payload).serialize()
    with pytest.raises(TypeError):
        envelope_bytes(_envelope(payload))


def test_a_payload_keeps_its_bytes_as_the_sdks_does() -> None:
    envelope = _envelope(TRANSACTION)
    body = envelope_bytes(envelope)
    assert envelope.items[0].payload.bytes is not None
    assert envelope.serialize() == body  # the SDK reuses the bytes made once


# -- the POST


class CannedServer:
    """Answers every request with one canned raw answer; counts connections and requests.
    `close_after` closes each connection after that many answers, without saying so."""

    def __init__(self, answer: bytes, close_after: int = 0) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.dsn = f"http://publickey@127.0.0.1:{self.port}/1"
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        answered = 0
        with conn:
            while message := read_message(conn, buffer):
                head, body, buffer = message
                self.requests.append(head + b"\r\n\r\n" + body)
                conn.sendall(self.answer)
                answered += 1
                if self.close_after and answered >= self.close_after:
                    return

    def close(self) -> None:
        # a listening socket closed while accept() waits on it keeps accepting (on Linux) until
        # shut down: the next test's server, given the same port, would share its connections
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


_made: list[ResilientTransport] = []


@pytest.fixture(autouse=True)
def _close_transports() -> Iterator[None]:
    """Transports replaced within a test are closed, their sockets (ours and urllib3's) too."""
    yield
    while _made:
        transport = _made.pop()
        transport.kill()
        transport._pool.clear()


def _transport_for(dsn: str, **options: Any) -> ResilientTransport:
    sentry_sdk.init(dsn=dsn, transport=ResilientTransport, **options)
    transport = sentry_sdk.get_client().transport
    assert isinstance(transport, ResilientTransport)
    _made.append(transport)
    return transport


def _post(transport: ResilientTransport, body: bytes = b"{}\n") -> Any:
    headers = {"Content-Type": "application/x-sentry-envelope"}
    transport._update_headers(headers)
    return transport._request("POST", EndpointType.ENVELOPE, body, headers)


@pytest.fixture
def canned() -> Iterator[list[CannedServer]]:
    servers: list[CannedServer] = []
    yield servers
    for server in servers:
        server.close()


ANSWERS = {
    "429 retry-after": b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n"
    b"Content-Length: 0\r\n\r\n",
    "429 no retry-after": b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\n\r\n{}",
    "429 http-date": b"HTTP/1.1 429 Too Many Requests\r\n"
    b"Retry-After: Fri, 31 Dec 2100 23:59:59 GMT\r\nContent-Length: 0\r\n\r\n",
    "rate limits, twice, chunked": b"HTTP/1.1 200 OK\r\n"
    b"X-Sentry-Rate-Limits: 60:transaction;span:organization, 2700:error\r\n"
    b"x-sentry-rate-limits: 30::key\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'4\r\n{"id\r\n8;ext=1\r\n": "abc"\r\n1\r\n}\r\n0\r\n\r\n',
    "rate limits on 429": b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\n"
    b"X-Sentry-Rate-Limits: 120:transaction:organization:quota\r\nContent-Length: 0\r\n\r\n",
    "500, http/1.0, no length": b"HTTP/1.0 500 Internal Server Error\r\n"
    b"Content-Type: text/plain\r\n\r\nbroken",
    "413": b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 9\r\n\r\ntoo large",
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_answers_are_read_as_the_sdks_urllib3_path_reads_them(
    name: str, canned: list[CannedServer]
) -> None:
    """Status, body and the rate limits sentry-sdk's own `_update_rate_limits` derives from our
    answer are those it derives from urllib3's, for the same bytes on the wire."""
    found = []
    for fast in (True, False):
        server = CannedServer(ANSWERS[name], close_after=int(b"HTTP/1.0" in ANSWERS[name]))
        canned.append(server)
        transport = _transport_for(server.dsn)
        if not fast:
            transport._connection = None  # sentry-sdk's urllib3 path
        before = datetime.now(timezone.utc)
        response = _post(transport)
        transport._update_rate_limits(response)
        limits = {
            category: round((until - before).total_seconds() / 10)
            for category, until in transport._disabled_until.items()
        }
        found.append((response.status, bytes(response.data), limits))
        response.close()
    assert found[0] == found[1]
    assert found[0][2] or not name.startswith(("429", "rate")), "the case limits nothing"


def test_one_connection_carries_every_envelope(canned: list[CannedServer]) -> None:
    server = CannedServer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    canned.append(server)
    transport = _transport_for(server.dsn)
    statuses = [_post(transport, b"envelope %d" % n).status for n in range(3)]
    assert statuses == [200, 200, 200]
    assert server.connections == 1
    assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in server.requests] == [
        b"envelope 0",
        b"envelope 1",
        b"envelope 2",
    ]


def test_a_connection_the_receiver_closed_is_opened_again(canned: list[CannedServer]) -> None:
    """A receiver that closes kept-alive connections without a word (an idle timeout) loses
    nothing: each request after it goes out on a new connection."""
    server = CannedServer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", close_after=1)
    canned.append(server)
    transport = _transport_for(server.dsn)
    assert [_post(transport, b"n%d" % n).status for n in range(4)] == [200] * 4
    assert len(server.requests) == 4
    assert server.connections == 4


def test_the_request_is_the_one_urllib3_sends(canned: list[CannedServer]) -> None:
    """Same target, Host, auth, content headers and body as the SDK's path (header order and
    urllib3's own User-Agent default aside: the SDK sets its own)."""
    heads = []
    for fast in (True, False):
        server = CannedServer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        canned.append(server)
        transport = _transport_for(server.dsn)
        if not fast:
            transport._connection = None
        _post(transport, b"the body").close()
        head, _, body = server.requests[0].partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = {
            name.lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        fields["host"] = fields["host"].replace(str(server.port), "PORT")
        auth = fields.pop("x-sentry-auth")
        assert "sentry_key=publickey" in auth
        heads.append((lines[0], fields, body))
    assert heads[0] == heads[1]


@pytest.mark.parametrize(
    ("dsn", "options"),
    [
        ("https://k@127.0.0.1:9/1", {}),
        ("http://k@127.0.0.1:9/1", {"http_proxy": "http://127.0.0.1:8"}),
        ("http://k@127.0.0.1:9/1", {"socket_options": []}),
        ("http://k@127.0.0.1:9/1", {"keep_alive": True}),
    ],
    ids=["https", "proxy", "socket-options", "keep-alive"],
)
def test_anything_but_plain_http_keeps_the_sdks_path(dsn: str, options: dict[str, Any]) -> None:
    assert _transport_for(dsn, **options)._connection is None


@pytest.mark.lean_only  # the fallback keeps sentry-sdk's own transport
def test_install_sends_over_our_connection() -> None:
    with Receiver() as receiver:
        fastapi_sentry.install(FastAPI(), dsn=receiver.dsn, traces_sample_rate=1.0)
        transport = sentry_sdk.get_client().transport
        assert isinstance(transport, ResilientTransport)
        assert isinstance(transport._connection, Connection)
        sentry_sdk.capture_message("over our connection")
        sentry_sdk.flush(timeout=5)
        receiver.wait_for(1)
        assert receiver.paths == ["/api/1/envelope/"]
        assert "over our connection" in receiver.envelope_items("event")[0]["message"]


def test_a_refused_connection_is_a_network_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    transport = _transport_for(f"http://k@127.0.0.1:{port}/1")
    with pytest.raises(ConnectionRefusedError):
        _post(transport)


def test_bytes_after_an_answer_are_not_taken_for_the_next_one(canned: list[CannedServer]) -> None:
    server = CannedServer(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n"
    )
    canned.append(server)
    transport = _transport_for(server.dsn)
    assert [_post(transport).status for _ in range(3)] == [200, 200, 200]
    assert server.connections == 3


def test_a_child_forked_while_a_post_is_in_flight_can_send() -> None:
    """Celery's prefork pool forks while the parent may be waiting for an answer: the child's
    copy of the connection must not inherit the held lock (it hung every send there)."""
    import os
    import signal

    gate = threading.Event()
    with Receiver(gate=gate) as receiver, Receiver() as child_receiver:
        connection = Connection(f"http://127.0.0.1:{receiver.port}/api/1/envelope/", 5.0)
        sending = threading.Thread(target=connection.post, args=(b"{}\n", {}))
        sending.start()
        try:
            receiver.wait_arrived(1)  # the parent's POST holds the connection's lock now
            pid = os.fork()
            if pid == 0:  # the child: the same connection object, re-aimed at a live receiver
                code = 1
                signal.alarm(10)  # a hang ends the child (SIGALRM) instead of the test run
                try:
                    connection.port = child_receiver.port
                    code = 0 if connection.post(b"{}\n", {}).status == 200 else 2
                finally:
                    os._exit(code)
        finally:
            gate.set()
            sending.join(10)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
