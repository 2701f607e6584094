"""sentry-sdk's HTTP transport with a circuit breaker, so a dead receiver costs the service nothing.

The SDK honours 429 rate limits, but when the receiver refuses connections or answers 5xx it
tries every event again: four connection attempts per event (urllib3 retries 3 times), an
exception and its handling each time, all on a thread that shares the GIL with the service.
Without a breaker a refusing receiver costs the service latency and CPU on every event
(`benchmarks/bench_faults.py` measures it, fault by fault). After a failure, this transport stops
trying for a while (1 s, doubling up to 60 s) and counts what it drops as lost, as the SDK does;
the first success closes the breaker again. Events are lost either way while the receiver is
down; the service no longer pays for the attempts.

Two cheaper sends, each one measured on a sampled request (`benchmarks/bench_inprocess.py
--instructions`, bare SDK at 1.0 with a DSN with and without a port; its result file has the
figures):

- sentry-sdk's stdlib integration means to leave the SDK's own requests alone, but its check
  (`is_sentry_url`) compares the connection's host with the DSN's host *and port*, so for a DSN
  with a port (this project's inbox, a self-hosted Sentry on a port) every envelope POST got a
  span, a breadcrumb through `before_breadcrumb` and a parsed URL, all for nothing. Our
  connections call http.client's own `putrequest`, which the SDK's patch wraps.
- Brotli quality 1 instead of the SDK's 4: several times cheaper to compress a typical
  transaction envelope, for a slightly larger body.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from typing import Any

from sentry_sdk.envelope import Envelope
from urllib3 import PoolManager, ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from fastapi_sentry._fastpath._sdk_seam import HttpTransport

#: First pause after a failure, and the longest one, in seconds.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0


#: Compression of envelopes: cheap brotli where the SDK can use it, else cheap gzip.
COMPRESSION_LEVEL = 1


def compression_options() -> dict[str, Any]:
    """The `_experiments` keys that set the transport's compression (sentry-sdk has no others)."""
    from sentry_sdk import transport

    algo = "br" if getattr(transport, "brotli", None) is not None else "gzip"
    return {"transport_compression_algo": algo, "transport_compression_level": COMPRESSION_LEVEL}


def _stdlib_putrequest() -> Callable[..., None]:
    """http.client's `putrequest` from under sentry-sdk's patch (or whatever is there, if the
    patch is not the SDK's or has changed shape)."""
    current = http.client.HTTPConnection.putrequest
    code = getattr(current, "__code__", None)
    closure = getattr(current, "__closure__", None)
    if (
        getattr(current, "__module__", None) == "sentry_sdk.integrations.stdlib"
        and code is not None
        and closure is not None
        and "real_putrequest" in code.co_freevars
    ):
        real = closure[code.co_freevars.index("real_putrequest")].cell_contents
        if callable(real):
            return real  # type: ignore[no-any-return]
    return current


class _UninstrumentedHTTPConnection(HTTPConnection):
    """A connection whose requests sentry-sdk's stdlib integration does not record."""

    def putrequest(
        self,
        method: str,
        url: str,
        skip_host: bool = False,
        skip_accept_encoding: bool = False,
    ) -> None:
        _stdlib_putrequest()(
            self, method, url, skip_host=skip_host, skip_accept_encoding=skip_accept_encoding
        )


class _UninstrumentedHTTPSConnection(HTTPSConnection):
    putrequest = _UninstrumentedHTTPConnection.putrequest


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _UninstrumentedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _UninstrumentedHTTPSConnection


class ResilientTransport(HttpTransport):
    """`HttpTransport` that backs off after network errors and 5xx answers."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self._breaker_lock = threading.Lock()
        self._failures = 0
        self._closed_at = 0.0  # monotonic time from which sending is tried again

    def _make_pool(self) -> PoolManager | ProxyManager:
        pool = super()._make_pool()
        pool.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return pool

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
