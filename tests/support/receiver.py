"""A tiny Sentry ingest endpoint on 127.0.0.1 that keeps every request body, decompressed.

It is deliberately not the inbox: the core tests should prove what sentry-sdk's real HTTP
transport puts on the wire, with as little of our own code on the receiving side as possible.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import brotli


@dataclass
class Envelope:
    headers: dict[str, Any]
    items: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)


def parse_envelope(body: bytes) -> Envelope:
    """Split an envelope into its header and (item header, payload) pairs."""
    head, _, rest = body.partition(b"\n")
    envelope = Envelope(json.loads(head or b"{}"))
    while rest:
        if rest.startswith(b"\n"):
            rest = rest[1:]
            continue
        line, _, rest = rest.partition(b"\n")
        item_headers = json.loads(line)
        length = item_headers.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length:]
        envelope.items.append((item_headers, payload))
    return envelope


def decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.lower().strip()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        return bytes(brotli.decompress(body))
    return body


class Receiver:
    """Start with `with Receiver() as r:`; `r.dsn` points sentry-sdk at it."""

    def __init__(
        self,
        *,
        delay: float = 0.0,
        status: int = 200,
        gate: threading.Event | None = None,
        hold: Callable[[bytes], bool] | None = None,
        keep_alive: bool = False,
    ) -> None:
        self.delay = delay
        self.status = status
        #: when given, each request is held (after it has arrived) until the gate is set
        self.gate = gate
        #: which requests the gate holds (by their decompressed body): all when not given
        self.hold = hold
        self.arrived = 0
        self.held = 0  # requests held at the gate now
        self.most_held = 0  # the most held at once
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []  # of each request, names lower-cased
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1 keeps connections open, as Sentry's endpoint does
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                body = decompress(raw, self.headers.get("Content-Encoding", ""))
                if receiver.gate is not None and (receiver.hold is None or receiver.hold(body)):
                    with receiver._cond:
                        receiver.arrived += 1
                        receiver.held += 1
                        receiver.most_held = max(receiver.most_held, receiver.held)
                        receiver._cond.notify_all()
                    receiver.gate.wait(30)
                    with receiver._cond:
                        receiver.held -= 1
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._cond:
                    receiver.bodies.append(body)
                    receiver.paths.append(self.path)
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    receiver._cond.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.dsn = f"http://publickey@127.0.0.1:{self.port}/1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """The bodies received once there are at least `count`; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.bodies) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"the receiver got {len(self.bodies)} request(s), expected {count}"
                    )
                self._cond.wait(left)
            return list(self.bodies)

    def wait_arrived(self, count: int, timeout: float = 10.0) -> None:
        """Until `count` requests have reached a gated receiver (held, not yet answered)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.arrived >= count, timeout):
                raise TimeoutError(f"{self.arrived} request(s) arrived, expected {count}")

    def envelopes(self) -> list[Envelope]:
        with self._cond:
            bodies = list(self.bodies)
        return [parse_envelope(body) for body in bodies]

    def envelope_items(self, type: str | None = None) -> list[dict[str, Any]]:
        """JSON payloads of the items of that type (`event`, `transaction`, `check_in`, ...)."""
        found = []
        for envelope in self.envelopes():
            for headers, payload in envelope.items:
                if type is None or headers.get("type") == type:
                    try:
                        found.append(json.loads(payload))
                    except ValueError:
                        continue
        return found

    def wait_for_items(self, type: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            items = self.envelope_items(type)
            if len(items) >= count:
                return items
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the receiver got {len(items)} {type} item(s), expected {count}"
                )
            time.sleep(0.02)

    def raw(self) -> bytes:
        with self._cond:
            return b"\n".join(self.bodies)
