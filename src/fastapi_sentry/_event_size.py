"""Every event fits: an event or transaction is brought under Sentry's limits before it leaves.

sentry-sdk 2.75 no longer cuts long values (`max_value_length` defaults to none), so an error whose
stack holds a large local (a 2 MB string, a list of rows) goes out at several megabytes and
Sentry, like the inbox, refuses it whole with 413: the error is never seen anywhere. Here long
values are cut with Sentry's `_meta` note (so its UI shows "value truncated"), and when that is
not enough, the least useful parts go in a fixed order (`STEPS`); the event then carries a
`trimmed` tag and a `size_limits` context naming what went.

It runs last in the pipeline's `before_send` / `before_send_transaction`: the SDK has serialized
the event by then (everything is plain JSON, its final shape), and scrubbing has already run, so
a cut never leaves half a secret behind that the scrubber would have recognised whole. The check
for a normal event is one orjson encoding when orjson is installed (`size_bound`), else, or when
that bound is not clearly under the limit, one C-level JSON encoding (see
benchmarks/bench_event_size.py for its cost); nothing else runs unless the event is over the
limit. Pure: no sentry_sdk import.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

orjson: Any
try:
    import orjson
except ImportError:  # pragma: no cover - orjson comes with the inbox extra
    orjson = None

logger = logging.getLogger(__name__)

Event = dict[str, Any]

#: Sentry's (and the inbox's) limit for one event or transaction, in bytes of JSON.
MAX_EVENT_BYTES = 1024 * 1024
#: What we aim under: the envelope item header and rounding stay clear of the limit.
TARGET_BYTES = MAX_EVENT_BYTES - 16 * 1024
#: Sentry's limit for a tag value, in characters.
MAX_TAG_VALUE = 200
#: sentry-sdk's defaults for breadcrumbs per event and spans per transaction.
MAX_BREADCRUMBS = 100
MAX_SPANS = 1000
#: A string longer than this is cut first; then, if the event is still too large, longer than
#: SHORT_VALUE.
LONG_VALUE = 16 * 1024
SHORT_VALUE = 1024
#: A local, extra or context value whose JSON is larger than this counts as large.
LARGE_PART = 4 * 1024
#: What the last resort keeps of an error event.
_ESSENTIAL_KEYS = frozenset(
    {
        "event_id", "timestamp", "start_timestamp", "platform", "level", "logger", "transaction",
        "transaction_info", "release", "environment", "server_name", "dist", "tags", "user",
        "exception", "threads", "message", "logentry", "contexts", "sdk", "type", "fingerprint",
        "_meta",
    }
)  # fmt: skip

_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":"), check_circular=False).encode


def json_size(value: Any) -> int:
    """Bytes of JSON as sentry-sdk writes it (ASCII escapes, so characters are bytes)."""
    return len(_encode(value))


#: The most bytes one byte of orjson's output can become in `json_size`'s: orjson writes UTF-8 and
#: DEL (0x7f) raw, the standard library escapes them, so DEL becomes `\u007f` (1 -> 6), a 2-byte
#: UTF-8 character `\uXXXX` (2 -> 6), a 3-byte one `\uXXXX` (3 -> 6) and a 4-byte one a
#: surrogate pair (4 -> 12). Everything else is written alike (the same escapes for `"`, `\` and
#: control characters, the same separators, the same digits), except a float's exponent, which
#: orjson may write a digit shorter (`1e-7`, not `1e-07`: 4 -> 5). The test proves the bound.
WORST_EXPANSION = 6


def size_bound(value: Any) -> int | None:
    """An upper bound of `json_size(value)` at a fraction of its cost, or None when orjson is
    missing or refuses the value (a non-string key, a lone surrogate, an int past 64 bits)."""
    if orjson is None:
        return None
    try:
        return WORST_EXPANSION * len(orjson.dumps(value))
    except Exception:
        return None


class _Trim:
    """One event being brought under the limit: its `_meta` notes and what was done."""

    def __init__(self, event: Event) -> None:
        self.event = event
        self.done: list[str] = []

    def note(self, path: list[str], note: dict[str, Any]) -> None:
        meta = self.event.get("_meta")
        if not isinstance(meta, dict):
            meta = self.event["_meta"] = {}
        for key in path:
            child = meta.get(key)
            if not isinstance(child, dict):
                child = meta[key] = {}
            meta = child
        meta[""] = note

    def cut(self, text: str, limit: int, path: list[str]) -> str:
        kept = text[: limit - 3] + "..."
        self.note(path, {"len": len(text), "rem": [["!limit", "s", 0, len(kept)]]})
        return kept

    def remove(self, container: dict[str, Any], key: str, path: list[str]) -> bool:
        if container.get(key) is None:
            return False
        container[key] = None
        self.note([*path, key], {"rem": [["!limit", "x"]]})
        return True

    def shorten(self, value: Any, limit: int, path: list[str]) -> tuple[Any, bool]:
        """Every string over `limit` characters in `value` cut; (new value, whether any was)."""
        if isinstance(value, str):
            return (self.cut(value, limit, path), True) if len(value) > limit else (value, False)
        changed = False
        if isinstance(value, dict):
            for key, item in list(value.items()):  # notes may add "_meta" on the way
                if key == "_meta" and not path:
                    continue
                new, hit = self.shorten(item, limit, [*path, str(key)])
                if hit:
                    value[key] = new
                    changed = True
        elif isinstance(value, list):
            for i, item in enumerate(value):
                new, hit = self.shorten(item, limit, [*path, str(i)])
                if hit:
                    value[i] = new
                    changed = True
        return value, changed

    def squeeze(self, container: dict[str, Any], path: list[str]) -> bool:
        """Values in `container` larger than LARGE_PART become a readable prefix of their JSON."""
        changed = False
        for key, value in list(container.items()):
            if isinstance(value, (dict, list)) and json_size(value) > LARGE_PART:
                container[key] = self.cut(_encode(value), SHORT_VALUE, [*path, str(key)])
                changed = True
            elif isinstance(value, str) and len(value) > SHORT_VALUE:
                container[key] = self.cut(value, SHORT_VALUE, [*path, str(key)])
                changed = True
        return changed


def _frames(event: Event) -> list[tuple[dict[str, Any], list[str]]]:
    """Every stack frame of the event's exceptions and threads, with its path."""
    found = []
    for section in ("exception", "threads"):
        values = event.get(section)
        values = values.get("values") if isinstance(values, dict) else None
        for i, value in enumerate(values if isinstance(values, list) else ()):
            trace = value.get("stacktrace") if isinstance(value, dict) else None
            frames = trace.get("frames") if isinstance(trace, dict) else None
            for j, frame in enumerate(frames if isinstance(frames, list) else ()):
                if isinstance(frame, dict):
                    path = [section, "values", str(i), "stacktrace", "frames", str(j)]
                    found.append((frame, path))
    return found


