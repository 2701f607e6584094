"""Real notification targets for the alert tests: a webhook receiver and an SMTP server, both on
127.0.0.1, plus helpers to start an inbox with a rules file and to send it errors."""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from fastapi_sentry.inbox import InboxServer
from fastapi_sentry.inbox._alerts import AlertEngine
from tests.inbox_support import auth_headers, envelope, event_item
from tests.support.ports import free_port


class Webhook:
    """An HTTP server recording every JSON POST. ``fail`` answers the first N with 500;
    ``hang`` keeps each request open until :meth:`release` (a target that hangs)."""

    def __init__(self, *, fail: int = 0, hang: bool = False) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail = fail
        self.released = threading.Event()
        if not hang:
            self.released.set()
        self._changed = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with hook._changed:
                    hook.attempts += 1
                    attempt = hook.attempts
                    hook._changed.notify_all()
                if not hook.released.is_set():
                    # a hanging target: the sender times out long before this answer
                    hook.released.wait(30)
                    self._answer(503)
                elif attempt <= hook.fail:
                    self._answer(500)
                else:
                    with hook._changed:
                        hook.bodies.append(json.loads(body))
                        hook._changed.notify_all()
                    self._answer(200)

            def _answer(self, status: int) -> None:
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-path"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait(self, check: Callable[[], bool], timeout: float = 20.0) -> None:
        with self._changed:
            if not self._changed.wait_for(check, timeout):
                raise AssertionError(
                    f"webhook: condition not reached in {timeout} s "
                    f"({self.attempts} attempts, {len(self.bodies)} delivered)"
                )

    def release(self) -> None:
        self.released.set()

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class _Handler:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.mailbox.changed:
            self.mailbox.messages.append(message)
            self.mailbox.changed.notify_all()
        return "250 Message accepted for delivery"


class Mailbox:
    """aiosmtpd on 127.0.0.1 keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.changed = threading.Condition()
        self.port = free_port()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def wait(self, count: int, timeout: float = 20.0) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"{len(self.messages)} e-mails within {timeout} s")

    def __enter__(self) -> Mailbox:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def alerting_inbox(tmp_path: Path, rules: str, **kwargs: Any) -> Iterator[InboxServer]:
    with InboxServer(tmp_path / "inbox.db", alerts=rules_file(tmp_path, rules), **kwargs) as inbox:
        yield inbox


def engine(inbox: InboxServer) -> AlertEngine:
    assert inbox.monitor is not None
    assert inbox.monitor.alerts is not None
    return inbox.monitor.alerts


def post_events(inbox: InboxServer, count: int, **fields: Any) -> list[str]:
    """Send ``count`` error events over HTTP; returns the ids the inbox acknowledged."""
    assert inbox.project is not None
    acked = []
    with httpx.Client(timeout=10) as client:
        for _ in range(count):
            item = event_item(**fields)
            response = client.post(
                f"{inbox.url}/api/{inbox.project.id}/envelope/",
                content=envelope(item),
                headers=auth_headers(inbox.project.public_key),
            )
            assert response.status_code == 200, response.text
            acked.append(response.json()["id"])
    return acked


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s")
        time.sleep(0.05)
