"""Bad input gets a clear answer (status, what is wrong, where) and changes nothing stored."""

from __future__ import annotations

import gzip
import json
import logging
import resource
import socket
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import brotli
import httpx
import pytest

from fastapi_sentry.inbox import InboxServer
from tests.inbox_support import (
    auth_headers,
    envelope,
    error_event,
    event_item,
    snapshot,
)
from tests.support.raw_http import read_message

MIB = 1024 * 1024


@pytest.fixture
def inbox(inbox: InboxServer) -> InboxServer:
    """The shared inbox, holding one event and a second project, so 'unchanged' means something."""
    assert inbox.project is not None
    assert inbox.store is not None
    inbox.store.create_project("other")
    response = httpx.post(
        f"{inbox.url}/api/{inbox.project.id}/envelope/",
        content=error_event(value="already stored", user={"id": "u1"}),
        headers=auth_headers(inbox.project.public_key),
        timeout=10,
    )
    assert response.status_code == 200
    return inbox


@dataclass
class Bad:
    body: bytes
    status: int
    detail: str
    where: str | None = None
    encoding: str | None = None
    key: str | None = "project"  # "project", "other", "wrong" or None
    project: str | None = None  # path project id; default: the project's own
    endpoint: str = "envelope"


GOOD_THEN_BAD = envelope(
    event_item(message="would be stored if the envelope were not rejected"),
    ({"type": "transaction"}, b'{"transaction": "x", '),
)

