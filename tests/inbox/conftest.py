"""Fixtures for the monitor tests: a running inbox, Debian's chromium, the JSON API, SQLite."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import httpx

from fastapi_sentry.inbox import InboxServer
from tests.support.server import serve
from tests.test_inbox_web import _png_size_and_colours, browser

# The same chromium as the first inbox tests (re-exported, so pytest finds it here); `inbox`
# comes from tests/conftest.py.
__all__ = ["browser", "serve"]


def api(inbox: InboxServer, path: str, status: int = 200, /, **params: str) -> Any:
    """GET a JSON API path of the default project (``{p}`` is its id) and check the status."""
    assert inbox.project is not None
    url = inbox.url + path.format(p=inbox.project.id)
    response = httpx.get(url, params=params, timeout=10)
    assert response.status_code == status, response.text
    return response.json()


def page(inbox: InboxServer, path: str, status: int = 200) -> str:
    response = httpx.get(inbox.url + path, timeout=10)
    assert response.status_code == status, response.text
    return response.text


def set_status(inbox: InboxServer, issue_id: str, status: str) -> None:
    """Set the column the ``is:`` search reads directly (triage has its own tests)."""
    with contextlib.closing(sqlite3.connect(inbox.db_path)) as conn:
        conn.execute("UPDATE issues SET status = ? WHERE id = ?", (status, int(issue_id)))
        conn.commit()


def colourful(png: bytes) -> int:
    """Distinct byte values in a screenshot's pixels: rendered text and bars use many."""
    return _png_size_and_colours(png)[1]
