"""sentry-sdk's HTTP transport with a circuit breaker, so a dead receiver costs the service nothing.

The SDK honours 429 rate limits, but when the receiver refuses connections or answers 5xx it
tries every event again: four connection attempts per event (urllib3 retries 3 times), an
exception and its handling each time, all on a thread that shares the GIL with the service.
Measured by the receiver-fault test: a refusing receiver raised the service's p99 to about 1.6x
and its CPU per request to about 2x. After a failure, this transport stops trying for a while
(1 s, doubling up to 60 s) and counts what it drops as lost, as the SDK does; the first success
closes the breaker again. Events are lost either way while the receiver is down; the service
no longer pays for the attempts.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import HttpTransport

#: First pause after a failure, and the longest one, in seconds.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0


class ResilientTransport(HttpTransport):
    """`HttpTransport` that backs off after network errors and 5xx answers."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self._breaker_lock = threading.Lock()
        self._failures = 0
        self._closed_at = 0.0  # monotonic time from which sending is tried again

    @property
    def backing_off(self) -> bool:
        return time.monotonic() < self._closed_at

    def _send_envelope(self, envelope: Envelope) -> None:
        if self.backing_off:
            self.on_dropped_event("backoff")
            for item in envelope.items:
                self.record_lost_event("network_error", item=item)
            return
        try:
            super()._send_envelope(envelope)
        except Exception:
            self._failed()
            raise

    def _handle_response(self, response: Any, envelope: Envelope | None) -> None:
        super()._handle_response(response=response, envelope=envelope)
        if response.status >= 500:
            self._failed()
        elif response.status < 300:
            with self._breaker_lock:
                self._failures = 0

    def _failed(self) -> None:
        with self._breaker_lock:
            self._failures += 1
            pause = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (self._failures - 1))
            self._closed_at = time.monotonic() + pause
