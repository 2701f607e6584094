"""Inline SVG charts, rendered on the server: a sparkline is a few dozen bytes of path and needs
no script, so the pages keep their no-script CSP. Only numbers reach the markup."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from markupsafe import Markup


def sparkline(values: Sequence[float], *, width: int = 120, height: int = 24, label: str) -> Markup:
    """A line over ``values`` (left to right), scaled to the largest; all zeros draw a flat line."""
    count = len(values)
    peak = max(values, default=0.0) or 1.0
    step = width / max(count - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{height - 1 - (height - 2) * value / peak:.1f}"
        for i, value in enumerate(values)
    )
    total = sum(values)
    # Only numbers and an escaped label reach the markup.
    return Markup(  # noqa: S704
        f'<svg class="sparkline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{Markup.escape(label)}: {total:g}">'
        f'<polyline fill="none" stroke="#6c5fc7" stroke-width="1.5" points="{points}"/></svg>'
    )


def bucket_counts(
    weighted: Iterable[tuple[float, float]], start: float, end: float, buckets: int
) -> list[float]:
    """Sum (time, weight) pairs' weights into ``buckets`` equal slices of [start, end)."""
    counts = [0.0] * buckets
    width = (end - start) / buckets
    for ts, weight in weighted:
        if start <= ts < end:
            counts[min(int((ts - start) / width), buckets - 1)] += weight
    return counts
