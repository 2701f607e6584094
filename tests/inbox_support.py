"""Helpers for the inbox tests: a running inbox, envelopes built by hand for bad input, and a
snapshot of everything stored so a test can prove a bad request changed nothing."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import sentry_sdk

from fastapi_sentry.inbox import InboxServer

TABLES = ("projects", "issues", "issue_users", "issue_tags", "events", "spans", "project_users")


@contextlib.contextmanager
def running_inbox(tmp_path: Path, **kwargs: Any) -> Iterator[InboxServer]:
    with InboxServer(tmp_path / "inbox.db", **kwargs) as inbox:
        yield inbox


def init_sdk(dsn: str, **options: Any) -> None:
    """sentry_sdk.init for tests: no default integrations guessing at the test process."""
    options.setdefault("default_integrations", False)
    options.setdefault("auto_enabling_integrations", False)
    sentry_sdk.init(dsn=dsn, **options)


def envelope(*items: tuple[dict[str, Any], bytes], headers: dict[str, Any] | None = None) -> bytes:
    lines = [json.dumps(headers or {}).encode()]
    for item_headers, payload in items:
        lines.append(json.dumps({**item_headers, "length": len(payload)}).encode())
        lines.append(payload)
    return b"\n".join(lines) + b"\n"


def event_item(**fields: Any) -> tuple[dict[str, Any], bytes]:
    event = {"event_id": uuid.uuid4().hex, "level": "error", "platform": "python", **fields}
    return {"type": "event"}, json.dumps(event).encode()


def error_event(exc_type: str = "ValueError", value: str = "boom", **fields: Any) -> bytes:
    """A one-event envelope shaped like sentry-sdk's, for bad-input and load tests."""
    frames = [
        {"module": "app.views", "function": "handler", "lineno": 10, "in_app": True},
        {"module": "app.service", "function": "work", "lineno": 20, "in_app": True},
    ]
    return envelope(
        event_item(
            exception={
                "values": [{"type": exc_type, "value": value, "stacktrace": {"frames": frames}}]
            },
            **fields,
        )
    )


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6)


def auth_headers(key: str) -> dict[str, str]:
    return {
        "X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7, sentry_client=tests/1.0",
        "Content-Type": "application/x-sentry-envelope",
    }


def post_envelope(inbox: InboxServer, body: bytes) -> httpx.Response:
    """POST an envelope to the inbox's default project with its DSN key, over a real socket."""
    assert inbox.project is not None
    return httpx.post(
        f"{inbox.url}/api/{inbox.project.id}/envelope/",
        content=body,
        headers=auth_headers(inbox.project.public_key),
        timeout=30,
    )


def snapshot(db_path: Path) -> dict[str, str]:
    """A digest of every row of every table: equal snapshots mean nothing was stored or changed."""
    digests = {}
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        for table in TABLES:
            rows = conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            digests[table] = f"{len(rows)}:" + hashlib.sha256(repr(rows).encode()).hexdigest()
    return digests