def _crumbs(event: Event) -> list[Any]:
    crumbs = event.get("breadcrumbs")
    if isinstance(crumbs, dict):
        crumbs = crumbs.get("values")
    return crumbs if isinstance(crumbs, list) else []


# --- the steps, in the order they are tried ----------------------------------------------------


def _long_values(trim: _Trim) -> bool:
    return trim.shorten(trim.event, LONG_VALUE, [])[1]


def _library_locals(trim: _Trim) -> bool:
    hit = [trim.remove(f, "vars", p) for f, p in _frames(trim.event) if f.get("in_app") is not True]
    return any(hit)


def _large_locals(trim: _Trim) -> bool:
    hit = [trim.squeeze(f["vars"], [*p, "vars"]) for f, p in _frames(trim.event)
           if isinstance(f.get("vars"), dict)]  # fmt: skip
    return any(hit)


def _request_body(trim: _Trim) -> bool:
    request = trim.event.get("request")
    return isinstance(request, dict) and trim.remove(request, "data", ["request"])


def _breadcrumb_data(trim: _Trim) -> bool:
    crumbs = trim.event.get("breadcrumbs")
    base = ["breadcrumbs", "values"] if isinstance(crumbs, dict) else ["breadcrumbs"]
    hit = [trim.remove(c, "data", [*base, str(i)]) for i, c in enumerate(_crumbs(trim.event))
           if isinstance(c, dict)]  # fmt: skip
    return any(hit)


def _extra_and_contexts(trim: _Trim) -> bool:
    hit = [trim.squeeze(trim.event[k], [k]) for k in ("extra", "contexts")
           if isinstance(trim.event.get(k), dict)]  # fmt: skip
    return any(hit)


def _span_data(trim: _Trim) -> bool:
    spans = trim.event.get("spans")
    spans = spans if isinstance(spans, list) else []
    hit = [trim.remove(s, "data", ["spans", str(i)])
           for i, s in enumerate(spans) if isinstance(s, dict)]  # fmt: skip
    return any(hit)


def _all_locals(trim: _Trim) -> bool:
    hit = [trim.remove(f, "vars", p) for f, p in _frames(trim.event)]
    return any(hit)


def _short_values(trim: _Trim) -> bool:
    return trim.shorten(trim.event, SHORT_VALUE, [])[1]


