"""Headless Chromium for the monitor's page tests (Debian's chromium, never a downloaded one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_inbox_web import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", *CHROMIUM_ARGS]
        )
        try:
            yield chromium
        finally:
            chromium.close()
