"""Release health for requests: per-minute counts of requests that ended well, errored or crashed.

sentry-sdk's ASGI integration opens a `Session` object per request (an id, two timestamps, a
lock on hand-over) to end up with exactly these counts, sent as one aggregate per minute. Here a
request adds one to a dict; a minute's counts go to the transport when the next minute starts,
on `flush()` (the app's shutdown) and at interpreter exit. Same envelope, same Sentry view.
Honours `auto_session_tracking`, as the SDK does.
"""

from __future__ import annotations

import atexit
import threading
from datetime import datetime, timezone
from time import time as _time
from typing import Any

from fastapi_sentry._context import current_request
from fastapi_sentry._state import on_reset


class _Counts:
    """The per-minute counts not yet handed to the transport."""

    __slots__ = (
        "atexit_registered",
        "bucket",
        "by_minute",
        "current_minute",
        "enabled",
        "lock",
        "minute_end",
        "minute_start",
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_minute: dict[int, dict[str, int]] = {}
        self.current_minute = -1
        #: the current minute's counts and its bounds (`time.time()`): a request inside them
        #: adds one without working out its minute
        self.bucket: dict[str, int] | None = None
        self.minute_start = 0.0
        self.minute_end = 0.0
        self.enabled = False
        self.atexit_registered = False


_COUNTS = _Counts()


def configure(enabled: bool) -> None:
    """Called by `init_sdk`: counts are kept only while the SDK asks for session tracking."""
    reset()  # counts belong to the client they were made under, not to its successor
    _COUNTS.enabled = enabled
    if enabled and not _COUNTS.atexit_registered:
        # registered after sentry_sdk.init's own handler, so it runs first (atexit is LIFO)
        atexit.register(flush)
        _COUNTS.atexit_registered = True


def record(outcome: str) -> None:
    """One finished request: "exited", "errored" or "crashed"."""
    counts = _COUNTS
    if not counts.enabled:
        return
    now = _time()
    bucket = counts.bucket
    if bucket is None or not counts.minute_start <= now < counts.minute_end:
        bucket = _bucket_for(now)
    bucket[outcome] = bucket.get(outcome, 0) + 1


def _bucket_for(now: float) -> dict[str, int]:
    """The counts of `now`'s minute; a new minute hands the ones before it over."""
    counts = _COUNTS
    minute = int(now) // 60
    if minute != counts.current_minute:
        counts.current_minute = minute
        _hand_over(before=minute)
    bucket = counts.by_minute.setdefault(minute, {})
    counts.minute_start = minute * 60.0
    counts.minute_end = counts.minute_start + 60.0
    counts.bucket = bucket
    return bucket


def note_sent_event(event: dict[str, Any]) -> None:
    """Called from `before_send` for an error event that is kept: the request has errored."""
    state = current_request.get()
    if state is None or state.outcome == "crashed":
        return
    state.outcome = "crashed" if _unhandled(event) else "errored"


def _unhandled(event: dict[str, Any]) -> bool:
    exception = event.get("exception")
    values = exception.get("values") if isinstance(exception, dict) else None
    for value in values or ():
        mechanism = value.get("mechanism") if isinstance(value, dict) else None
        if isinstance(mechanism, dict) and mechanism.get("handled") is False:
            return True
    return False


def flush() -> None:
    """Send every minute counted so far, the current one included."""
    _hand_over(before=None)


def _hand_over(before: int | None) -> None:
    with _COUNTS.lock:
        by_minute = _COUNTS.by_minute
        minutes = [m for m in by_minute if before is None or m < before]
        buckets = {minute: by_minute.pop(minute) for minute in minutes}
        if buckets:
            _COUNTS.bucket = None  # it may be one of them: the next request finds a new one
    if buckets:
        _send(buckets)


def _send(buckets: dict[int, dict[str, int]]) -> None:
    import sentry_sdk
    from sentry_sdk.envelope import Envelope
    from sentry_sdk.utils import format_timestamp

    client = sentry_sdk.get_client()
    transport = client.transport if client.is_active() else None
    if transport is None:
        return
    attrs = {
        key: client.options[key]
        for key in ("release", "environment")
        if client.options.get(key) is not None
    }
    aggregates = [
        {"started": format_timestamp(datetime.fromtimestamp(minute * 60, timezone.utc)), **counts}
        for minute, counts in sorted(buckets.items())
    ]
    envelope = Envelope()
    envelope.add_sessions({"attrs": attrs, "aggregates": aggregates})
    transport.capture_envelope(envelope)


def reset() -> None:
    """Forget the counts (a new client, or `fastapi_sentry._state.reset()`)."""
    with _COUNTS.lock:
        _COUNTS.by_minute.clear()
        _COUNTS.bucket = None
    _COUNTS.current_minute = -1


on_reset(reset)
