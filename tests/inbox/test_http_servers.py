"""granian and uvicorn serve the inbox alike: the same answers, byte for byte where the app writes
them, for envelope POSTs (every Content-Encoding), refusals (auth, size) and the pages and API
that granian reaches through its ASGI bridge. Every request goes over a real socket."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import brotli
import httpx
import pytest

from fastapi_sentry.inbox import InboxServer
from fastapi_sentry.inbox._server import choose_server
from tests.inbox_support import auth_headers, envelope, event_item, gzipped, snapshot

SERVERS = ("granian", "uvicorn")
MIB = 1024 * 1024
#: Headers the app writes; the servers add their own (date, server) beside them.
APP_HEADERS = (
    "content-type",
    "access-control-allow-origin",
    "access-control-expose-headers",
    "connection",
    "set-cookie",
    "cache-control",
    "content-security-policy",
)


@pytest.fixture(params=SERVERS)
def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InboxServer]:
    with InboxServer(tmp_path / "inbox.db", server=request.param) as running:
        yield running


@pytest.fixture
def both(tmp_path: Path) -> Iterator[dict[str, InboxServer]]:
    """One inbox on each server, with the same token, for side-by-side answers."""
    with (
        InboxServer(tmp_path / "g.db", server="granian", token="tok") as granian,
        InboxServer(tmp_path / "u.db", server="uvicorn", token="tok") as uvicorn,
    ):
        yield {"granian": granian, "uvicorn": uvicorn}


def _url(inbox: InboxServer, path: str = "/api/{p}/envelope/") -> str:
    assert inbox.project is not None
    return inbox.url + path.format(p=inbox.project.id)


def _event(event_id: str) -> bytes:
    return envelope(event_item(event_id=event_id, message="hello"))


def _encode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzipped(body)
    if encoding == "deflate":
        return zlib.compress(body)
    if encoding == "br":
        return bytes(brotli.compress(body))
    return body


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate", "br"])
def test_an_envelope_is_stored_and_answered_with_its_id(inbox: InboxServer, encoding: str) -> None:
    assert inbox.project is not None
    event_id = uuid.uuid4().hex
    response = httpx.post(
        _url(inbox),
        content=_encode(_event(event_id), encoding),
        headers=auth_headers(inbox.project.public_key) | {"Content-Encoding": encoding},
    )
    assert response.status_code == 200, response.text
    assert response.content == b'{"id":"%s"}' % event_id.encode()
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    assert [e["event_id"] for e in inbox.events()] == [event_id]


def test_a_chunked_envelope_and_the_query_string_key_are_accepted(inbox: InboxServer) -> None:
    assert inbox.project is not None
    event_id = uuid.uuid4().hex
    body = gzipped(_event(event_id))
    response = httpx.post(
        _url(inbox, f"/api/{{p}}/envelope?sentry_key={inbox.project.public_key}"),
        content=iter([body[:10], body[10:]]),  # an iterator: sent chunked, no Content-Length
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert [e["event_id"] for e in inbox.events()] == [event_id]


def _answer(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.multi_items() if k in APP_HEADERS}
    return response.status_code, response.content, headers


def _side_by_side(
    both: dict[str, InboxServer], method: str, path: str, **kwargs: Any
) -> dict[str, tuple[int, bytes, dict[str, str]]]:
    answers = {}
    for name, inbox in both.items():
        with httpx.Client() as client:
            answers[name] = _answer(client.request(method, _url(inbox, path), **kwargs))
    return answers


REFUSALS = {
    "no key": {},
    "wrong key": {"X-Sentry-Auth": "Sentry sentry_key=" + "0" * 32},
}


@pytest.mark.parametrize("case", REFUSALS)
def test_auth_refusals_are_the_same_on_both_servers(
    both: dict[str, InboxServer], case: str
) -> None:
    answers = _side_by_side(
        both, "POST", "/api/{p}/envelope/", content=_event(uuid.uuid4().hex), headers=REFUSALS[case]
    )
    assert answers["granian"] == answers["uvicorn"]
    status, body, headers = answers["granian"]
    assert status == (401 if case == "no key" else 403)
    assert "detail" in json.loads(body)
    assert headers["connection"] == "close"
    for inbox in both.values():
        assert inbox.events() == []


def test_an_unknown_project_and_a_bad_envelope_are_refused_alike(
    both: dict[str, InboxServer],
) -> None:
    key = {"X-Sentry-Auth": f"Sentry sentry_key={'0' * 32}"}
    unknown = _side_by_side(both, "POST", "/api/999/envelope/", content=b"{}\n", headers=key)
    assert unknown["granian"] == unknown["uvicorn"]
    assert unknown["granian"][0] == 404
    bad = {}
    for name, inbox in both.items():
        assert inbox.project is not None
        response = httpx.post(
            _url(inbox), content=b"not json\n", headers=auth_headers(inbox.project.public_key)
        )
        bad[name] = _answer(response)
    assert bad["granian"] == bad["uvicorn"]
    assert bad["granian"][0] == 400


@pytest.mark.parametrize(
    "path",
    ["/?token=tok", "/", "/api/0/projects/", "/no-such-page/", "/performance/?token=tok"],
)
def test_pages_and_the_api_are_the_same_on_both_servers(
    both: dict[str, InboxServer], path: str
) -> None:
    headers = {"Authorization": "Bearer tok"} if path.startswith("/api/") else {}
    answers = _side_by_side(both, "GET", path, headers=headers)
    granian, uvicorn = answers["granian"], answers["uvicorn"]
    assert granian[0] == uvicorn[0]
    assert granian[2] == uvicorn[2]
    if path.startswith("/api/0/projects/"):
        # Each inbox has its own project key; the shape is what must agree.
        assert [set(p) for p in json.loads(granian[1])] == [set(p) for p in json.loads(uvicorn[1])]
    elif "token" not in path:
        assert granian[1] == uvicorn[1]
    expected = {"/?token=tok": 200, "/": 401, "/api/0/projects/": 200, "/no-such-page/": 404}
    assert granian[0] == expected.get(path, 200)
    if path == "/?token=tok":
        assert "fastapi_sentry_inbox_token=tok" in granian[2]["set-cookie"]


def test_a_preflight_and_the_store_endpoint_go_through_the_bridge(inbox: InboxServer) -> None:
    assert inbox.project is not None
    preflight = httpx.options(_url(inbox))
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
    event_id = uuid.uuid4().hex
    stored = httpx.post(
        _url(inbox, "/api/{p}/store/"),
        content=json.dumps({"event_id": event_id, "message": "via store"}),
        headers=auth_headers(inbox.project.public_key),
    )
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"id": event_id}
    assert [e["event_id"] for e in inbox.events("default")] == [event_id]


def _raw_post(inbox: InboxServer, head: dict[str, str], chunks: Iterable[bytes]) -> bytes:
    assert inbox.project is not None
    lines = f"POST /api/{inbox.project.id}/envelope/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    lines += "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", inbox.port), timeout=20) as sock:
        sock.sendall(lines.encode())
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the body ended
        answer = b""
        while more := sock.recv(65536):
            answer += more
    return answer


def test_a_declared_oversize_body_is_refused_with_413(inbox: InboxServer) -> None:
    assert inbox.project is not None
    before = snapshot(Path(inbox.db_path))
    head = auth_headers(inbox.project.public_key) | {"Content-Length": str(21 * MIB)}
    # no body at all: the answer must come from the header alone. (Bytes of a body the server
    # never reads make its close a reset, which can discard the answer before it is read.)
    answer = _raw_post(inbox, head, [])
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"the limit is 20971520 bytes (20 MiB)" in answer
    assert snapshot(Path(inbox.db_path)) == before


def test_a_chunked_oversize_body_is_refused_while_it_streams(inbox: InboxServer) -> None:
    assert inbox.project is not None
    before = snapshot(Path(inbox.db_path))
    sent = []

    def body() -> Iterator[bytes]:
        for _ in range(64):  # 64 MiB on offer; the server must stop reading at 20 MiB
            sent.append(MIB)
            yield b"%x\r\n" % MIB + b"x" * MIB + b"\r\n"

    head = auth_headers(inbox.project.public_key) | {"Transfer-Encoding": "chunked"}
    answer = _raw_post(inbox, head, body())
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"over 20971520 bytes" in answer
    assert sum(sent) < 64 * MIB, "the server read the whole body before refusing it"
    assert snapshot(Path(inbox.db_path)) == before


def test_choose_server_refuses_unknown_names_and_says_which_extra_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="'hypercorn' is not an HTTP server"):
        choose_server("hypercorn")
    assert choose_server("auto") == "granian"  # installed here (the dev extra)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "granian" else real(name)
    )
    assert choose_server("auto") == "uvicorn"
    with pytest.raises(ImportError, match=r"fastapi-sentry\[inbox-fast\]"):
        choose_server("granian")


SERVE = """
import json, sys
from fastapi_sentry.inbox import serve
def ready(info):
    print(json.dumps({"url": info.url, "key": info.project.public_key}), flush=True)
serve(host="127.0.0.1", port=0, db_path=sys.argv[1], token=None, on_ready=ready)
"""


def test_serve_runs_on_granian_by_default_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The CLI's path: ``serve()`` on a free port, one envelope stored, a clean exit."""
    command = [sys.executable, "-c", SERVE, str(tmp_path / "inbox.db")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            info = json.loads(process.stdout.readline())
            event_id = uuid.uuid4().hex
            response = httpx.post(
                f"{info['url']}/api/1/envelope/",
                content=_event(event_id),
                headers=auth_headers(info["key"]),
            )
            assert response.headers["server"] == "granian"
            assert response.json() == {"id": event_id}
        finally:
            process.terminate()
            assert process.wait(timeout=30) == 0
