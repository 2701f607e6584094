"""One HTTP/1.1 keep-alive connection to the receiver, for the envelope POST and nothing else.

sentry-sdk posts through urllib3's pool manager (a URL parse, a pool lookup, retry bookkeeping,
a response wrapper) onto http.client, which parses the answer's headers with the email package:
several times the instructions of the compression for a small transaction
(`benchmarks/bench_send_instructions.py`). A sender with one known endpoint needs none of it:
the request head is made once, and the answer is a status line, a few headers and a short body.

`ResilientTransport` uses this only for a plain `http` DSN with no proxy and no socket options
(`fast_connection`); anything else (https, proxies, SOCKS, `socket_options`, `keep_alive`)
keeps sentry-sdk's urllib3 path. Its answers expose what the SDK's `_update_rate_limits` and
`_handle_response` read: `status`, `headers.get` (names case-insensitive, repeated ones joined
with ", " as urllib3 does), `data` and `close()`.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import weakref
from collections.abc import Mapping
from urllib.parse import urlsplit

#: The longest answer head (status line and headers) accepted, as http.client's limits do.
MAX_HEAD = 64 * 1024
#: The longest answer body read; a receiver's answer to an envelope is a short JSON.
MAX_BODY = 1024 * 1024


#: every connection of this process, so a forked child can give each one a lock of its own
_open: weakref.WeakSet[Connection] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for connection in list(_open):
        connection._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class BadAnswer(OSError):
    """The receiver's answer is not HTTP/1.x as expected: the connection is dropped."""


class Headers:
    """An answer's headers; `get` ignores case, as urllib3's `HTTPHeaderDict` does."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values  # lower-cased name -> value

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name.lower(), default)


class Answer:
    __slots__ = ("data", "headers", "status")

    def __init__(self, status: int, headers: Headers, data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data

    def close(self) -> None:
        return None  # the body is read already; the connection is the sender's


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """Status, HTTP version and headers of an answer head (without its blank line)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise BadAnswer("the receiver's answer has no HTTP/1.x status line")
    values: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        key = name.strip().decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        values[key] = f"{values[key]}, {text}" if key in values else text
    return int(parts[1]), parts[0].decode("ascii"), values


class Connection:
    """Posts to one URL over one kept-alive socket, reconnecting when the receiver closed it.

    Used from the transport's one worker thread; the lock only guards against a second caller.
    """

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a plain http URL: {parts.scheme}://{parts.hostname}")
        self.host = parts.hostname
        self.port = parts.port or 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        host_header = host if self.port == 80 else f"{host}:{self.port}"
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        self._head = f"POST {target} HTTP/1.1\r\nHost: {host_header}\r\n".encode("latin-1")
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._pid = 0
        self._buffer = b""
        self._lock = threading.Lock()
        self._closing = False
        _open.add(self)

    def _after_fork_in_child(self) -> None:
        """A fork while the parent's sender waited for an answer copied its lock held, and no
        thread in the child would ever release it: every later send there would hang."""
        self._lock = threading.Lock()
        self._sock, self._buffer = None, b""  # the parent's socket stays the parent's

    def post(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        lines = [self._head]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"Content-Length: %d\r\nAccept-Encoding: identity\r\n\r\n" % len(body))
        lines.append(body)
        request = b"".join(lines)
        with self._lock:
            try:
                return self._post(request)
            finally:
                if self._closing:
                    self._drop()

    def _post(self, request: bytes) -> Answer:
        reused = self._sock is not None and self._pid == os.getpid()
        try:
            return self._exchange(request)
        except TimeoutError:
            self._drop()
            raise  # the receiver is slow, not gone: a second wait would only double it
        except OSError:
            self._drop()
            if not reused:
                raise
        # a kept-alive connection the receiver closed as it was reused: once more, anew
        try:
            return self._exchange(request)
        except OSError:
            self._drop()
            raise

    def close(self) -> None:
        """Close the socket now, or after the request in flight (never waits for it)."""
        self._closing = True
        if self._lock.acquire(blocking=False):
            try:
                self._drop()
            finally:
                self._lock.release()

    def _drop(self) -> None:
        sock, self._sock, self._buffer = self._sock, None, b""
        if sock is not None and self._pid == os.getpid():
            sock.close()

    def _connect(self) -> socket.socket:
        sock = self._sock
        if sock is not None and self._pid == os.getpid():
            # readable while idle: the receiver closed it (or sent what was not asked for)
            if not select.select([sock], [], [], 0)[0]:
                return sock
            self._drop()
        self._sock = None  # a parent's socket after a fork is the parent's
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._pid, self._buffer = sock, os.getpid(), b""
        return sock

    def _exchange(self, request: bytes) -> Answer:
        sock = self._connect()
        sock.sendall(request)
        while True:
            status, version, values = _parse_head(self._read_head(sock))
            if not 100 <= status < 200:
                break  # 1xx answers (none is asked for) come before the real one
        data, reusable = self._read_body(sock, status, values)
        if version == "HTTP/1.0":
            reusable = reusable and values.get("connection", "").lower() == "keep-alive"
        # bytes after the answer were not asked for: the next answer could not be told apart
        if not reusable or self._buffer or "close" in values.get("connection", "").lower():
            self._drop()
        return Answer(status, Headers(values), data)

    def _recv(self, sock: socket.socket) -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise BadAnswer("the receiver closed the connection before it answered")
        return chunk

    def _read_head(self, sock: socket.socket) -> bytes:
        buffer = self._buffer
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                self._buffer = buffer[end + 4 :]
                return buffer[:end]
            if len(buffer) > MAX_HEAD:
                raise BadAnswer("the receiver's answer head is too long")
            buffer += self._recv(sock)

    def _read_exactly(self, sock: socket.socket, size: int) -> bytes:
        if size > MAX_BODY:
            raise BadAnswer("the receiver's answer body is too long")
        buffer = self._buffer
        while len(buffer) < size:
            buffer += self._recv(sock)
        self._buffer = buffer[size:]
        return buffer[:size]

    def _read_line(self, sock: socket.socket) -> bytes:
        buffer = self._buffer
        while (end := buffer.find(b"\r\n")) < 0:
            if len(buffer) > MAX_HEAD:
                raise BadAnswer("a chunk size line of the receiver's answer is too long")
            buffer += self._recv(sock)
        self._buffer = buffer[end + 2 :]
        return buffer[:end]

    def _read_body(
        self, sock: socket.socket, status: int, values: dict[str, str]
    ) -> tuple[bytes, bool]:
        """The body, and whether the connection can carry the next request."""
        if status in (204, 304):
            return b"", True
        if "chunked" in values.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self._read_line(sock).split(b";", 1)[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise BadAnswer("a chunk size in the answer is not a number") from None
                if size == 0:
                    while self._read_line(sock):  # trailers, up to the blank line
                        pass
                    return b"".join(parts), True
                parts.append(self._read_exactly(sock, size))
                self._read_exactly(sock, 2)
        length = values.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise BadAnswer("the receiver's answer has a malformed Content-Length")
            return self._read_exactly(sock, int(length)), True
        # no length: the body runs to the end of the connection
        buffer = self._buffer
        while len(buffer) <= MAX_BODY:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
        self._buffer = b""
        return buffer[:MAX_BODY], False
