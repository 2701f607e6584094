"""Sending notifications: a JSON POST to a webhook, or an e-mail through the file's SMTP server.

Each target has its own worker thread and queue, so a webhook that hangs delays only its own
notifications (never ingest, never another target); each attempt has a timeout and a failed one is
retried with exponential back-off. Results go to the history table.
"""

from __future__ import annotations

import json
import logging
import queue
import smtplib
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from fastapi_sentry.inbox._alerts._rules import Delivery, Smtp

logger = logging.getLogger(__name__)

#: What a worker calls with (delivery id, status, attempts, error) after every attempt.
Report = Callable[[int, str, int, "str | None"], None]


class DeliveryError(Exception):
    """One attempt failed; the message is safe to store and show (no URL path, no password)."""


def post_webhook(url: str, body: dict[str, Any], timeout: float) -> None:
    request = urllib.request.Request(  # noqa: S310 - the URL comes from the rules file only
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "fastapi-sentry-inbox"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read(65536)
    except urllib.error.HTTPError as e:
        raise DeliveryError(f"the webhook answered HTTP {e.code}") from None
    except urllib.error.URLError as e:
        raise DeliveryError(f"the webhook is unreachable ({e.reason})") from None
    except (TimeoutError, OSError) as e:
        raise DeliveryError(f"the webhook did not answer within {timeout:g} s ({e})") from None


def send_mail(smtp: Smtp, target: str, body: dict[str, Any], timeout: float) -> None:
    message = EmailMessage()
    message["Subject"] = f"[fastapi-sentry inbox] [{body['severity']}] {body['title']}"
    message["From"] = smtp.sender
    message["To"] = target.removeprefix("mailto:")
    message.set_content(body["text"] + "\n")
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=timeout) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.username:
                client.login(smtp.username, smtp.password() or "")
            client.send_message(message)
    except smtplib.SMTPAuthenticationError as e:
        raise DeliveryError(f"the SMTP server refused the login ({e.smtp_code})") from None
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryError(f"the SMTP server {smtp.host}:{smtp.port} failed: {e}") from None


class Deliverer:
    """Per-target queues and worker threads, with retries; :meth:`wait_idle` for tests."""

    def __init__(self, delivery: Delivery, smtp: Smtp | None, report: Report) -> None:
        self.delivery = delivery
        self.smtp = smtp
        self.report = report
        self._queues: dict[str, queue.Queue[tuple[int, dict[str, Any]] | None]] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._pending = 0
        self._idle = threading.Condition()

    def submit(self, delivery_id: int, target: str, body: dict[str, Any]) -> None:
        with self._idle:
            self._pending += 1
            if target not in self._queues:
                self._queues[target] = queue.Queue()
                thread = threading.Thread(
                    target=self._work,
                    args=(target, self._queues[target]),
                    name="fastapi-sentry-inbox-delivery",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
        self._queues[target].put((delivery_id, body))

    def _send(self, target: str, body: dict[str, Any]) -> None:
        if target.startswith("mailto:"):
            if self.smtp is None:
                raise DeliveryError("the rules file has no [smtp] table")
            send_mail(self.smtp, target, body, self.delivery.timeout)
        else:
            post_webhook(target, body, self.delivery.timeout)

    def _deliver(self, target: str, delivery_id: int, body: dict[str, Any]) -> None:
        error: str | None = None
        for attempt in range(1, self.delivery.attempts + 1):
            try:
                self._send(target, body)
            except DeliveryError as e:
                error = str(e)
            else:
                self.report(delivery_id, "delivered", attempt, None)
                return
            last = attempt == self.delivery.attempts
            self.report(delivery_id, "failed" if last else "retrying", attempt, error)
            logger.warning(
                "Alert %r: delivery attempt %d failed: %s", body.get("rule"), attempt, error
            )
            if not last and self._stopping.wait(self.delivery.backoff * 2 ** (attempt - 1)):
                return

    def _work(self, target: str, jobs: queue.Queue[tuple[int, dict[str, Any]] | None]) -> None:
        while (job := jobs.get()) is not None:
            try:
                self._deliver(target, *job)
            except Exception:  # a bug here must not end the worker and silence the target
                logger.exception("Alert delivery failed unexpectedly")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted notification is delivered or given up; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop retrying; a worker inside a hanging request is left to its timeout (daemon)."""
        self._stopping.set()
        for jobs in self._queues.values():
            jobs.put(None)
        for thread in self._threads:
            thread.join(timeout / max(len(self._threads), 1))
