"""Fuzzed envelopes, headers and encodings never get a 500, a hang or a dead server."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import brotli
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi_sentry.inbox import InboxServer
from fastapi_sentry.inbox._envelope import parse_envelope
from fastapi_sentry.inbox._errors import InboxError
from fastapi_sentry.inbox._ingest import records_from_envelope
from tests.inbox_support import error_event, running_inbox

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.text(max_size=40),
        "message": json_values,
        "logentry": json_values,
        "exception": json_values,
        "fingerprint": json_values,
        "user": json_values,
        "level": json_values,
        "timestamp": json_values,
        "start_timestamp": json_values,
        "spans": json_values,
        "breadcrumbs": json_values,
        "tags": json_values,
        "contexts": json_values,
        "transaction": json_values,
    },
)
item_types = st.sampled_from(
    ["event", "transaction", "check_in", "session", "sessions", "client_report", "log"]
) | st.text(max_size=8)


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    lines = [json.dumps(draw(json_values)).encode()]
    for _ in range(draw(st.integers(0, 3))):
        payload = json.dumps(draw(event_like)).encode()
        if draw(st.booleans()):
            payload = draw(st.binary(max_size=64))
        headers: dict[str, object] = {"type": draw(item_types)}
        if draw(st.booleans()):
            headers["length"] = draw(st.integers(-2, len(payload) + 2) | st.just(len(payload)))
        lines.append(json.dumps(headers).encode())
        lines.append(payload)
    return b"\n".join(lines)


def encode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    if encoding == "br":
        return bytes(brotli.compress(body))
    return body


@given(body=envelopes())
@settings(max_examples=300, deadline=None)
def test_parsing_fails_only_with_inbox_errors(body: bytes) -> None:
    status = 200
    try:
        records_from_envelope(parse_envelope(body), 1_700_000_000.0)
    except InboxError as e:
        status = e.status_code
    assert 200 <= status < 500


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InboxServer]:
    with running_inbox(Path(tmp_path_factory.mktemp("fuzz"))) as server:
        yield server


@given(
    body=envelopes() | st.binary(max_size=200),
    encoding=st.sampled_from(["", "gzip", "deflate", "br", "identity", "zstd"]),
    lie=st.booleans(),
    endpoint=st.sampled_from(["envelope", "store", "stream"]),
    auth=st.sampled_from(["good", "none", "garbage"])
    | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30),
)
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_fuzzed_requests_never_get_a_500_and_the_server_stays_up(
    inbox: InboxServer, body: bytes, encoding: str, lie: bool, endpoint: str, auth: str
) -> None:
    assert inbox.project is not None
    sent = body if lie else encode(body, encoding)  # lie: header says compressed, body is not
    key = {"good": inbox.project.public_key, "none": ""}.get(auth, auth)
    headers = {"Content-Encoding": encoding}
    if key:
        headers["X-Sentry-Auth"] = f"Sentry sentry_key={key}"
    path = "/stream" if endpoint == "stream" else f"/api/{inbox.project.id}/{endpoint}/"
    response = httpx.post(inbox.url + path, content=sent, headers=headers, timeout=10)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert response.json()["detail"]
    alive = httpx.post(
        f"{inbox.url}/api/{inbox.project.id}/envelope/?sentry_key={inbox.project.public_key}",
        content=error_event(),
        timeout=10,
    )
    assert alive.status_code == 200
