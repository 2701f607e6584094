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
  transaction envelope, for a slightly larger body. It is an SDK option, set by
  `_setup.compression_options` for the fallback too, which cannot import this module.
  And below `COMPRESS_FROM_BYTES` no compression at all: a typical transaction envelope is
  small enough that compressing it cost more than the rest of sending it.

And two more, measured stage by stage on one transaction's envelope
(`benchmarks/bench_send_instructions.py`; its result file has the figures):

- The envelope's bytes with orjson when it is installed (the `inbox` extra brings it):
  `envelope_bytes` makes what `Envelope.serialize` makes, parsed back item for item; whatever
  orjson refuses (a non-string key, an integer past 64 bits, a lone surrogate, a type it would
  convert and the standard library would not) goes through sentry-sdk's own `json_dumps`.
  One difference: a NaN or infinity becomes null, where the standard library refuses the whole
  envelope.
- For a plain `http` DSN without a proxy or socket options, the POST goes over one kept-alive
  socket (`http1.py`) instead of urllib3's pool and http.client's email-package header parsing;
  every other DSN keeps sentry-sdk's urllib3 path. Rate limits, 429 and Retry-After are read
  from its answer by sentry-sdk's own code.
"""

from __future__ import annotations

import gzip
import http.client
import io
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from sentry_sdk import transport as sdk_transport
from sentry_sdk.consts import EndpointType
from sentry_sdk.envelope import Envelope
from sentry_sdk.utils import json_dumps
from urllib3 import PoolManager, ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from fastapi_sentry._fastpath._sdk_seam import HttpTransport
from fastapi_sentry._fastpath.http1 import Connection

orjson: Any
try:
    import orjson
except ImportError:  # pragma: no cover - orjson comes with the inbox extra
    orjson = None
#: The SDK's own brotli module, or None where it has none (it then compresses with gzip).
brotli: Any = getattr(sdk_transport, "brotli", None)

#: Whether envelope bytes are made by orjson (else by sentry-sdk's stdlib `json_dumps`).
ORJSON = orjson is not None

#: First pause after a failure, and the longest one, in seconds.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0


#: Envelopes smaller than this go uncompressed: compressing a typical transaction envelope
#: (under 2 KB) cost its sending thread more instructions than all the rest of sending it, to
#: save about 800 bytes (`benchmarks/bench_send_instructions.py`; its result file has the counts).
COMPRESS_FROM_BYTES = 4096


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


# what orjson would write and the standard library refuses is left to the standard library
_ORJSON_OPTIONS = (
    0 if orjson is None else orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _dumps(value: Any) -> bytes:
    """Compact JSON as sentry-sdk's `json_dumps` writes it, by orjson where it can."""
    if orjson is not None:
        try:
            data: bytes = orjson.dumps(value, option=_ORJSON_OPTIONS)
            return data
        except TypeError:  # orjson.JSONEncodeError too: the standard library decides
            pass
    return json_dumps(value)


def envelope_bytes(envelope: Envelope) -> bytes:
    """`Envelope.serialize`, by `_dumps`; a payload keeps its bytes, as the SDK's does."""
    parts = [_dumps(envelope.headers), b"\n"]
    for item in envelope.items:
        payload = item.payload
        data = payload.bytes
        if data is None:
            if payload.path is None and payload.json is not None:
                data = payload.bytes = _dumps(payload.json)
            else:
                data = payload.get_bytes()
        headers = dict(item.headers)
        headers["length"] = len(data)
        parts += (_dumps(headers), b"\n", data, b"\n")
    return b"".join(parts)


class ResilientTransport(HttpTransport):
    """`HttpTransport` that backs off after network errors and 5xx answers."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self._breaker_lock = threading.Lock()
        self._failures = 0
        self._closed_at = 0.0  # monotonic time from which sending is tried again
        self._connection = self._fast_connection()

    def _fast_connection(self) -> Connection | None:
        """Our own connection where nothing calls for urllib3: a plain http DSN, no proxy
        (the pool is a bare `PoolManager`), no socket options."""
        dsn = self.parsed_dsn
        if (
            dsn is None
            or dsn.scheme != "http"
            or type(self._pool) is not PoolManager
            or self.options.get("socket_options") is not None
            or self.options.get("keep_alive")
        ):
            return None
        return Connection(self._auth.get_api_url(EndpointType.ENVELOPE), timeout=self.TIMEOUT)

    def _serialize_envelope(self, envelope: Envelope) -> tuple[str | None, io.BytesIO]:
        data = envelope_bytes(envelope)
        algo: str | None = self._compression_algo  # the SDK's own choice, as it compresses
        if self._compression_level == 0 or algo is None or len(data) < COMPRESS_FROM_BYTES:
            return None, io.BytesIO(data)
        if algo == "br" and brotli is not None:
            return "br", io.BytesIO(brotli.compress(data, quality=self._compression_level))
        body = io.BytesIO()
        with gzip.GzipFile(fileobj=body, mode="w", compresslevel=self._compression_level) as f:
            f.write(data)
        return "gzip", body

    def _request(
        self, method: str, endpoint_type: EndpointType, body: Any, headers: Mapping[str, str]
    ) -> Any:
        connection = self._connection
        if connection is None or endpoint_type is not EndpointType.ENVELOPE or method != "POST":
            return super()._request(method, endpoint_type, body, headers)
        return connection.post(body if isinstance(body, bytes) else bytes(body), headers)

    def kill(self) -> None:
        super().kill()
        if self._connection is not None:
            self._connection.close()

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
