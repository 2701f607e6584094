"""Capture what sentry-sdk would send, in memory: a test double for the transport.

Usable without pytest (`with capture_envelopes() as sent: ...`); the pytest plugin's
`sentry_events` fixture is a thin wrapper. Capturing swaps the sink, not the SDK: events go
through every hook (`before_send`, the scrubber, sampling) exactly as in production, and each
payload is the JSON the real transport would have put on the wire.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import sentry_sdk
import sentry_sdk.client
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

__all__ = ["CapturedEnvelopes", "CapturingTransport", "capture_envelopes"]


class CapturingTransport(Transport):
    """Keeps every envelope instead of sending it."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []
        self._lock = threading.Lock()

    def capture_envelope(self, envelope: Envelope) -> None:
        with self._lock:
            self.envelopes.append(envelope)

    def flush(self, timeout: float, callback: Any | None = None) -> None:
        """Nothing is queued: capture is synchronous."""

    def kill(self) -> None:
        """Nothing runs in the background."""


class CapturedEnvelopes:
    """What was captured, with selectors for the kinds of item a test asks about."""

    def __init__(self) -> None:
        self.transports: list[CapturingTransport] = []

    @property
    def envelopes(self) -> list[Envelope]:
        return [envelope for t in self.transports for envelope in list(t.envelopes)]

    def items(self, type: str | None = None) -> list[dict[str, Any]]:
        """Payloads (as sent: serialized, then parsed back) of the items of a type."""
        found = []
        for envelope in self.envelopes:
            for item in envelope.items:
                if type is not None and item.type != type:
                    continue
                try:
                    found.append(json.loads(item.get_bytes()))
                except ValueError:
                    continue
        return found

    @property
    def events(self) -> list[dict[str, Any]]:
        """Error and message events (not transactions)."""
        return self.items("event")

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("exception")]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [event for event in self.events if not event.get("exception")]

    @property
    def transactions(self) -> list[dict[str, Any]]:
        return self.items("transaction")

    @property
    def check_ins(self) -> list[dict[str, Any]]:
        return self.items("check_in")

    @property
    def logs(self) -> list[dict[str, Any]]:
        return [log for batch in self.items("log") for log in batch.get("items", [])]

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """`sentry_sdk.metrics` values, one dict per value (they travel in batches)."""
        return [m for batch in self.items("trace_metric") for m in batch.get("items", [])]

    @property
    def spans(self) -> list[dict[str, Any]]:
        """Streamed spans (`trace_lifecycle="stream"`), one dict per span as sent, attributes
        typed (`{"type": ..., "value": ...}`); several travel in one `span` item."""
        return [span for batch in self.items("span") for span in batch.get("items", [])]

    def clear(self) -> None:
        for transport in self.transports:
            transport.envelopes.clear()


@contextlib.contextmanager
def capture_envelopes() -> Iterator[CapturedEnvelopes]:
    """Capture for the duration of the block, whether Sentry is initialised before or inside it.

    A client created inside the block gets a capturing transport (if it has a DSN, as
    production would); a client already active has its transport swapped and restored.
    """
    captured = CapturedEnvelopes()
    original_make = sentry_sdk.client.make_transport  # type: ignore[attr-defined]

    def make_capturing_transport(options: dict[str, Any]) -> Transport | None:
        # install() asks for its own HTTP transport; one the test chose itself is left alone
        chosen = options.get("transport")
        ours = chosen is None or getattr(chosen, "__module__", "").startswith("fastapi_sentry.")
        if not options.get("dsn") or not ours:
            return original_make(options)
        transport = CapturingTransport(options)
        captured.transports.append(transport)
        return transport

    client = sentry_sdk.get_client()
    previous = None
    if client.is_active():
        previous = client.transport
        transport = CapturingTransport(client.options)
        captured.transports.append(transport)
        client.transport = transport
    sentry_sdk.client.make_transport = make_capturing_transport  # type: ignore[attr-defined]
    try:
        yield captured
    finally:
        sentry_sdk.client.make_transport = original_make  # type: ignore[attr-defined]
        if previous is not None:
            client.transport = previous
