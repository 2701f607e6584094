"""When a cron monitor should next check in, from the ``monitor_config`` sentry-sdk sends.

A crontab (five fields, ``*``, ``*/n``, ranges and lists) or an interval; Sentry's default margin
of one minute applies unless the monitor sets ``checkin_margin``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

_INTERVAL_UNITS = {
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
    "week": 7 * 86400.0,
    "month": 30 * 86400.0,
    "year": 365 * 86400.0,
}
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MAX_MINUTES = 366 * 24 * 60


def _field(text: str, low: int, high: int) -> set[int] | None:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else 1
        if step_text and step == 1 and step_text != "1":
            return None
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            if not (first.isdigit() and last.isdigit()):
                return None
            start, end = int(first), int(last)
        elif body.isdigit():
            start = int(body)
            end = high if step_text else start
        else:
            return None
        if start < low or end > high or start > end:
            return None
        values.update(range(start, end + 1, step))
    return values


def _zone(name: Any) -> tzinfo:
    if isinstance(name, str) and name:
        try:
            from zoneinfo import ZoneInfo

            return ZoneInfo(name)
        except (ImportError, ValueError, KeyError):
            return timezone.utc
    return timezone.utc


def _next_crontab(expression: str, after: float, zone: tzinfo) -> float | None:
    parts = expression.split()
    if len(parts) != 5:
        return None
    fields = [_field(part, low, high) for part, (low, high) in zip(parts, _BOUNDS, strict=True)]
    if any(f is None for f in fields):
        return None
    minutes, hours, days, months, weekdays = (f or set() for f in fields)
    weekdays = {d % 7 for d in weekdays}
    moment = datetime.fromtimestamp(after, tz=zone).replace(second=0, microsecond=0)
    for _ in range(_MAX_MINUTES):
        moment += timedelta(minutes=1)
        if (
            moment.minute in minutes
            and moment.hour in hours
            and moment.day in days
            and moment.month in months
            and (moment.isoweekday() % 7) in weekdays
        ):
            return moment.timestamp()
    return None


def next_expected(config: Any, after: float) -> float | None:
    """The time by which the next check-in is due (margin included), or None when unknown."""
    if not isinstance(config, dict):
        return None
    schedule = config.get("schedule")
    if not isinstance(schedule, dict):
        return None
    margin = config.get("checkin_margin")
    margin_s = 60.0 * (margin if isinstance(margin, (int, float)) and margin > 0 else 1)
    kind = schedule.get("type")
    value = schedule.get("value")
    if kind == "interval":
        unit = _INTERVAL_UNITS.get(str(schedule.get("unit")))
        if unit is None or not isinstance(value, (int, float)) or value <= 0:
            return None
        return after + float(value) * unit + margin_s
    if kind == "crontab" and isinstance(value, str):
        due = _next_crontab(value, after, _zone(config.get("timezone")))
        return None if due is None else due + margin_s
    return None
