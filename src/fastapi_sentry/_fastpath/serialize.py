"""A fast path in front of sentry-sdk's event serializer, for events that are already plain JSON.

Why it exists: the SDK runs every event, transactions included, through `serialize()`, a
general-purpose walk (cycle memo, path bookkeeping and databag checks per node) that turns any
Python object into JSON-safe data. In a profile of a sampled trivial request it was the largest
single cost (`benchmarks/bench_inprocess.py --profile install-1.0` shows where the time goes).
The events this package produces are almost always plain already: dicts with string keys,
lists, short strings, numbers, datetimes.

`serialize` here copies such an event in one tight walk, applying the only changes the SDK's
serializer would make to it (datetimes to its timestamp format, tuples to lists). A databag over
the SDK's breadth limit (10) is trimmed as the SDK trims it, with the same `_meta` note:
sentry-sdk's own `sys.argv` extra is such a bag under any server started with more than ten
arguments, so without this every transaction of a real deployment took the slow path. The moment
it meets anything the SDK would change in another way — an object to repr, a string over
`max_value_length`, a databag over the SDK's depth limit (5), an `AnnotatedValue`, a non-finite
float, a cycle — it gives the whole event to the SDK's serializer instead.
tests/fastpath/test_serialize.py checks, on generated events, that whatever this path accepts
comes out equal to what the SDK's serializer makes of it.
"""

from __future__ import annotations

import math
import sys
from datetime import datetime, timezone
from itertools import islice
from typing import Any

from sentry_sdk.utils import format_timestamp as sdk_format_timestamp

from fastapi_sentry._fastpath._sdk_seam import sdk_client, sdk_serializer

_sdk_serialize = sdk_serializer.serialize
_KNOWN_OPTIONS = frozenset({"max_request_body_size", "max_value_length", "custom_repr"})
_MAX_NESTING = 64  # deeper than any real event; the SDK's serializer handles the rest


_UTC = timezone.utc


def format_timestamp(value: datetime) -> str:
    """`sentry_sdk.utils.format_timestamp` (`strftime("%Y-%m-%dT%H:%M:%S.%fZ")` in UTC) at
    about half its instructions for the datetimes the SDK makes (in UTC); any other goes to it.
    Every transaction has at least two, and two per span."""
    if value.tzinfo is not _UTC:
        return sdk_format_timestamp(value)
    # "%d": strftime's %Y does not pad a year before 1000 either; %-formatting: an f-string
    # with format specs cost about half as much again (callgrind)
    return "%d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


class NotPlain(Exception):
    """The event needs the SDK's serializer."""


Path = tuple[str | int, ...]


