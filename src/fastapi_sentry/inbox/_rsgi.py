"""The inbox on granian's RSGI interface: envelope POSTs answered directly, the rest through a
small ASGI bridge to the same Starlette app.

Under uvicorn an envelope's HTTP parsing, its ``Request`` and ``Response`` objects and uvicorn's
protocol class are all Python, about a third of the server's CPU per event; granian parses HTTP
and writes the answer in Rust threads, beside the Python thread. The endpoint's logic is the one
the ASGI path runs (:meth:`InboxApp.authenticate`, :meth:`InboxApp.ingest`), with the same
answers, errors and CORS headers.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from granian._granian import RSGIHTTPProtocol, RSGIProtocolClosed, RSGIProtocolError
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Message

from fastapi_sentry.inbox._app import CORS_HEADERS, InboxApp, check_length, read_chunks
from fastapi_sentry.inbox._auth import header_key
from fastapi_sentry.inbox._errors import InboxError

logger = logging.getLogger(__name__)

_ENVELOPE_PATH = re.compile(r"/api/([0-9]{1,18})/envelope/?")
_OK_HEADERS = [("content-type", "application/json"), *CORS_HEADERS.items()]


def _error(error: InboxError) -> tuple[int, list[tuple[str, str]], bytes]:
    """The JSON answer of a refusal, as :func:`fastapi_sentry.inbox._app.error_response` gives
    it: the connection closes, because the rest of a refused body is never read."""
    body = json.dumps(error.to_json(), separators=(",", ":")).encode("ascii")
    return error.status_code, [*_OK_HEADERS, ("connection", "close")], body


async def _one(body: bytes) -> AsyncIterator[bytes]:
    yield body


class RSGIInbox:
    """An RSGI application (``__rsgi__``) serving ``app`` (from :func:`create_app`); ``asgi`` is
    the ASGI app for every request but an envelope POST."""

    def __init__(self, app: Starlette, asgi: ASGIApp) -> None:
        self.ingest: InboxApp = app.state.ingest
        self.asgi = asgi

    async def __rsgi__(self, scope: Any, proto: RSGIHTTPProtocol) -> None:
        if scope.proto == "http" and scope.method == "POST":
            match = _ENVELOPE_PATH.fullmatch(scope.path)
            if match is not None:
                await self._envelope(match.group(1), scope, proto)
                return
        if scope.proto == "http":
            await _Bridge(scope, proto).run(self.asgi)

    async def _envelope(self, project_id: str, scope: Any, proto: Any) -> None:
        headers = scope.headers
        try:
            key = header_key(headers) or QueryParams(scope.query_string).get("sentry_key")
            project = self.ingest.authenticate(project_id, key or None)
            received = time.time()
            length = headers.get("content-length")
            check_length(length)
            # A declared length is what the HTTP layer reads, no more: one read is enough.
            chunks = _one(await proto()) if length is not None else proto
            body = await read_chunks(headers.get("content-encoding"), chunks)
            answer = await self.ingest.ingest(project, body, received)
        except InboxError as e:
            if e.status_code >= 500:
                logger.error("Inbox request %s failed: %s", scope.path, e.message)
            else:
                logger.info("Inbox refused %s (%d): %s", scope.path, e.status_code, e)
            proto.response_bytes(*_error(e))
            return
        except (RSGIProtocolClosed, RSGIProtocolError):  # the sender left mid-body
            logger.info("Inbox request %s: the client disconnected mid-body", scope.path)
            return
        proto.response_bytes(200, _OK_HEADERS, answer)


class _Bridge:
    """One RSGI request run through an ASGI app (the web pages, the JSON API, the other ingest
    endpoints): these are not the hot path, so plain and small beats fast."""

    def __init__(self, scope: Any, proto: Any) -> None:
        self.proto = proto
        client_host, _, client_port = scope.client.rpartition(":")
        server_host, _, server_port = scope.server.rpartition(":")
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": scope.http_version,
            "method": scope.method,
            "scheme": scope.scheme,
            "path": scope.path,
            "query_string": scope.query_string.encode("latin-1"),
            "root_path": "",
            "headers": [
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in scope.headers.items()
            ],
            "client": (client_host.strip("[]"), int(client_port or 0)),
            "server": (server_host.strip("[]"), int(server_port or 0)),
        }
        self.body: AsyncIterator[bytes] | None = aiter(proto)
        self.status = 500
        self.headers: list[tuple[str, str]] = []
        self.stream: Any = None
        self.answered = False

    async def receive(self) -> Message:
        if self.body is not None:
            try:
                chunk = await anext(self.body)
            except StopAsyncIteration:
                self.body = None
                return {"type": "http.request", "body": b"", "more_body": False}
            except (RSGIProtocolClosed, RSGIProtocolError):  # the sender left mid-body
                self.body = None
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": chunk, "more_body": True}
        await self.proto.client_disconnect()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", [])
            ]
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if self.stream is None and not message.get("more_body", False):
                self.proto.response_bytes(self.status, self.headers, body)
                self.answered = True
                return
            if self.stream is None:
                self.stream = self.proto.response_stream(self.status, self.headers)
            if body:
                await self.stream.send_bytes(body)
            self.answered = True

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except Exception:
            logger.exception("Inbox request %s failed", self.scope["path"])
            if not self.answered:
                self.proto.response_bytes(500, [], b"")
