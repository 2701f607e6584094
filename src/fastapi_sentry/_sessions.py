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
import time
from datetime import datetime, timezone
from typing import Any

from fastapi_sentry._request_state import current_request

_lock = threading.Lock()
_counts: dict[int, dict[str, int]] = {}
_current_minute = -1
_enabled = False
_atexit_registered = False


def configure(enabled: bool) -> None:
    """Called by `init_sdk`: counts are kept only while the SDK asks for session tracking."""
    global _enabled, _atexit_registered
    reset()  # counts belong to the client they were made under, not to its successor
    _enabled = enabled
    if enabled and not _atexit_registered:
        # registered after sentry_sdk.init's own handler, so it runs first (atexit is LIFO)
        atexit.register(flush)
        _atexit_registered = True


def record(outcome: str) -> None:
    """One finished request: "exited", "errored" or "crashed"."""
    global _current_minute
    if not _enabled:
        return
    minute = int(time.time()) // 60
    if minute != _current_minute:
        _current_minute = minute
        _hand_over(before=minute)
    bucket = _counts.get(minute)
    if bucket is None:
        bucket = _counts.setdefault(minute, {})
    bucket[outcome] = bucket.get(outcome, 0) + 1


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
    with _lock:
        minutes = [m for m in _counts if before is None or m < before]
        buckets = {minute: _counts.pop(minute) for minute in minutes}
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
    """Forget the counts (for tests)."""
    global _current_minute
    with _lock:
        _counts.clear()
    _current_minute = -1