class _PlainCopier:
    __slots__ = ("limit", "meta", "quarter")

    def __init__(self, max_length: int | None) -> None:
        #: `max_value_length`; a string longer than `quarter` is measured against it
        self.limit = sys.maxsize if max_length is None else max_length
        self.quarter = sys.maxsize if max_length is None else max_length // 4
        #: the SDK's `_meta` tree: where a databag was trimmed, and its length before
        self.meta: dict[str, Any] = {}

    def event(self, event: dict[str, Any], keep_request_bodies: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in event.items():
            if type(key) is not str:
                raise NotPlain
            if key == "extra":
                out[key] = self.bag(value, sdk_serializer.MAX_DATABAG_DEPTH, ("extra",))
            elif key == "request" and type(value) is dict:
                out[key] = self.request(value, keep_request_bodies)
            elif key == "breadcrumbs" and type(value) is dict:
                out[key] = self.breadcrumbs(value)
            else:
                out[key] = self.copy(value, 1)
        if self.meta:
            out["_meta"] = self.meta  # as the SDK does: its notes replace any `_meta` given
        return out

    def annotate(self, path: Path, length: int) -> None:
        node = self.meta
        for segment in path:
            node = node.setdefault(str(segment), {})
        node.setdefault("", {})["len"] = length

    def request(self, request: dict[str, Any], keep_bodies: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in request.items():
            if type(key) is not str:
                raise NotPlain
            if key == "data" and not keep_bodies:
                out[key] = self.bag(value, sdk_serializer.MAX_DATABAG_DEPTH, ("request", "data"))
            else:
                out[key] = self.copy(value, 2)
        return out

    def breadcrumbs(self, breadcrumbs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in breadcrumbs.items():
            if type(key) is not str:
                raise NotPlain
            if key == "values" and type(value) is list:
                depth = sdk_serializer.MAX_DATABAG_DEPTH
                out[key] = [
                    self.bag(crumb, depth, ("breadcrumbs", "values", index))
                    for index, crumb in enumerate(value)
                ]
            else:
                out[key] = self.copy(value, 2)
        return out

    def scalar(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            if len(value) > self.quarter and _too_long(value, self.limit):
                raise NotPlain
            return value
        if value is None or kind is bool or kind is int:
            return value
        if kind is float:
            if math.isinf(value) or math.isnan(value):
                raise NotPlain
            return value
        if kind is datetime:
            return format_timestamp(value)
        raise NotPlain

    def copy(self, value: Any, level: int) -> Any:
        # Strings, ints, bools and None (most leaves) are checked inline: a call per leaf was
        # most of this walk's cost on a transaction. Anything else goes through `scalar`.
        kind = type(value)
        if kind is dict:
            if level > _MAX_NESTING:
                raise NotPlain
            out: dict[str, Any] = {}
            limit, quarter = self.limit, self.quarter
            for key, item in value.items():
                if type(key) is not str:
                    raise NotPlain
                kind = type(item)
                if kind is str:
                    if len(item) > quarter and _too_long(item, limit):
                        raise NotPlain
                    out[key] = item
                elif kind is int or kind is bool or item is None:
                    out[key] = item
                else:
                    out[key] = self.copy(item, level + 1)
            return out
        if kind is list or kind is tuple:
            if level > _MAX_NESTING:
                raise NotPlain
            items: list[Any] = []
            add = items.append
            limit, quarter = self.limit, self.quarter
            for item in value:
                kind = type(item)
                if kind is str:
                    if len(item) > quarter and _too_long(item, limit):
                        raise NotPlain
                    add(item)
                elif kind is int or kind is bool or item is None:
                    add(item)
                else:
                    add(self.copy(item, level + 1))
            return items
        return self.scalar(value)

    def bag(self, value: Any, remaining_depth: int, path: Path) -> Any:
        """Inside a databag the SDK trims breadth (so do we, noting it in `_meta` as it does)
        and depth (anything it would cut that way goes to it)."""
        if remaining_depth <= 0:
            raise NotPlain
        kind = type(value)
        breadth = sdk_serializer.MAX_DATABAG_BREADTH
        if kind is dict:
            items = value.items()
            if len(value) > breadth:
                self.annotate(path, len(value))
                items = islice(items, breadth)
            out: dict[str, Any] = {}
            for key, item in items:
                if type(key) is not str:
                    raise NotPlain
                out[key] = self.bag(item, remaining_depth - 1, (*path, key))
            return out
        if kind is list or kind is tuple:
            if len(value) > breadth:
                self.annotate(path, len(value))
                value = value[:breadth]
            return [
                self.bag(item, remaining_depth - 1, (*path, index))
                for index, item in enumerate(value)
            ]
        return self.scalar(value)


def _too_long(text: str, limit: int) -> bool:
    """What `strip_string` would cut: over `limit` characters or UTF-8 bytes."""
    if len(text) > limit:
        return True
    if text.isascii():
        return False
    try:
        return len(text.encode("utf-8")) > limit
    except UnicodeEncodeError:  # lone surrogates: the SDK falls back to the character count
        return False


def plain_copy(event: dict[str, Any], **options: Any) -> dict[str, Any]:
    """The serialized event, or `NotPlain` if the SDK's serializer would do more than copy."""
    if type(event) is not dict or options.keys() - _KNOWN_OPTIONS:
        raise NotPlain
    if sdk_serializer.global_repr_processors:
        raise NotPlain
    copier = _PlainCopier(options.get("max_value_length"))
    return copier.event(event, options.get("max_request_body_size") == "always")


def serialize(event: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Drop-in for `sentry_sdk.serializer.serialize` as the client calls it."""
    try:
        return plain_copy(event, **options)
    except (NotPlain, RecursionError):
        return _sdk_serialize(event, **options)


def install() -> None:
    """Put the fast path in front of the SDK client's serializer, and the faster
    `format_timestamp` in its place for the envelope's `sent_at` (once per process)."""
    sdk_client.serialize = serialize  # type: ignore[attr-defined]
    sdk_client.format_timestamp = format_timestamp  # type: ignore[attr-defined]
