"""The inbox's web pages: rendered by the server, readable without JavaScript, every value escaped.

The browser tests drive Debian's chromium through Playwright (never a downloaded browser).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sentry_sdk

from fastapi_sentry.inbox import InboxServer
from tests.inbox_support import auth_headers, envelope, event_item, init_sdk

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCRIPT = "<script>window.__xss = 'script'</script>"
IMG = "<img src=x onerror=\"window.__xss = 'img'\">"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _checkout(cart_total: int) -> None:
    discount_code = "SPRING"  # noqa: F841 - a local variable the page must show
    raise RuntimeError(f"payment declined for {cart_total}")


def _send_checkout_error(inbox: InboxServer) -> str:
    # conftest chdirs to tmp_path, so sentry-sdk's project-root rule cannot see the tests as app.
    init_sdk(inbox.dsn, environment="staging", release="shop@3.1", in_app_include=["tests"])
    sentry_sdk.add_breadcrumb(category="http", message="POST /cart", level="info")
    sentry_sdk.set_tag("tenant", "acme")
    sentry_sdk.set_context("checkout", {"cart_items": 3})
    sentry_sdk.set_user({"id": "u-42", "email": "dev@example.com"})
    try:
        _checkout(99)
    except RuntimeError:
        sentry_sdk.capture_exception()
    sentry_sdk.flush()
    (event,) = inbox.wait_for(1)
    return str(event["groupID"])


def _png_size_and_colours(png: bytes) -> tuple[tuple[int, int], int]:
    """Width/height from the PNG header, and how many distinct bytes its pixel data holds."""
    width, height = struct.unpack(">II", png[16:24])
    stream = io.BytesIO(png[8:])
    data = b""
    while chunk := stream.read(8):
        length, kind = struct.unpack(">I4s", chunk)
        body = stream.read(length + 4)[:length]
        if kind == b"IDAT":
            data += body
    return (width, height), len(set(zlib.decompress(data)))


@pytest.mark.browser
def test_issue_page_shows_the_stack_trace_in_chromium(
    inbox: InboxServer, browser: Any, tmp_path: Path
) -> None:
    issue_id = _send_checkout_error(inbox)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(inbox.url + "/")
    page.click("text=RuntimeError: payment declined for 99")
    assert page.url.startswith(f"{inbox.url}/issues/{issue_id}/")

    trace = page.locator("#stacktrace")
    trace.scroll_into_view_if_needed()
    box = trace.bounding_box()
    assert box is not None
    assert box["width"] > 200
    assert box["height"] > 50
    in_app = page.locator(".frame.in-app")
    assert in_app.count() >= 1
    assert "_checkout" in in_app.last.inner_text()
    assert "in app" in in_app.last.inner_text()
    assert "discount_code" in trace.inner_text()
    assert "'SPRING'" in trace.inner_text()
    assert "raise RuntimeError" in trace.inner_text()
    assert "POST /cart" in page.locator("#breadcrumbs").inner_text()
    assert "acme" in page.locator("#tags").inner_text()
    assert "u-42" in page.locator("#user").inner_text()
    assert "cart_items" in page.locator("#contexts").inner_text()
    assert page.locator("#chart rect").count() == 24

    shot = tmp_path / "issue.png"
    png = trace.screenshot(path=str(shot))
    (width, height), colours = _png_size_and_colours(png)
    assert abs(width - box["width"]) <= 3
    assert abs(height - box["height"]) <= 3
    blank = browser.new_page(viewport={"width": 1280, "height": 900})
    blank.set_content("<div style='width:600px;height:200px'></div>")
    _, blank_colours = _png_size_and_colours(blank.locator("div").screenshot())
    assert blank_colours <= 8
    # Rendered, anti-aliased text fills the byte range; a blank box uses a handful of values.
    assert colours > 100, f"the stack trace screenshot is (nearly) blank ({colours} values)"


@pytest.mark.browser
def test_pages_work_without_javascript(inbox: InboxServer, browser: Any) -> None:
    issue_id = _send_checkout_error(inbox)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(inbox.url + "/")
    page.select_option("select[name=environment]", "staging")
    page.click("button:has-text('Filter')")
    assert "environment=staging" in page.url
    assert page.locator("tr.issue").count() == 1
    page.goto(f"{inbox.url}/issues/{issue_id}/")
    assert page.locator("#stacktrace .frame").count() >= 2
    page.goto(inbox.url + "/performance/")
    assert page.locator("h1").inner_text().startswith("Performance")
    page.goto(inbox.url + "/crons/")
    assert page.locator("h1").inner_text().startswith("Cron check-ins")
    context.close()


def _hostile(inbox: InboxServer) -> str:
    init_sdk(inbox.dsn)
    sentry_sdk.add_breadcrumb(category=SCRIPT, message=IMG, data={"html": SCRIPT})
    sentry_sdk.set_tag("payload", IMG)
    sentry_sdk.set_user({"id": SCRIPT, "username": IMG})
    sentry_sdk.set_context("evil", {"html": IMG})
    try:
        comment = SCRIPT + IMG  # noqa: F841 - a local variable holding the payloads
        raise ValueError(SCRIPT + IMG)
    except ValueError:
        sentry_sdk.capture_exception()
    sentry_sdk.capture_message(IMG + SCRIPT)
    sentry_sdk.flush()
    events = inbox.wait_for(1)
    return str(events[0]["groupID"])


@pytest.mark.browser
def test_script_and_img_payloads_in_an_event_never_execute(
    inbox: InboxServer, browser: Any
) -> None:
    issue_id = _hostile(inbox)
    inbox.wait_for(1, type="default")
    page = browser.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    for path in ("/", f"/issues/{issue_id}/", "/?query=%3Cscript%3E"):
        page.goto(inbox.url + path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__xss") is None, f"a payload executed on {path}"
        # Escaping, not only the CSP: the payloads must not even become elements.
        assert page.locator("img").count() == 0
        assert page.locator("script").count() == 0
    text = page.content()
    assert "&lt;script&gt;window.__xss" in text
    body = page.locator("body").inner_text()
    assert SCRIPT in body
    assert "onerror" in body
    page.goto(f"{inbox.url}/issues/{issue_id}/")
    issue_text = page.locator("body").inner_text()
    for section in ("#stacktrace", "#breadcrumbs", "#tags", "#user", "#contexts"):
        assert "__xss" in page.locator(section).inner_text(), section
    assert SCRIPT in issue_text
    assert dialogs == []


def test_the_html_is_escaped_and_served_with_a_no_script_policy(inbox: InboxServer) -> None:
    issue_id = _hostile(inbox)
    response = httpx.get(f"{inbox.url}/issues/{issue_id}/", timeout=10)
    assert response.status_code == 200
    assert "script-src" not in response.headers["content-security-policy"]
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "<script>window" not in response.text
    assert "<img src=x" not in response.text
    assert "&lt;img src=x onerror=" in response.text


def test_issue_list_filters_and_search(inbox: InboxServer) -> None:
    assert inbox.project is not None
    for environment, level, release, message in (
        ("prod", "error", "1.0", "database is down"),
        ("prod", "warning", "1.1", "slow response"),
        ("dev", "error", "1.1", "template missing"),
    ):
        response = httpx.post(
            f"{inbox.url}/api/{inbox.project.id}/envelope/",
            content=envelope(
                event_item(message=message, environment=environment, level=level, release=release)
            ),
            headers=auth_headers(inbox.project.public_key),
            timeout=10,
        )
        assert response.status_code == 200

    def titles(query: str) -> list[str]:
        page = httpx.get(f"{inbox.url}/?{query}", timeout=10).text
        return sorted(
            t for t in ("database is down", "slow response", "template missing") if t in page
        )

    assert titles("") == ["database is down", "slow response", "template missing"]
    assert titles("environment=prod") == ["database is down", "slow response"]
    assert titles("level=warning") == ["slow response"]
    assert titles("release=1.1&environment=dev") == ["template missing"]
    assert titles("query=missing") == ["template missing"]
    assert titles("query=nothing+like+this") == []
    listed = httpx.get(inbox.url + "/", timeout=10).text
    assert listed.index("template missing") < listed.index("database is down")  # last seen first


def test_unknown_issue_page_is_a_404_page(inbox: InboxServer) -> None:
    response = httpx.get(f"{inbox.url}/issues/12345/", timeout=10)
    assert response.status_code == 404
    assert "There is no issue &#39;12345&#39;" in response.text
