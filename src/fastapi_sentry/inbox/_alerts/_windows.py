"""Sliding windows the rules are evaluated over, kept in memory and fed once per stored event.

Counts are kept per second, not per event, so "more than 10 in 1h" at thousands of events per
second stays a few thousand integers.
"""

from __future__ import annotations

from collections import OrderedDict, deque


class CountWindow:
    """How many events arrived in the last ``window`` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._buckets: deque[list[float]] = deque()  # [second, count]
        self._total = 0

    def add(self, at: float) -> None:
        second = float(int(at))
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([second, 1])
        self._total += 1

    def count(self, now: float) -> int:
        horizon = now - self.window
        while self._buckets and self._buckets[0][0] + 1 <= horizon:
            self._total -= int(self._buckets.popleft()[1])
        return self._total


class DistinctWindow:
    """How many distinct users were seen in the last ``window`` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._last_seen: OrderedDict[str, float] = OrderedDict()

    def add(self, key: str, at: float) -> None:
        self._last_seen[key] = at
        self._last_seen.move_to_end(key)

    def count(self, now: float) -> int:
        horizon = now - self.window
        while self._last_seen and next(iter(self._last_seen.values())) < horizon:
            self._last_seen.popitem(last=False)
        return len(self._last_seen)


class DurationWindow:
    """Transaction durations of the last ``window`` seconds (at most ``cap`` of them)."""

    def __init__(self, window: float, cap: int = 100_000) -> None:
        self.window = window
        self._samples: deque[tuple[float, float]] = deque(maxlen=cap)

    def add(self, at: float, duration_ms: float) -> None:
        self._samples.append((at, duration_ms))

    def values(self, now: float) -> list[float]:
        horizon = now - self.window
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()
        return sorted(duration for _, duration in self._samples)
