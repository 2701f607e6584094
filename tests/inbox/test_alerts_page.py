"""The Alerts page: the rules, what fired and each delivery's result, rendered for a person."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.inbox.monitor_support import Webhook, alerting_inbox, engine, post_events
from tests.test_inbox_web import _png_size_and_colours

RULES = """
[[rule]]
name = "first-seen"
when = "new_issue"
notify = ["{ok}"]

[[rule]]
name = "errors-per-minute"
when = "event_count"
severity = "critical"
count = 10
window = "1m"
notify = ["{down}"]

[delivery]
attempts = 2
backoff = "100ms"
"""


@pytest.mark.browser
def test_the_alerts_page_shows_rules_firings_and_failed_deliveries(
    tmp_path: Path, browser: Any
) -> None:
    with Webhook() as ok, Webhook(fail=99) as down:
        rules = RULES.format(ok=ok.url, down=down.url)
        with alerting_inbox(tmp_path, rules) as inbox:
            post_events(inbox, 12, message="<b>checkout</b> failed")
            engine(inbox).settle()
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(inbox.url + "/")
            page.click("header a:has-text('Alerts')")
            assert page.url.startswith(inbox.url + "/alerts/")
            assert page.locator("tr.rule").count() == 2
            firings = page.locator("#firings")
            rows = firings.locator("tr.firing")
            assert rows.count() == 2
            text = firings.inner_text()
            assert "New issue: <b>checkout</b> failed" in text  # escaped, shown as text
            assert "delivered" in text
            assert "failed" in text
            assert "HTTP 500" in text
            severities = rows.locator("td.severity").all_inner_texts()
            assert sorted(severities) == ["critical", "warning"]
            assert "secret-path" not in page.content()
            assert page.locator("#firings b").count() == 0
            box = firings.bounding_box()
            assert box is not None
            assert box["width"] > 600
            assert box["height"] > 60
            (width, _height), colours = _png_size_and_colours(firings.screenshot())
            assert abs(width - box["width"]) <= 3
            assert colours > 100, f"the alerts table screenshot is (nearly) blank ({colours})"
            csp = httpx.get(inbox.url + "/alerts/", timeout=10).headers["content-security-policy"]
            assert "default-src 'none'" in csp


def test_without_rules_the_page_says_how_to_add_them(tmp_path: Path) -> None:
    from tests.inbox_support import running_inbox

    with running_inbox(tmp_path) as inbox:
        page = httpx.get(inbox.url + "/alerts/", timeout=10)
        assert page.status_code == 200
        assert "--alerts alerts.toml" in page.text
        assert httpx.get(inbox.url + "/api/0/projects/1/alerts/", timeout=10).json() == []