CASES = {
    "missing key": Bad(error_event(), 401, "No DSN key was sent", key=None),
    "wrong key": Bad(error_event(), 403, "does not belong to project", key="wrong"),
    "another project's key": Bad(error_event(), 403, "does not belong to project", key="other"),
    "unknown project": Bad(error_event(), 404, "There is no project 999", project="999"),
    "non-numeric project": Bad(error_event(), 404, "There is no project 'abc'", project="abc"),
    "empty body": Bad(b"", 400, "The envelope is empty", where="line 1"),
    "envelope header not JSON": Bad(
        b"{not json\n{}\n", 400, "The envelope header (line 1) is not valid JSON"
    ),
    "item without type": Bad(b'{}\n{"length": 2}\n{}\n', 400, "Item 0 has type None"),
    "length past the end": Bad(
        b'{}\n{"type": "event", "length": 500}\n{}\n',
        400,
        "Item 0 declares length 500 but only 3 bytes follow",
        where="item 0 payload (byte 36)",
    ),
    "negative length": Bad(b'{}\n{"type": "event", "length": -1}\n{}\n', 400, "length -1"),
    "event not JSON": Bad(
        envelope(({"type": "event"}, b'{"message": oops}')),
        400,
        "Item 0 (type 'event') is not valid JSON: Expecting value at line 1 column 13",
        where="item 0 (type 'event'), line 1 column 13",
    ),
    "event is a list": Bad(
        envelope(({"type": "event"}, b"[1, 2]")), 400, "must be a JSON object, not list"
    ),
    "NaN in an event": Bad(
        envelope(({"type": "event"}, b'{"extra": {"x": NaN}}')), 400, "NaN is not valid JSON"
    ),
    "bad event_id": Bad(
        envelope(event_item(event_id="not-a-uuid")), 400, "has event_id 'not-a-uuid'"
    ),
    "good item then bad item": Bad(
        GOOD_THEN_BAD, 400, "Item 1 (type 'transaction') is not valid JSON"
    ),
    "not gzip": Bad(b"plain text", 400, "not valid gzip data", encoding="gzip"),
    "truncated gzip": Bad(
        gzip.compress(error_event())[:-12], 400, "gzip body is truncated", encoding="gzip"
    ),
    "not brotli": Bad(b"\xff\xff\xff\xff garbage", 400, "not valid brotli data", encoding="br"),
    "not deflate": Bad(b"\x78\x9c garbage!", 400, "not valid deflate data", encoding="deflate"),
    "unknown encoding": Bad(
        error_event(), 415, "Content-Encoding 'zstd' is not supported", None, "zstd"
    ),
    "store body not JSON": Bad(b"<html>", 400, "The body is not valid JSON", endpoint="store"),
    "event over 1 MiB": Bad(
        envelope(event_item(extra={"blob": "x" * MIB})),
        413,
        "after decompression; the limit is 1048576 bytes (1 MiB)",
        where="item 0 (type 'event')",
    ),
    "gzipped event over 1 MiB": Bad(
        gzip.compress(envelope(event_item(extra={"blob": "x" * (2 * MIB)}))),
        413,
        "the limit is 1048576 bytes (1 MiB)",
        encoding="gzip",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_request_is_answered_clearly_and_stores_nothing(inbox: InboxServer, case: Bad) -> None:
    assert inbox.project is not None
    assert inbox.store is not None
    other = inbox.store.list_projects()[1]
    keys = {"project": inbox.project.public_key, "other": other.public_key, "wrong": "0" * 32}
    headers = auth_headers(keys[case.key]) if case.key else {}
    if case.encoding:
        headers["Content-Encoding"] = case.encoding
    project = case.project or str(inbox.project.id)
    before = snapshot(Path(inbox.db_path))

    response = httpx.post(
        f"{inbox.url}/api/{project}/{case.endpoint}/",
        content=case.body,
        headers=headers,
        timeout=10,
    )

    assert response.status_code == case.status, response.text
    body = response.json()
    assert case.detail in body["detail"]
    assert body["where"]
    if case.where is not None:
        assert body["where"] == case.where
    assert snapshot(Path(inbox.db_path)) == before
    assert inbox.issues()[0]["count"] == "1"


def _raw_post(
    inbox: InboxServer, headers: dict[str, str], chunks: Iterable[bytes], timeout: float = 20
) -> tuple[int, dict[str, str], float]:
    """POST over a plain socket so the test controls framing and sees an early answer."""
    assert inbox.project is not None
    head = f"POST /api/{inbox.project.id}/envelope/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", inbox.port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the body ended: what we test for
        status, payload = _read_response(sock)
    return status, json.loads(payload), time.monotonic() - started


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    answer = read_message(sock)
    assert answer is not None, "the inbox closed the connection before its answer was whole"
    head, body, _ = answer
    return int(head.split()[1]), body


def _chunked(chunks: Iterable[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    yield b"0\r\n\r\n"


def test_a_declared_oversize_body_is_refused_before_it_is_read(inbox: InboxServer) -> None:
    assert inbox.project is not None
    before = snapshot(Path(inbox.db_path))
    headers = auth_headers(inbox.project.public_key) | {"Content-Length": str(21 * MIB)}
    status, body, elapsed = _raw_post(inbox, headers, [b"{}\n"])
    assert status == 413
    assert "the limit is 20971520 bytes (20 MiB)" in body["detail"]
    assert body["where"] == "Content-Length header"
    assert elapsed < 2  # answered without waiting for the 21 MiB that never come
    assert snapshot(Path(inbox.db_path)) == before


def test_a_streamed_oversize_envelope_is_refused_while_streaming(inbox: InboxServer) -> None:
    assert inbox.project is not None
    before = snapshot(Path(inbox.db_path))
    headers = auth_headers(inbox.project.public_key) | {"Transfer-Encoding": "chunked"}
    sent = []

    def body() -> Iterator[bytes]:
        yield b"{}\n"
        for _ in range(64):  # 64 MiB on offer; the server must stop reading at 20 MiB
            sent.append(MIB)
            yield b"x" * MIB

    status, answer, _ = _raw_post(inbox, headers, _chunked(body()))
    assert status == 413
    assert "larger than 20971520 bytes" in answer["detail"] or "over 20971520" in answer["detail"]
    assert sum(sent) < 64 * MIB, "the server read the whole body before refusing it"
    assert snapshot(Path(inbox.db_path)) == before


def _gzip_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MIB)
    parts = [compressor.compress(zeros) for _ in range(size // MIB)]
    return b"".join([*parts, compressor.flush()])


def _brotli_bomb(size: int) -> bytes:
    compressor = brotli.Compressor(quality=5)
    zeros = bytes(MIB)
    parts = [compressor.process(zeros) for _ in range(size // MIB)]
    return b"".join([*parts, compressor.finish()])


@pytest.mark.parametrize(
    ("encoding", "bomb"),
    [
        pytest.param("gzip", lambda: _gzip_bomb(1024 * MIB), id="gzip-1GiB"),
        pytest.param("br", lambda: _brotli_bomb(1024 * MIB), id="br-1GiB"),
    ],
)
def test_a_decompression_bomb_is_refused_quickly_with_bounded_memory(
    inbox: InboxServer, encoding: str, bomb: object
) -> None:
    assert inbox.project is not None
    assert callable(bomb)
    body = bomb()
    before = snapshot(Path(inbox.db_path))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    headers = auth_headers(inbox.project.public_key) | {
        "Content-Encoding": encoding,
        "Content-Length": str(len(body)),
    }
    status, answer, elapsed = _raw_post(inbox, headers, [body])
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    assert status == 413
    assert "decompressed envelope is larger than 20971520 bytes" in answer["detail"]
    assert elapsed < 5
    # The server runs in this process: inflating even a tenth of the bomb would show here.
    assert peak_after - peak_before < 100 * MIB
    assert snapshot(Path(inbox.db_path)) == before


def test_the_server_keeps_serving_after_bad_requests(inbox: InboxServer) -> None:
    assert inbox.project is not None
    with httpx.Client(headers=auth_headers(inbox.project.public_key), timeout=10) as client:
        url = f"{inbox.url}/api/{inbox.project.id}/envelope/"
        body_cases = [
            c
            for c in CASES.values()
            if c.key == "project" and c.project is None and c.endpoint == "envelope"
        ]
        assert len(body_cases) > 15
        for case in body_cases:
            encoding = {"Content-Encoding": case.encoding or "identity"}
            assert client.post(url, content=case.body, headers=encoding).status_code == case.status
        assert client.post(url, content=error_event(value="after")).status_code == 200
    assert inbox.issues()[0]["count"] == "2"


def test_a_sender_that_disconnects_mid_body_changes_nothing_and_logs_no_error(
    inbox: InboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert inbox.project is not None
    caplog.set_level(logging.INFO, logger="fastapi_sentry.inbox")
    before = snapshot(Path(inbox.db_path))
    head = (
        f"POST /api/{inbox.project.id}/envelope/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-Sentry-Auth: Sentry sentry_key={inbox.project.public_key}\r\n"
        "Content-Length: 5000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", inbox.port), timeout=10) as sock:
        sock.sendall(head.encode() + error_event()[:100])
    deadline = time.monotonic() + 5
    while "disconnected mid-body" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "disconnected mid-body" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert snapshot(Path(inbox.db_path)) == before
    response = httpx.post(
        f"{inbox.url}/api/{inbox.project.id}/envelope/",
        content=error_event(),
        headers=auth_headers(inbox.project.public_key),
        timeout=10,
    )
    assert response.status_code == 200