def _older_breadcrumbs(trim: _Trim) -> bool:
    return _keep_last(trim, 10)


def _spans(trim: _Trim) -> bool:
    spans = trim.event.get("spans")
    if not isinstance(spans, list) or len(spans) <= 100:
        return False
    trim.event["spans"] = spans[:100]
    return True


def _frames_and_fields(trim: _Trim) -> bool:
    """The last resort: the error's type, value and the innermost frames, without context."""
    event = trim.event
    for key in [key for key in event if key not in _ESSENTIAL_KEYS]:
        del event[key]
    for frame, _ in _frames(event):
        for key in ("vars", "pre_context", "post_context"):
            frame.pop(key, None)
    for section in ("exception", "threads"):
        values = event.get(section)
        for value in values.get("values", []) if isinstance(values, dict) else ():
            trace = value.get("stacktrace") if isinstance(value, dict) else None
            if isinstance(trace, dict) and isinstance(trace.get("frames"), list):
                trace["frames"] = trace["frames"][-50:]
    trim.shorten(event, 256, [])
    return True


STEPS: tuple[tuple[str, Callable[[_Trim], bool]], ...] = (
    ("long values cut", _long_values),
    ("library frames' locals", _library_locals),
    ("large locals", _large_locals),
    ("request body", _request_body),
    ("breadcrumb data", _breadcrumb_data),
    ("large extra and context values", _extra_and_contexts),
    ("span data", _span_data),
    ("all locals", _all_locals),
    ("values over 1 KiB cut", _short_values),
    ("older breadcrumbs", _older_breadcrumbs),
    ("spans after the first 100", _spans),
    ("everything but the error", _frames_and_fields),
)


def _keep_last(trim: _Trim, count: int) -> bool:
    crumbs = trim.event.get("breadcrumbs")
    values = _crumbs(trim.event)
    if len(values) <= count:
        return False
    kept = values[-count:] if count else []
    if isinstance(crumbs, dict):
        crumbs["values"] = kept
        trim.note(["breadcrumbs", "values"], {"len": len(values)})
    else:
        trim.event["breadcrumbs"] = kept
        trim.note(["breadcrumbs"], {"len": len(values)})
    return True


def _counts(trim: _Trim, max_breadcrumbs: int, max_spans: int) -> None:
    """The SDK's counts and Sentry's tag length, which hold whatever the size."""
    if len(_crumbs(trim.event)) > max_breadcrumbs:
        _keep_last(trim, max_breadcrumbs)
    spans = trim.event.get("spans")
    if isinstance(spans, list) and len(spans) > max_spans:
        trim.event["spans"] = spans[:max_spans]
        trim.note(["spans"], {"len": len(spans)})
    tags = trim.event.get("tags")
    if isinstance(tags, dict):
        for key, value in tags.items():
            if isinstance(value, str) and len(value) > MAX_TAG_VALUE:
                tags[key] = trim.cut(value, MAX_TAG_VALUE, ["tags", str(key)])


def fit_event(
    event: Event,
    *,
    max_bytes: int = TARGET_BYTES,
    max_breadcrumbs: int = MAX_BREADCRUMBS,
    max_spans: int = MAX_SPANS,
) -> Event:
    """The event, changed in place if needed so that it is accepted (see the module docstring).

    Never raises: an event it cannot measure is returned as it came.
    """
    try:
        trim = _Trim(event)
        _counts(trim, max_breadcrumbs, max_spans)
        bound = size_bound(event)
        if bound is not None and bound <= max_bytes:
            return event
        size = original = json_size(event)
        if size <= max_bytes:
            return event
        for name, step in STEPS:
            if step(trim):
                trim.done.append(name)
                size = json_size(event)
                if size <= max_bytes:
                    break
        _mark(trim, original)
        logger.warning(OVERSIZED_WARNING, original, json_size(event), ", ".join(trim.done))
    except Exception:  # must never break error reporting
        logger.debug("Could not bring an event under the size limit", exc_info=True)
    return event


OVERSIZED_WARNING = (
    "A Sentry event was %d bytes, over Sentry's 1 MiB limit; it is sent at %d bytes without: %s"
)


def _mark(trim: _Trim, original: int) -> None:
    event = trim.event
    tags = event.get("tags")
    if isinstance(tags, dict):
        tags["trimmed"] = "true"
    elif tags is None:
        event["tags"] = {"trimmed": "true"}
    contexts = event.get("contexts")
    if not isinstance(contexts, dict):
        contexts = event["contexts"] = {}
    contexts["size_limits"] = {"original_bytes": original, "dropped": list(trim.done)}
