"""`GET /metrics`: the integration's state in Prometheus's text format (`SENTRY_METRICS_ENDPOINT`).

Rendered by `prometheus-client` (the `metrics` extra) from a registry of our own, so the app's
own metrics, if it has any, are neither shown twice nor disturbed. The figures come from the
delivery transport (`_fastpath/delivery.py`) when Sentry is on; with Sentry off only
`fastapi_sentry_enabled 0` is shown, and nothing imports sentry_sdk. The DSN never appears.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi_sentry._errors import MissingExtraError
from fastapi_sentry._state import active_sdk

MISSING_EXTRA = (
    "SENTRY_METRICS_ENDPOINT is on, but prometheus-client is not installed; install the extra "
    "with `pip install fastapi-sentry[metrics]`, or set SENTRY_METRICS_ENDPOINT=false"
)


def require_prometheus() -> None:
    """Fail at `install()` rather than on the first scrape when the extra is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(MISSING_EXTRA) from exc


def _snapshot() -> Any:
    """The delivery transport's snapshot, or None (Sentry off, or sentry-sdk's own transport)."""
    sdk = active_sdk()
    if sdk is None:
        return None
    snapshot = getattr(sdk.get_client().transport, "snapshot", None)
    return snapshot() if callable(snapshot) else None


class _Collector:
    """Reads the transport on each scrape: no counters of our own to keep in step."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        enabled = active_sdk() is not None
        yield GaugeMetricFamily(
            "fastapi_sentry_enabled", "1 when Sentry is on in this process.", value=int(enabled)
        )
        snap = _snapshot()
        if snap is None:
            return
        sent = CounterMetricFamily(
            "fastapi_sentry_events_sent",
            "Items the receiver accepted (2xx), by data category.",
            labels=["type"],
        )
        for category, count in sorted(snap.sent.items()):
            sent.add_metric([category], count)
        yield sent
        dropped = CounterMetricFamily(
            "fastapi_sentry_events_dropped",
            "Items dropped before reaching the receiver, by client-report reason and category.",
            labels=["reason", "type"],
        )
        for (reason, category), count in sorted(snap.dropped.items()):
            dropped.add_metric([reason, category], count)
        yield dropped
        queued = GaugeMetricFamily(
            "fastapi_sentry_queued",
            "Envelopes waiting to be sent, by queue (errors first, then the other one).",
            labels=["queue"],
        )
        for queue, count in sorted(snap.queued.items()):
            queued.add_metric([queue], count)
        yield queued
        yield GaugeMetricFamily(
            "fastapi_sentry_outbox_events",
            "Errors and check-ins kept after a failed send, waiting for the receiver.",
            value=snap.outbox_events,
        )
        yield GaugeMetricFamily(
            "fastapi_sentry_outbox_bytes", "Bytes the outbox holds.", value=snap.outbox_bytes
        )
        yield CounterMetricFamily(
            "fastapi_sentry_send_errors",
            "Sends that failed: receiver unreachable, timed out, or answering an error status.",
            value=snap.send_errors,
        )
        yield GaugeMetricFamily(
            "fastapi_sentry_transport_paused",
            "1 while the circuit breaker pauses sending after a failure.",
            value=int(snap.paused),
        )
        yield GaugeMetricFamily(
            "fastapi_sentry_rate_limited",
            "1 while the receiver's rate limit (429, Retry-After) holds.",
            value=int(snap.rate_limited),
        )
        if snap.last_success is not None:
            yield GaugeMetricFamily(
                "fastapi_sentry_last_success_timestamp_seconds",
                "Unix time of the last envelope the receiver accepted.",
                value=snap.last_success,
            )


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
