"""Running the inbox: blocking for the CLI (:func:`serve`, on granian where installed), in a
background thread for tests (:class:`InboxServer`)."""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from fastapi_sentry.inbox._alerts import AlertRules
from fastapi_sentry.inbox._app import create_app, ingest_fast_path
from fastapi_sentry.inbox._auth import is_loopback
from fastapi_sentry.inbox._monitor import Monitor, resolve_rules
from fastapi_sentry.inbox._store import InboxStore, Project

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InboxInfo:
    """What a user needs once the inbox listens: its URL, the DSN and the read token (if any)."""

    url: str
    dsn: str
    project: Project
    token: str | None


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise OSError(
            e.errno,
            f"The inbox cannot listen on {host}:{port} ({e.strerror}); choose another --port "
            "or stop the process using it.",
        ) from e
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


def _resolve_token(host: str, token: str | None) -> str | None:
    # Beyond loopback the events (request headers, local variables) must not be readable by anyone.
    if token is None and not is_loopback(host):
        return secrets.token_urlsafe(24)
    return token


class _Untraced:
    """Serve the inbox without going through ``Starlette.__call__``.

    sentry-sdk's Starlette integration patches that method to trace every request. Where the SDK
    runs in the inbox's own process (the pytest plugin, a demo) each envelope the inbox receives
    would become a transaction sent back to the inbox, and so on forever. The middleware stack is
    what ``Starlette.__call__`` would run, minus that wrapper.
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.fast = ingest_fast_path(app, self._untraced)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self.app
        await self.fast(scope, receive, send)

    async def _untraced(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app.middleware_stack is None:
            self.app.middleware_stack = self.app.build_middleware_stack()
        await self.app.middleware_stack(scope, receive, send)


def _config(app: Starlette) -> uvicorn.Config:
    return uvicorn.Config(
        _Untraced(app),
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_keep_alive=30,
    )


HTTPServer = Literal["auto", "granian", "uvicorn"]
_SERVERS = ("auto", "granian", "uvicorn")


def choose_server(server: str) -> Literal["granian", "uvicorn"]:
    """The HTTP server to run: ``auto`` is granian where it is installed (the ``inbox-fast``
    extra: it parses HTTP in Rust, beside the Python thread), uvicorn otherwise."""
    if server not in _SERVERS:
        raise ValueError(
            f"server={server!r} is not an HTTP server the inbox runs; use one of {_SERVERS}."
        )
    if server == "uvicorn":
        return "uvicorn"
    if importlib.util.find_spec("granian") is None:
        if server == "granian":
            raise ImportError(
                "server='granian' needs the granian package; install fastapi-sentry[inbox-fast] "
                "or use server='uvicorn'."
            )
        return "uvicorn"
    return "granian"


class _Runner(Protocol):
    @property
    def started(self) -> bool: ...

    def run(self, sockets: list[socket.socket]) -> None: ...

    def stop(self) -> None: ...


class _Uvicorn:
    def __init__(self, app: Starlette) -> None:
        self.server = uvicorn.Server(_config(app))

    @property
    def started(self) -> bool:
        return self.server.started

    def run(self, sockets: list[socket.socket]) -> None:
        self.server.run(sockets=sockets)

    def stop(self) -> None:
        self.server.should_exit = True


def _runner(server: Literal["granian", "uvicorn"], app: Starlette) -> _Runner:
    if server == "granian":
        from fastapi_sentry.inbox._granian import Granian

        return Granian(app, _Untraced(app))
    return _Uvicorn(app)


def serve(
    *,
    host: str,
    port: int,
    db_path: str | os.PathLike[str],
    token: str | None,
    on_ready: Callable[[InboxInfo], None] | None = None,
    alerts: str | os.PathLike[str] | AlertRules | None = None,
    max_events: int | None = None,
    max_age_days: float | None = None,
    server: HTTPServer = "auto",
) -> None:
    """Run the inbox until interrupted (Ctrl-C / SIGTERM).

    ``on_ready`` is called once the socket listens, with the URL, the default project's DSN and the
    token; on a non-loopback ``host`` without a ``token`` one is generated and only given there, so
    the caller (the CLI) must print it. ``alerts`` is a rules file, read before the socket opens
    (a bad file raises :class:`AlertRulesError`); ``max_events`` (per project) and
    ``max_age_days`` turn on retention. ``server`` is the HTTP server (:func:`choose_server`).
    """
    chosen = choose_server(server)
    token = _resolve_token(host, token)
    rules = resolve_rules(alerts)
    store = InboxStore(db_path)
    try:
        sock = _bind(host, port)
        try:
            url = _base_url(host, sock.getsockname()[1])
            project = store.default_project()
            if on_ready is not None:
                on_ready(InboxInfo(url=url, dsn=project.dsn(url), project=project, token=token))
            logger.info("fastapi-sentry inbox listening on %s", url)
            monitor = Monitor(
                store,
                rules=rules,
                base_url=url,
                token=token,
                max_events=max_events,
                max_age_days=max_age_days,
            ).start()
            try:
                app = create_app(store, token=token, rules=rules)
                _runner(chosen, app).run([sock])
            finally:
                monitor.stop()
        finally:
            sock.close()
    finally:
        store.close()


class InboxServer:
    """The inbox in a background thread on a free port: for tests and the pytest plugin.

    >>> with InboxServer(tmp_path / "inbox.db") as inbox:
    ...     sentry_sdk.init(dsn=inbox.dsn)
    ...     inbox.wait_for(1)

    ``server`` is uvicorn unless asked: a test's handful of events gains nothing from granian,
    whose embedded mode (a server on a thread's event loop) granian itself calls experimental.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        alerts: str | os.PathLike[str] | AlertRules | None = None,
        max_events: int | None = None,
        max_age_days: float | None = None,
        server: HTTPServer = "uvicorn",
    ) -> None:
        self.server_kind = choose_server(server)
        self.db_path = os.fspath(db_path)
        self.rules = resolve_rules(alerts)
        self.max_events = max_events
        self.max_age_days = max_age_days
        self.monitor: Monitor | None = None
        self.host = host
        self.port = port
        self.token = _resolve_token(host, token)
        self.store: InboxStore | None = None
        self.url = ""
        self.dsn = ""
        self.project: Project | None = None
        self._server: _Runner | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self) -> InboxServer:
        if self._thread is not None:
            raise RuntimeError("This InboxServer is already running; call stop() first.")
        self.store = InboxStore(self.db_path)
        try:
            self._sock = _bind(self.host, self.port)
            self.port = self._sock.getsockname()[1]
            self.url = _base_url(self.host, self.port)
            self.project = self.store.default_project()
            self.dsn = self.project.dsn(self.url)
            self.monitor = Monitor(
                self.store,
                rules=self.rules,
                base_url=self.url,
                token=self.token,
                max_events=self.max_events,
                max_age_days=self.max_age_days,
            ).start()
            app = create_app(self.store, token=self.token, rules=self.rules)
            self._server = _runner(self.server_kind, app)
            self._thread = threading.Thread(
                target=self._server.run,
                args=([self._sock],),
                name="fastapi-sentry-inbox",
                daemon=True,
            )
            self._thread.start()
            deadline = time.monotonic() + 10.0
            while not self._server.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"The inbox server on {self.url} did not start within 10 s; "
                        "see the log output above for the reason."
                    )
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=15)
            if self._thread.is_alive():
                logger.warning("The inbox server thread did not stop within 15 s.")
        if self._sock is not None:
            self._sock.close()
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        if self.store is not None:
            self.store.close()
        self._server = self._thread = self._sock = None
        self.store = None

    def __enter__(self) -> InboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _running_store(self) -> InboxStore:
        if self.store is None:
            raise RuntimeError("The InboxServer is not running; call start() or use it in 'with'.")
        return self.store

    def issues(self, project_id: int | None = None) -> list[dict[str, Any]]:
        """Issues as the JSON API returns them (Sentry's shape: ``count`` is a string)."""
        store = self._running_store()
        if project_id is None:
            project_id = store.default_project().id
        return store.list_issues(project_id, limit=None)

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        """Every stored event of every project, oldest first, as full JSON.

        ``type`` is Sentry's event type: ``error`` (with an exception), ``default`` (a message),
        ``transaction``, ``check_in``, ``session``, ``sessions``, ``client_report``, ``log``,
        ``attachment`` or an unknown item's type; comma-separate several.
        """
        return self._running_store().events(type=type)

    def wait_for(
        self, count: int, timeout: float = 10.0, type: str | None = "error"
    ) -> list[dict[str, Any]]:
        """Poll until at least ``count`` events of ``type`` are stored, and return all of them."""
        store = self._running_store()
        deadline = time.monotonic() + timeout
        while True:
            seen = store.count_events(type=type)
            if seen >= count:
                return store.events(type=type)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"The inbox stored {seen} event(s) of type {type!r} within {timeout} s, "
                    f"expected at least {count}; check that the SDK's dsn is this inbox's "
                    f"DSN (inbox.dsn, on {self.url}) and call sentry_sdk.flush() before waiting."
                )
            time.sleep(0.02)
