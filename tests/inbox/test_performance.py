"""Throughput, percentiles, failure rate and Apdex against transactions of known durations, and
the trace view (API, waterfall page, links to and from the errors of the trace).

Every transaction and span is sent by sentry-sdk with explicit start and end timestamps, so each
duration is exact: "GET /orders" takes 100, 200, ... 900 and 1300 ms (10 in the last hour), plus
one of 50 ms two hours ago that only the 24h period sees.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.tracing import Transaction

from fastapi_sentry.inbox import InboxServer
from tests.inbox.conftest import api, colourful, page
from tests.inbox_support import init_sdk

DURATIONS_MS = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1300]
STATUSES = {300: "internal_error", 500: "cancelled", 700: "deadline_exceeded", 900: "unknown"}
PERFORMANCE = "/api/0/projects/{p}/performance/"


def _send_orders(inbox: InboxServer) -> None:
    init_sdk(inbox.dsn, traces_sample_rate=1.0)
    now = float(int(time.time()))  # whole seconds: every start and end is exact in microseconds
    for i, ms in enumerate(DURATIONS_MS):
        start = now - 600 + i
        tx = sentry_sdk.start_transaction(
            name="GET /orders", op="http.server", start_timestamp=start
        )
        query = tx.start_child(op="db.query", name=f"SELECT {ms}", start_timestamp=start + 0.001)
        query.finish(end_timestamp=start + 0.001 + ms / 2000)
        tx.set_status(STATUSES.get(ms, "ok"))
        tx.finish(end_timestamp=start + ms / 1000)
    old = sentry_sdk.start_transaction(
        name="GET /orders", op="http.server", start_timestamp=now - 7200
    )
    old.finish(end_timestamp=now - 7200 + 0.05)
    sentry_sdk.flush()
    inbox.wait_for(11, type="transaction")


def test_percentiles_apdex_failure_rate_and_throughput(inbox: InboxServer) -> None:
    _send_orders(inbox)
    answer = api(inbox, PERFORMANCE, statsPeriod="1h")
    assert answer["threshold"] == 300
    assert answer["statsPeriod"] == "1h"
    (orders,) = answer["data"]
    assert orders["transaction"] == "GET /orders"
    assert orders["count"] == 10
    # nearest rank: p50 is the 5th of 10, p75 the 8th, p95 and p99 the 10th
    assert (orders["p50"], orders["p75"], orders["p95"], orders["p99"]) == pytest.approx(
        (500, 800, 1300, 1300), abs=0.01
    )
    assert orders["tpm"] == pytest.approx(10 / 60, abs=1e-3)
    assert orders["failure_rate"] == pytest.approx(0.2)  # internal_error, deadline_exceeded
    # T = 300: satisfied 100-300 (3), tolerating 400-900 (6), frustrated 1300 → (3 + 3) / 10
    assert orders["apdex"] == pytest.approx(0.6)
    assert orders["slowest_spans"][0]["duration_ms"] == pytest.approx(650, abs=0.01)
    assert orders["slow_db_queries"][0]["description"] == "SELECT 1300"
    assert len(orders["slowest_trace"]) == 32

    # T = 500: satisfied 100-500 (5), tolerating 600-1300 (5) → (5 + 2.5) / 10
    (custom,) = api(inbox, PERFORMANCE, statsPeriod="1h", threshold="500")["data"]
    assert custom["apdex"] == pytest.approx(0.75)

    (day,) = api(inbox, PERFORMANCE, statsPeriod="24h")["data"]
    assert day["count"] == 11
    assert day["tpm"] == pytest.approx(11 / 1440, abs=1e-4)
    assert day["p50"] == pytest.approx(500, abs=0.01)  # the 6th of 11: 50 ms joins the ranks

    html = page(inbox, "/performance/?statsPeriod=1h&threshold=500")
    assert '<td class="apdex">0.75</td>' in html
    assert '<td class="p75">800.0</td>' in html
    assert '<td class="failure-rate">20.0%</td>' in html


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"statsPeriod": "forever"}, "statsPeriod='forever' is not a period"),
        ({"threshold": "0"}, "threshold='0' is not an Apdex threshold"),
        ({"threshold": "fast"}, "threshold='fast' is not an Apdex threshold"),
    ],
)
def test_bad_period_or_threshold_is_a_400(
    inbox: InboxServer, params: dict[str, str], says: str
) -> None:
    assert says in api(inbox, PERFORMANCE, 400, **params)["detail"]
    query = "&".join(f"{k}={v}" for k, v in params.items())
    assert says.replace("'", "&#39;") in page(inbox, f"/performance/?{query}", 400)


def _send_trace(inbox: InboxServer) -> tuple[str, dict[str, str]]:
    """A checkout task calling the payment service, which fails in its database span."""
    init_sdk(inbox.dsn, traces_sample_rate=1.0, release="shop@1.0")
    t0 = time.time() - 60
    checkout = sentry_sdk.start_transaction(name="checkout flow", op="task", start_timestamp=t0)
    call = checkout.start_child(op="http.client", name="POST /pay", start_timestamp=t0 + 0.010)
    payment = sentry_sdk.start_transaction(
        Transaction(
            name="POST /pay",
            op="http.server",
            trace_id=checkout.trace_id,
            parent_span_id=call.span_id,
            start_timestamp=t0 + 0.020,
        )
    )
    update = payment.start_child(op="db.sql", name="UPDATE cards", start_timestamp=t0 + 0.030)
    scope = sentry_sdk.get_current_scope()
    scope.span = update
    try:
        raise ConnectionError("card vault unreachable")
    except ConnectionError:
        sentry_sdk.capture_exception()
    scope.span = None
    update.finish(end_timestamp=t0 + 0.050)
    payment.finish(end_timestamp=t0 + 0.080)
    call.finish(end_timestamp=t0 + 0.090)
    checkout.finish(end_timestamp=t0 + 0.100)
    sentry_sdk.flush()
    inbox.wait_for(2, type="transaction")
    (error,) = inbox.wait_for(1)
    ids = {"checkout": checkout.span_id, "call": call.span_id, "update": update.span_id}
    ids["payment"] = payment.span_id
    ids["group"] = str(error["groupID"])
    return checkout.trace_id, ids


def test_trace_api_nests_transactions_and_spans_and_links_the_error(inbox: InboxServer) -> None:
    trace_id, ids = _send_trace(inbox)
    trace = api(inbox, f"/api/0/projects/{{p}}/traces/{trace_id}/")
    assert trace["traceId"] == trace_id
    assert trace["transactions"] == 2
    assert trace["durationMs"] == pytest.approx(100, abs=0.01)
    rows = [
        (s["spanId"], s["depth"], round(s["offsetMs"]), round(s["durationMs"]))
        for s in trace["spans"]
    ]
    assert rows == [
        (ids["checkout"], 0, 0, 100),
        (ids["call"], 1, 10, 80),
        (ids["payment"], 2, 20, 60),
        (ids["update"], 3, 30, 20),
    ]
    (error,) = trace["errors"]
    assert error["groupID"] == ids["group"]
    assert error["spanId"] == ids["update"]
    assert error["title"] == "ConnectionError: card vault unreachable"
    assert trace["spans"][3]["errors"] == [error["eventID"]]

    other = "0" * 32
    assert (
        "has no event in trace"
        in api(inbox, f"/api/0/projects/{{p}}/traces/{other}/", 404)["detail"]
    )
    assert "is not a trace id" in api(inbox, "/api/0/projects/{p}/traces/xyz/", 400)["detail"]


@pytest.mark.browser
def test_trace_waterfall_and_error_links_in_chromium(
    inbox: InboxServer, browser: Any, tmp_path: Path
) -> None:
    trace_id, ids = _send_trace(inbox)
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    tab.goto(inbox.url + "/performance/")
    tab.locator("tr.transaction", has_text="checkout flow").locator("a.slowest-trace").click()
    assert f"/traces/{trace_id}/" in tab.url
    waterfall = tab.locator("#waterfall")
    assert waterfall.locator("tr.span").count() == 4
    assert waterfall.locator("tr.span.has-error").count() == 1
    bars = waterfall.locator("svg.bar rect")
    widths = [float(bars.nth(i).get_attribute("width") or 0) for i in range(4)]
    assert widths == pytest.approx([1000, 800, 600, 200], abs=0.2)
    box = waterfall.bounding_box()
    assert box is not None
    assert box["height"] > 80
    png = waterfall.screenshot(path=str(tmp_path / "trace.png"))
    assert colourful(png) > 100, "the waterfall screenshot is (nearly) blank"

    tab.click("#trace-errors >> text=ConnectionError: card vault unreachable")
    assert f"/issues/{ids['group']}/" in tab.url
    tab.click("#trace-link a")
    assert f"/traces/{trace_id}/" in tab.url
