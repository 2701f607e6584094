"""Running the inbox on granian (the ``inbox-fast`` extra), in the calling thread.

granian's embedded server runs its workers as tasks of the current event loop: the HTTP work is
done by its Rust threads, the Python of every request on this loop. It serves the socket the
inbox bound itself, so ``port=0`` and the error for a busy port stay those of the uvicorn path.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from typing import Any

from granian._granian import SocketHolder
from granian.constants import HTTPModes, Interfaces
from granian.log import LogLevels
from granian.server.embed import Server
from starlette.applications import Starlette
from starlette.types import ASGIApp

from fastapi_sentry.inbox._rsgi import RSGIInbox

_BACKLOG = 2048


class _OnSocket(Server):
    """granian's embedded server on a socket bound beforehand (granian would bind its own)."""

    def __init__(self, target: Any, sock: socket.socket) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(
            target,
            address=host,
            port=port,
            interface=Interfaces.RSGI,
            http=HTTPModes.http1,
            websockets=False,
            backlog=_BACKLOG,
            log_enabled=False,
            log_level=LogLevels.warning,
        )
        self._inbox_sock = sock

    def _init_shared_socket(self) -> None:
        # granian owns (and closes) the descriptor it is given: hand it a duplicate.
        self._ssp = None
        # SocketHolder(fd, uds, backlog), as granian builds it (its stub lists no arguments).
        holder = SocketHolder(os.dup(self._inbox_sock.fileno()), False, _BACKLOG)  # type: ignore[call-arg]
        self._shd = holder  # type: ignore[assignment]


class Granian:
    """The inbox app on granian: ``run`` blocks until ``stop`` (from any thread) or, in the main
    thread, SIGINT / SIGTERM."""

    def __init__(self, app: Starlette, asgi: ASGIApp) -> None:
        self.target = RSGIInbox(app, asgi)
        self.started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _OnSocket | None = None
        self._stopping = False

    def run(self, sockets: list[socket.socket]) -> None:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is part of the inbox extra off Windows
            asyncio.run(self._serve(sockets[0]))
        else:
            uvloop.run(self._serve(sockets[0]))

    async def _serve(self, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = _OnSocket(self.target, sock)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(signum, self._server.stop)
        task = asyncio.ensure_future(self._server.serve())
        self.started = True
        if self._stopping:
            self._server.stop()  # type: ignore[no-untyped-call]
        await task

    def stop(self) -> None:
        self._stopping = True
        loop, server = self._loop, self._server
        if loop is not None and server is not None and not loop.is_closed():
            loop.call_soon_threadsafe(server.stop)
