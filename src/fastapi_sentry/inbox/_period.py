"""Time windows as Sentry writes them (``statsPeriod=24h``) and times as people read them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi_sentry.inbox._errors import MalformedRequestError

_PERIOD = re.compile(r"(\d{1,4})([mhdw])")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_PERIOD_SECONDS = 90 * 86400
PERIOD_CHOICES = ("1h", "24h", "7d", "14d", "30d", "90d")


class InvalidPeriodError(MalformedRequestError):
    """``statsPeriod`` is not a window the inbox can show (HTTP 400)."""


@dataclass(frozen=True)
class Period:
    """The last ``seconds`` seconds, named as in the URL (``24h``)."""

    label: str
    seconds: int

    @property
    def minutes(self) -> float:
        return self.seconds / 60.0


def parse_period(raw: str | None, default: str) -> Period:
    """``statsPeriod`` (a number and m, h, d or w, up to 90 days) → Period; raise when invalid."""
    label = (raw or "").strip() or default
    match = _PERIOD.fullmatch(label)
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else 0
    if not 60 <= seconds <= MAX_PERIOD_SECONDS:
        raise InvalidPeriodError(
            f"statsPeriod={label!r} is not a period; write a number and m, h, d or w from 1m to "
            f"90d (for example statsPeriod=24h or statsPeriod=14d).",
            where="query parameter statsPeriod",
        )
    return Period(label=label, seconds=seconds)


def ago(seconds: float) -> str:
    """How long ago, as the issue stream says it: "just now", "3 min ago", "2 days ago"."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} hr ago"
    days = int(seconds // 86400)
    return f"{days} day{'' if days == 1 else 's'} ago"
