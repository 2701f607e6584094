"""Safe text (issue 12, point 8): request values in tags, the request id and our log lines.

`safe_text` is checked property-style; then crafted values go through a real uvicorn to a real
receiver (query parameters, where a URL-encoded CR/LF arrives as real characters; a JWT claim; a
10 kB or NEL-carrying request id, which uvicorn lets through), and through the ASGI interface
directly for the CR/LF/ESC request ids uvicorn itself refuses but other servers may not.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import socket
import unicodedata
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI, Request
from hypothesis import given
from hypothesis import strategies as st

import fastapi_sentry
from fastapi_sentry._context import SAFE_TEXT_LIMIT, safe_tags, safe_text, sane_request_id
from fastapi_sentry.testing import CapturedEnvelopes
from tests.support.receiver import Receiver
from tests.support.server import serve

#: What must never survive: characters that end a line, move the cursor or hide text.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
FORGED = "\r\nERROR payment failed for everyone\x1b[31m\u2028\x85"


def assert_safe(text: str, limit: int | None = SAFE_TEXT_LIMIT) -> None:
    assert not [ch for ch in text if unicodedata.category(ch) in _UNSAFE_CATEGORIES], text
    assert len(text.splitlines()) <= 1
    text.encode("utf-8")  # no lone surrogate left to break the JSON of an event
    if limit is not None:
        assert len(text) <= limit


# --- the function -----------------------------------------------------------------------------


@given(st.text(), st.integers(min_value=0, max_value=500))
def test_safe_text_never_returns_a_line_break_a_control_character_or_too_much(
    text: str, limit: int
) -> None:
    assert_safe(safe_text(text, limit), limit)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl",
                                                             "Zp"))))  # fmt: skip
def test_safe_text_leaves_ordinary_text_alone(text: str) -> None:
    assert safe_text(text, None) == text
    assert safe_text(text) == (text if len(text) <= 200 else text[:197] + "...")


@given(st.text())
def test_safe_text_shows_what_it_neutralised(text: str) -> None:
    shown = safe_text(text, None)
    assert safe_text(shown, None) == shown  # once safe, stays as it is
    # every character is kept or written as its escape, in order: nothing silently dropped
    assert shown == "".join(
        ch if unicodedata.category(ch) not in _UNSAFE_CATEGORIES
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )  # fmt: skip


@given(st.text(), st.integers(min_value=0, max_value=50))
def test_safe_text_cuts_what_it_would_show(text: str, limit: int) -> None:
    """Cutting before escaping (so a 10 kB value costs what 200 characters cost) changes
    nothing: the result is the whole text escaped, then cut."""
    shown = safe_text(text, None)
    expected = shown if len(shown) <= limit else shown[: limit - 3] + "..."
    if limit < 3:
        expected = shown[:limit]
    assert safe_text(text, limit) == expected


def test_safe_text_escapes_the_usual_attacks() -> None:
    assert safe_text("id\r\nINFO forged") == "id\\r\\nINFO forged"
    assert safe_text("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert safe_text("a\u2028b\x85c\u202ed") == "a\\u2028b\\x85c\\u202ed"
    assert safe_text("x" * 10_000) == "x" * 197 + "..."
    assert safe_text(12345) == "12345"


tag_values = st.one_of(st.text(), st.integers(), st.none(), st.booleans(), st.floats())


@given(st.dictionaries(st.text(), tag_values))
def test_safe_tags_leaves_every_tag_key_and_text_value_safe(tags: dict[str, Any]) -> None:
    event: dict[str, Any] = {"tags": dict(tags)}
    safe_tags(event)
    for key, value in event["tags"].items():
        assert_safe(key)
        if isinstance(value, str):
            assert_safe(value, None)  # cut to 200 later, with Sentry's `_meta` note
    if all(safe_text(key) == key for key in tags):
        assert len(event["tags"]) == len(tags)


@given(st.binary(max_size=300))
def test_an_incoming_request_id_is_kept_only_when_safe(raw: bytes) -> None:
    kept = sane_request_id(raw)
    if kept is not None:
        assert_safe(kept, 128)
        assert kept.isascii()
        assert " " not in kept


# --- through a real server ----------------------------------------------------------------------


class LogLines(logging.Handler):
    """The lines a service's log file would get, formatted with the request id."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(request_id)s %(levelname)s %(message)s"))
        self.addFilter(fastapi_sentry.RequestIdLogFilter())
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text += self.format(record) + "\n"


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    handler = LogLines()
    loggers = [logging.getLogger("shop"), logging.getLogger("fastapi_sentry")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/charge")
    async def charge(request: Request) -> None:
        logging.getLogger("shop").info("charging")
        sentry_sdk.set_tag("tenant", request.query_params.get("tenant", "none"))
        fastapi_sentry.capture_message(
            "charge failed",
            level=request.query_params.get("level", "error"),  # type: ignore[arg-type]
        )

    return app


def _jwt(claims: dict[str, Any]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{payload}.c2lnbmF0dXJl"


def _raw_get(url: str, path: str, request_id: bytes) -> dict[str, str]:
    """One GET whose X-Request-ID bytes go on the wire as given (an HTTP client would check
    them first); the response's headers."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: shop\r\nX-Request-ID: " + request_id
            + b"\r\nConnection: close\r\n\r\n"
        )  # fmt: skip
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    assert head[0].startswith("HTTP/1.1 200"), head[0]
    return {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}


def test_crafted_request_values_reach_tags_and_log_lines_as_safe_text(
    log_lines: LogLines,
) -> None:
    app = make_app()
    with Receiver() as receiver:
        fastapi_sentry.install(
            app, dsn=receiver.dsn, traces_sample_rate=0.0, user_tags=["organization_id"]
        )
        with serve(app) as url:
            query = {
                "tenant": "acme" + FORGED + "t" * 10_000,
                "level": "loud" + FORGED + "l" * 10_000,
            }
            token = _jwt({"sub": "u-1", "org_id": "org" + FORGED})
            response = httpx.get(
                url + "/charge", params=query, headers={"authorization": f"Bearer {token}"}
            )
            long_id = _raw_get(url, "/charge", b"r" * 10_000)["x-request-id"]
            nel_id = _raw_get(url, "/charge", b"req-1\x85INFO forged")["x-request-id"]
            kept_id = _raw_get(url, "/charge", b"req-123.abc")["x-request-id"]
    assert response.status_code == 200
    events = receiver.envelope_items("event")
    assert len(events) == 4

    first = next(e for e in events if e["tags"]["request_id"] == response.headers["x-request-id"])
    tenant = first["tags"]["tenant"]
    assert tenant.startswith("acme\\r\\nERROR payment failed for everyone\\x1b[31m\\u2028\\x85")
    assert len(tenant) == SAFE_TEXT_LIMIT
    assert first["tags"]["organization_id"] == safe_text("org" + FORGED)
    for event in events:
        for key, value in event["tags"].items():
            assert_safe(key)
            assert_safe(str(value))

    # a request id that is not an id is replaced, never echoed or tagged
    assert kept_id == "req-123.abc"
    for replaced in (long_id, nel_id):
        assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    assert {e["tags"]["request_id"] for e in events} == {
        response.headers["x-request-id"],
        long_id,
        nel_id,
        kept_id,
    }

    # the app's log lines and ours: one line per record, whatever was sent
    lines = log_lines.text.splitlines()
    request_ids = {e["tags"]["request_id"] for e in events} | {"-"}  # "-": outside a request
    assert [line for line in lines if line.split(" ", 1)[0] not in request_ids] == []
    ignored = [line for line in lines if "ignored level" in line]
    assert len(ignored) == 1  # the first request's, on one line, cut
    assert len(ignored[0]) < 2 * SAFE_TEXT_LIMIT
    assert not [line for line in lines if line.startswith("ERROR payment")]
    assert "'loud\\r\\nERROR payment failed for everyone\\x1b[31m\\u2028\\x85lll" in ignored[0]
    assert len([line for line in lines if line.endswith("INFO charging")]) == 4


@pytest.mark.parametrize("crafted", [b"req\r\nINFO forged", b"\x1b[31mred", b"id\x00"])
def test_request_ids_a_server_lets_through_raw_are_replaced(
    sentry_events: CapturedEnvelopes, crafted: bytes
) -> None:
    """uvicorn refuses these bytes in a header; a server or proxy that does not must not get
    them echoed or tagged either."""
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    fastapi_sentry.install(app, dsn="http://k@127.0.0.1:9/1", traces_sample_rate=0.0)
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/boom", "raw_path": b"/boom", "query_string": b"",
        "root_path": "", "headers": [(b"x-request-id", crafted)], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        await app(scope, receive, send)  # type: ignore[arg-type]

    with pytest.raises(RuntimeError):
        asyncio.run(call())
    echoed = dict(sent[0]["headers"])[b"x-request-id"].decode("latin-1")
    assert re.fullmatch(r"[0-9a-f]{32}", echoed)
    (event,) = sentry_events.errors
    assert event["tags"]["request_id"] == echoed
