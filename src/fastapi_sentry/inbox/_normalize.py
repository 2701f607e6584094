"""What Sentry's ingestion (Relay) does to an item's times and long strings before storing it, so
the inbox shows the event a Sentry project would show.

- Clock drift: when the envelope says when it was sent (``sent_at``) and that is 55 minutes or
  more away from when it arrived, every timestamp of the item moves by the difference
  (relay-server ``MINIMUM_CLOCK_DRIFT``, relay-event-normalization ``clock_drift.rs``).
- Timestamps too far away: an event dated more than 60 s in the future or more than 30 days in
  the past (relay-config ``default_max_secs_in_future`` / ``default_max_secs_in_past``) is moved
  so that it happened when it arrived (``validation.rs``: ``normalize_timestamps``). Relay does not
  drop it, and neither does the inbox. For logs, spans and trace metrics the same bounds pick the
  correction, applied only when it reaches 55 minutes too (``eap/time.rs``).
- Either correction is noted in ``_meta`` on the timestamp: ``err`` with ``clock_drift``,
  ``future_timestamp`` or ``past_timestamp`` and the SDK's and the server's times.
- Over-long strings (``trimming.rs``: ``trim_string``; limits from ``MaxChars`` and the
  ``max_chars`` of ``event.rs`` / ``exception.rs``): a value longer than its limit plus allowance
  keeps its first ``limit - 3`` characters and ``...``; ``_meta`` records the original length and
  the ``!limit`` remark.

Sessions keep their own, shorter bounds in Relay and are left as sent.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi_sentry.inbox._grouping import as_dict, as_list

MINIMUM_CLOCK_DRIFT = 55 * 60
MAX_SECS_IN_FUTURE = 60
MAX_SECS_IN_PAST = 30 * 24 * 3600

# field: (limit, allowance) — MaxChars::Message is 8192 + 200, Symbol 256 + 20; transaction,
# culprit and release have max_chars = 200, environment and logger 64, server_name 256 + 20.
_MESSAGE = (8192, 200)
_TOP_LEVEL_LIMITS = {
    "transaction": (200, 0),
    "culprit": (200, 0),
    "release": (200, 0),
    "environment": (64, 0),
    "logger": (64, 0),
    "server_name": (256, 20),
    "message": _MESSAGE,
}
_EXCEPTION_LIMITS = {"value": _MESSAGE, "type": (256, 20), "module": (256, 20)}
_LOGENTRY_LIMITS = {"message": _MESSAGE, "formatted": _MESSAGE}


def _epoch(value: Any) -> float | None:
    """Epoch seconds of a timestamp from year 1970 to 2999, else None (so no shift can overflow
    to infinity, which JSON cannot carry)."""
    ts = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ts = float(value)
    elif isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:  # Relay reads a timestamp without offset as UTC
            parsed = parsed.replace(tzinfo=timezone.utc)
        ts = parsed.timestamp()
    return ts if ts is not None and 0 <= ts < 32503680000 else None


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def sent_at(headers: dict[str, Any]) -> float | None:
    """The envelope header ``sent_at`` (the SDK's clock when it sent), if readable."""
    return _epoch(headers.get("sent_at"))


def _meta_node(payload: dict[str, Any], *path: str | int) -> dict[str, Any]:
    node = payload.setdefault("_meta", {})
    for key in path:
        node = node.setdefault(str(key), {})
    result: dict[str, Any] = node.setdefault("", {})
    return result


def _shift(container: dict[str, Any], keys: tuple[str, ...], seconds: float) -> None:
    for key in keys:
        ts = _epoch(container.get(key))
        if ts is not None:
            container[key] = round(ts + seconds, 6)


def _event_correction(
    payload: dict[str, Any], received: float, sdk_sent: float | None
) -> list[tuple[float, str, float]]:
    """(shift, error kind, SDK time) for an event: clock drift first, then the bounds."""
    corrections: list[tuple[float, str, float]] = []
    timestamp = _epoch(payload.get("timestamp"))
    if timestamp is None:  # nothing the SDK's clock dated: the arrival time stands, unnoted
        return corrections
    if sdk_sent is not None and abs(int(received - sdk_sent)) >= MINIMUM_CLOCK_DRIFT:
        corrections.append((received - sdk_sent, "clock_drift", sdk_sent))
        timestamp += received - sdk_sent
    if timestamp > received + MAX_SECS_IN_FUTURE:
        corrections.append((received - timestamp, "future_timestamp", timestamp))
    elif timestamp < received - MAX_SECS_IN_PAST:
        corrections.append((received - timestamp, "past_timestamp", timestamp))
    return corrections


def _trim(
    payload: dict[str, Any],
    container: Any,
    limits: dict[str, tuple[int, int]],
    path: tuple[str | int, ...],
) -> bool:
    """Relay's trim_string on the fields of ``container`` that have a limit; the ``_meta`` of
    each trimmed one gets the original length and the ``!limit`` remark. True if any was."""
    if not isinstance(container, dict):
        return False
    changed = False
    for key, (limit, allowance) in limits.items():
        value = container.get(key)
        # the common case, a short value, costs a lookup and a length
        if type(value) is not str or len(value) <= limit + allowance:
            continue
        container[key] = value[: limit - 3] + "..."
        meta = {"rem": [["!limit", "s", limit - 3, limit]], "len": len(value)}
        _meta_node(payload, *path, key).update(meta)
        changed = True
    return changed


def normalize_event(payload: dict[str, Any], received: float, sdk_sent: float | None) -> bool:
    """Correct an event's timestamps and trim its long strings in place; True if it changed."""
    changed = False
    for seconds, kind, sdk_time in _event_correction(payload, received, sdk_sent):
        _shift(payload, ("timestamp", "start_timestamp"), seconds)
        for span in as_list(payload.get("spans")):
            if isinstance(span, dict):
                _shift(span, ("timestamp", "start_timestamp"), seconds)
        crumbs = payload.get("breadcrumbs")
        for crumb in as_list(as_dict(crumbs).get("values")) or as_list(crumbs):
            if isinstance(crumb, dict):
                _shift(crumb, ("timestamp",), seconds)
        error = [kind, {"sdk_time": _rfc3339(sdk_time), "server_time": _rfc3339(received)}]
        _meta_node(payload, "timestamp").setdefault("err", []).append(error)
        changed = True
    changed |= _trim(payload, payload, _TOP_LEVEL_LIMITS, ())
    changed |= _trim(payload, payload.get("logentry"), _LOGENTRY_LIMITS, ("logentry",))
    exception = payload.get("exception")
    values = as_list(as_dict(exception).get("values")) or as_list(exception)
    for index, exc in enumerate(values):
        changed |= _trim(payload, exc, _EXCEPTION_LIMITS, ("exception", "values", index))
    return changed


def normalize_times(
    entry: dict[str, Any],
    reference: str,
    others: tuple[str, ...],
    received: float,
    sdk_sent: float | None,
) -> None:
    """Relay's time normalization of one log, span or trace metric (``eap/time.rs``): the bounds
    choose the correction over the clock drift, and only 55 minutes or more is corrected."""
    timestamp = _epoch(entry.get(reference))
    base, kind = sdk_sent, "clock_drift"
    if timestamp is not None and timestamp < received - MAX_SECS_IN_PAST:
        base, kind = timestamp, "past_timestamp"
    elif timestamp is not None and timestamp > received + MAX_SECS_IN_FUTURE:
        base, kind = timestamp, "future_timestamp"
    if base is None or abs(int(received - base)) < MINIMUM_CLOCK_DRIFT:
        return
    _shift(entry, (reference, *others), received - base)
    error = [kind, {"sdk_time": _rfc3339(base), "server_time": _rfc3339(received)}]
    _meta_node(entry, reference).setdefault("err", []).append(error)
