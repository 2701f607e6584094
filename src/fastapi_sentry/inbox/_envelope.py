"""Sentry envelope parsing and bounded body decoding.

Bodies are decompressed incrementally with a running output limit, so a decompression bomb costs at
most the limit in memory and is refused as soon as the limit is crossed, never after inflating it.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from fastapi_sentry.inbox._errors import (
    MalformedRequestError,
    PayloadTooLargeError,
    UnsupportedEncodingError,
)

MIB = 1024 * 1024
#: Largest event, transaction or other JSON item after decompression (Sentry's own limit).
MAX_ITEM_SIZE = 1 * MIB
#: Largest envelope, compressed or decompressed.
MAX_ENVELOPE_SIZE = 20 * MIB
#: Largest attachment. Relay's default ``max_attachment_size`` is 100 MiB (relay-config
#: ``Limits``); the inbox keeps attachments in SQLite inside one request's commit, so it takes
#: less, and says so with a 413.
MAX_ATTACHMENT_SIZE = 10 * MIB

# Item types whose payload is JSON the inbox understands; everything else is stored raw.
JSON_ITEM_TYPES = frozenset(
    {
        "event",
        "transaction",
        "check_in",
        "session",
        "sessions",
        "client_report",
        "log",
        "span",
        "trace_metric",
        "feedback",
        "user_report",
    }
)
#: Items holding ``{"items": [...]}`` of many records (streamed spans, logs, trace metrics):
#: the SDKs batch up to 1000 of them (5 MB of spans), so the 1 MiB event limit does not apply;
#: the envelope limit bounds them.
CONTAINER_ITEM_TYPES = frozenset({"span", "log", "trace_metric"})


@dataclass(frozen=True)
class Item:
    headers: dict[str, Any]
    payload: bytes
    index: int

    @property
    def type(self) -> str:
        return str(self.headers["type"])

    def where(self) -> str:
        return f"item {self.index} (type {self.type!r})"


@dataclass(frozen=True)
class Envelope:
    headers: dict[str, Any]
    items: list[Item]


class _Decoder(Protocol):
    def feed(self, chunk: bytes) -> None: ...

    def finish(self) -> bytes: ...


def _too_large(what: str, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The {what} is larger than {limit} bytes ({limit // MIB} MiB); "
        "send smaller envelopes (Sentry applies the same limit).",
        where="body",
    )


class _IdentityDecoder:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            raise _too_large("envelope", self._limit)
        self._parts.append(chunk)

    def finish(self) -> bytes:
        return b"".join(self._parts)


class _ZlibDecoder:
    """gzip (possibly multi-member) or deflate, with or without the zlib wrapper."""

    def __init__(self, encoding: str, limit: int) -> None:
        self._encoding = encoding
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._obj: Any = None
        self._pending = b""

    def _new_obj(self, first: bytes) -> Any:
        if self._encoding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" means zlib-wrapped, but many clients send raw deflate: sniff the header.
        zlib_header = (
            len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] * 256 + first[1]) % 31 == 0
        )
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)

    def _emit(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise _too_large("decompressed envelope", self._limit)
        self._parts.append(data)

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        self._pending = b""
        while data:
            if self._obj is None:
                if len(data) < 2:
                    self._pending = data
                    return
                self._obj = self._new_obj(data)
            try:
                # max_length bounds each step's output, so memory never exceeds the limit.
                self._emit(self._obj.decompress(data, self._limit - self._size + 1))
                while self._obj.unconsumed_tail:
                    tail = self._obj.unconsumed_tail
                    self._emit(self._obj.decompress(tail, self._limit - self._size + 1))
            except zlib.error as e:
                raise MalformedRequestError(
                    f"The body is not valid {self._encoding} data ({e}); "
                    "check the Content-Encoding header matches the body.",
                    where="body",
                ) from e
            if self._obj.eof and self._encoding == "gzip":
                data = self._obj.unused_data  # a further gzip member, if any
                self._obj = None
            else:
                data = b""

    def finish(self) -> bytes:
        if self._pending or (self._obj is not None and not self._obj.eof):
            raise MalformedRequestError(
                f"The {self._encoding} body is truncated; send the complete compressed stream.",
                where="body",
            )
        return b"".join(self._parts)


class _BrotliDecoder:
    def __init__(self, limit: int) -> None:
        try:
            import brotli
        except ImportError as e:  # pragma: no cover - brotli is part of the inbox extra
            raise UnsupportedEncodingError(
                "The body is brotli-compressed but the brotli module is not installed; "
                "install fastapi-sentry[inbox].",
                where="Content-Encoding header",
            ) from e
        if not hasattr(brotli.Decompressor, "can_accept_more_data"):
            # Before 1.2 brotli could not bound its output: one small body could inflate to GBs.
            raise UnsupportedEncodingError(
                f"brotli {getattr(brotli, '__version__', '?')} cannot decompress with a size "
                "limit; install brotli>=1.2 (pip install 'fastapi-sentry[inbox]') or send gzip.",
                where="Content-Encoding header",
            )
        self._brotli = brotli
        self._obj = brotli.Decompressor()
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def _process(self, data: bytes) -> None:
        out = self._obj.process(data, output_buffer_limit=self._limit - self._size + 1)
        self._size += len(out)
        if self._size > self._limit:
            raise _too_large("decompressed envelope", self._limit)
        self._parts.append(out)

    def feed(self, chunk: bytes) -> None:
        try:
            if self._obj.is_finished():
                raise MalformedRequestError(
                    "The brotli body has data after the end of the stream; send one stream.",
                    where="body",
                )
            self._process(chunk)
            while not self._obj.can_accept_more_data():
                self._process(b"")
        except self._brotli.error as e:
            raise MalformedRequestError(
                f"The body is not valid brotli data ({e}); "
                "check the Content-Encoding header matches the body.",
                where="body",
            ) from e

    def finish(self) -> bytes:
        if not self._obj.is_finished():
            raise MalformedRequestError(
                "The brotli body is truncated; send the complete compressed stream.",
                where="body",
            )
        return b"".join(self._parts)


def make_decoder(content_encoding: str | None, limit: int = MAX_ENVELOPE_SIZE) -> _Decoder:
    """Return a streaming decoder for a Content-Encoding header value."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return _IdentityDecoder(limit)
    if encoding in ("gzip", "x-gzip"):
        return _ZlibDecoder("gzip", limit)
    if encoding == "deflate":
        return _ZlibDecoder("deflate", limit)
    if encoding == "br":
        return _BrotliDecoder(limit)
    raise UnsupportedEncodingError(
        f"Content-Encoding {content_encoding!r} is not supported; "
        "send the body plain or as gzip, deflate or br.",
        where="Content-Encoding header",
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: 19 digits in a row may be an integer past 64 bits, which orjson would turn into a float;
#: mapping digits to "0" and the rest to " " finds such a run with two C loops (a regex is slower).
_DIGIT_MAP = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_LONG_DIGITS = b"0" * 19


def _fast_loads(data: bytes) -> Any:
    """orjson's parse, or None where it might differ from the standard library's: the JSON
    parse dominates ingest, and orjson does it in C; anything it refuses (or any long run of
    digits) takes the standard path, so what is accepted, and every error message, stay the same.
    """
    if _LONG_DIGITS in data.translate(_DIGIT_MAP):
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def load_json_object(data: bytes, where: str) -> dict[str, Any]:
    """Parse a JSON object, turning every failure into a 400 that says where it is."""
    fast = _fast_loads(data)
    if isinstance(fast, dict):
        return fast
    try:
        # Decode first: json.loads would also accept UTF-16/32 bytes, which Sentry does not.
        value = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise MalformedRequestError(
            f"{where.capitalize()} is not valid JSON: {e.msg} at line {e.lineno} "
            f"column {e.colno}; send a JSON object.",
            where=f"{where}, line {e.lineno} column {e.colno}",
        ) from e
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MalformedRequestError(
            f"{where.capitalize()} is not valid JSON ({type(e).__name__}: {e}); "
            "send UTF-8 JSON without NaN/Infinity and nested fewer than 500 levels.",
            where=where,
        ) from e
    if not isinstance(value, dict):
        raise MalformedRequestError(
            f"{where.capitalize()} must be a JSON object, not {type(value).__name__}.",
            where=where,
        )
    return value


class _Lines:
    """The line an envelope's parse has reached, counted only when an error message needs it:
    counting a payload's newlines costs as much as a tenth of the event's whole parse."""

    def __init__(self) -> None:
        self._lines = 1
        self._payloads: list[bytes] = []

    def add(self, lines: int = 1, payload: bytes = b"") -> None:
        self._lines += lines
        if payload:
            self._payloads.append(payload)

    def now(self) -> int:
        return self._lines + sum(payload.count(b"\n") for payload in self._payloads)


def _header_line(data: bytes, pos: int, lines: _Lines, what: str) -> tuple[dict[str, Any], int]:
    end = data.find(b"\n", pos)
    if end == -1:
        end = len(data)
    line = data[pos:end]
    headers = _fast_loads(line)
    if not isinstance(headers, dict):
        headers = load_json_object(line, f"{what} (line {lines.now()})")
    return headers, end + 1


def parse_envelope(data: bytes) -> Envelope:
    """Parse an envelope: a header line, then per item a header line and its payload."""
    if not data.strip():
        raise MalformedRequestError(
            "The envelope is empty; send an envelope header line and at least one item.",
            where="line 1",
        )
    lines = _Lines()
    headers, pos = _header_line(data, 0, lines, "the envelope header")
    lines.add()
    items: list[Item] = []
    size = len(data)
    while pos < size:
        if data[pos : pos + 1] == b"\n":  # blank lines between or after items are allowed
            pos += 1
            lines.add()
            continue
        index = len(items)
        item_headers, pos = _header_line(data, pos, lines, f"the header of item {index}")
        lines.add()
        item_type = item_headers.get("type")
        if not isinstance(item_type, str) or not item_type or len(item_type) > 100:
            raise MalformedRequestError(
                f"Item {index} has type {item_type!r}; every item header needs a non-empty "
                "string 'type' (at most 100 characters).",
                where=f"item {index} header (line {lines.now() - 1})",
            )
        length = item_headers.get("length")
        if length is None:
            end = data.find(b"\n", pos)
            if end == -1:
                end = size
            payload = data[pos:end]
            pos = end + 1
        else:
            if isinstance(length, bool) or not isinstance(length, int) or length < 0:
                raise MalformedRequestError(
                    f"Item {index} has length {length!r}; it must be a non-negative integer.",
                    where=f"item {index} header (line {lines.now() - 1})",
                )
            if pos + length > size:
                raise MalformedRequestError(
                    f"Item {index} declares length {length} but only {max(size - pos, 0)} bytes "
                    "follow; fix the length header or send the whole payload.",
                    where=f"item {index} payload (byte {pos})",
                )
            payload = data[pos : pos + length]
            pos += length
            if data[pos : pos + 1] == b"\n":
                pos += 1
        lines.add(1, payload)
        items.append(Item(headers=item_headers, payload=payload, index=index))
    return Envelope(headers=headers, items=items)
