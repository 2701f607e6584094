"""GET /metrics from a real uvicorn server, read with Prometheus's own text parser."""

from __future__ import annotations

import textwrap
import uuid

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

import fastapi_sentry
from tests.fastpath.test_delivery import delivered_items
from tests.fault_support import FaultReceiver
from tests.support.server import serve
from tests.test_helpers import run_python_ok

KEY = "0123456789abcdef0123456789abcdef"


def scrape(url: str) -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], str]:
    """Sample name and labels -> value, and the raw text."""
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples, response.text


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.sdk_errors_expected
def test_metrics_follow_what_is_sent_dropped_and_kept() -> None:
    with FaultReceiver() as receiver:
        dsn = receiver.dsn.replace("faultkey", KEY)
        app = FastAPI()

        @app.get("/work")
        async def work() -> dict[str, bool]:
            return {"ok": True}

        fastapi_sentry.install(
            app, dsn=dsn, metrics_endpoint=True, traces_sample_rate=1.0, spool_max_events=2
        )
        with serve(app) as url:
            samples, _ = scrape(url)
            assert value(samples, "fastapi_sentry_enabled") == 1
            assert value(samples, "fastapi_sentry_events_sent_total", type="error") == 0
            assert ("fastapi_sentry_last_success_timestamp_seconds", ()) not in samples

            assert httpx.get(f"{url}/work", timeout=10).status_code == 200
            for n in range(3):
                sentry_sdk.capture_message(f"metered #{n}", level="error")
            sentry_sdk.flush(timeout=5)
            samples, _ = scrape(url)
            assert value(samples, "fastapi_sentry_events_sent_total", type="error") == 3
            assert value(samples, "fastapi_sentry_last_success_timestamp_seconds") > 0
            assert value(samples, "fastapi_sentry_transport_paused") == 0

            receiver.set_mode("refuse")
            for n in range(5):
                sentry_sdk.capture_message(f"kept #{n}", level="error")
            sentry_sdk.flush(timeout=5)
            samples, text = scrape(url)
            assert value(samples, "fastapi_sentry_outbox_events") == 2
            assert value(samples, "fastapi_sentry_outbox_bytes") > 0
            assert (
                value(
                    samples,
                    "fastapi_sentry_events_dropped_total",
                    reason="cache_overflow",
                    type="error",
                )
                == 3
            )
            assert value(samples, "fastapi_sentry_send_errors_total") >= 1
            assert value(samples, "fastapi_sentry_transport_paused") == 1
            assert value(samples, "fastapi_sentry_queued", queue="errors") == 0
            assert value(samples, "fastapi_sentry_events_sent_total", type="error") == 3
            assert KEY not in text
        # /metrics itself is never traced, however often it is read
        names = [t["transaction"] for t in delivered_items(receiver, "transaction")]
        assert names == ["/work"]


def test_metrics_need_the_extra_and_say_which() -> None:
    run_python_ok(
        textwrap.dedent(
            """
            import sys
            sys.modules["prometheus_client"] = None  # not installed
            from fastapi import FastAPI
            import fastapi_sentry
            from fastapi_sentry import MissingExtraError
            try:
                fastapi_sentry.install(FastAPI(), metrics_endpoint=True)
            except MissingExtraError as exc:
                assert "pip install fastapi-sentry[metrics]" in str(exc), exc
                print("ok")
            """
        )
    )


def test_metrics_with_sentry_off_import_no_sentry_sdk() -> None:
    marker = uuid.uuid4().hex
    run_python_ok(
        textwrap.dedent(
            f"""
            import sys
            from fastapi import FastAPI
            from fastapi.testclient import TestClient
            import fastapi_sentry
            app = FastAPI()
            fastapi_sentry.install(app, metrics_endpoint=True)
            text = TestClient(app).get("/metrics").text
            assert "fastapi_sentry_enabled 0.0" in text, text
            assert "sentry_sdk" not in sys.modules
            assert "{marker}" not in text
            print("ok")
            """
        )
    )
