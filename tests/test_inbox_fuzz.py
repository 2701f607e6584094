"""Fuzzed envelopes, headers and encodings never get a 500, a hang or a dead server.

The first two tests parse and post a few hundred generated envelopes. The ones after them are the
10,000-case fuzz over real HTTP: one inbox for the module, one keep-alive client with a timeout (a
hang fails the case, a crash fails every case after it), and afterwards the store is checked:
every event acknowledged with 200 is stored, and no event of a refused request is.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import sqlite3
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import brotli
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi_sentry.inbox import InboxServer
from fastapi_sentry.inbox._envelope import parse_envelope
from fastapi_sentry.inbox._errors import InboxError
from fastapi_sentry.inbox._ingest import records_from_envelope
from tests.inbox_support import auth_headers, error_event, running_inbox

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
def module_inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InboxServer]:
    """Not the shared per-test inbox: hypothesis runs the test body many times per fixture."""
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
    module_inbox: InboxServer, body: bytes, encoding: str, lie: bool, endpoint: str, auth: str
) -> None:
    assert module_inbox.project is not None
    sent = body if lie else encode(body, encoding)  # lie: header says compressed, body is not
    key = {"good": module_inbox.project.public_key, "none": ""}.get(auth, auth)
    headers = {"Content-Encoding": encoding}
    if key:
        headers["X-Sentry-Auth"] = f"Sentry sentry_key={key}"
    path = "/stream" if endpoint == "stream" else f"/api/{module_inbox.project.id}/{endpoint}/"
    response = httpx.post(module_inbox.url + path, content=sent, headers=headers, timeout=10)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert response.json()["detail"]
    alive = httpx.post(
        f"{module_inbox.url}/api/{module_inbox.project.id}/envelope/?sentry_key={module_inbox.project.public_key}",
        content=error_event(),
        timeout=10,
    )
    assert alive.status_code == 200


# --- the 10,000-case fuzz over HTTP ---------------------------------------------------------

ALLOWED = frozenset({200, 400, 401, 403, 404, 413, 415, 429})
REQUEST_TIMEOUT = 10.0
ID = "@" * 32  # a fresh uuid4 hex (same length) per case, so ids never repeat across cases
HEADER_ID = "#" * 32  # the envelope header's event_id: fresh too, but no event of its own

# 6,000 + 2,500 + 1,500 = 10,000 cases
ENVELOPE_CASES = 6000
REQUEST_CASES = 2500
ENCODING_CASES = 1500


def fuzz(cases: int) -> settings:
    """Fixed cases (derandomized, no example database written into the checkout)."""
    return settings(
        max_examples=cases,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


@dataclass
class Ledger:
    """What the fuzz sent and what the inbox answered, for the checks against the store."""

    acknowledged: set[str] = field(default_factory=set)  # pristine ids and ids answered with 200
    refused: set[str] = field(default_factory=set)  # every id placed in a refused request
    statuses: dict[int, int] = field(default_factory=dict)
    cases: int = 0


@dataclass
class Target:
    inbox: InboxServer
    client: httpx.Client
    ledger: Ledger
    other_project: int
    other_key: str

    @property
    def project_id(self) -> int:
        assert self.inbox.project is not None
        return self.inbox.project.id

    @property
    def key(self) -> str:
        assert self.inbox.project is not None
        return self.inbox.project.public_key


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    db = tmp_path_factory.mktemp("fuzz") / "inbox.db"
    with InboxServer(db) as inbox, httpx.Client(base_url=inbox.url) as client:
        assert inbox.store is not None
        other = inbox.store.create_project("fuzz-other")
        yield Target(inbox, client, Ledger(), other.id, other.public_key)


def send(
    target: Target,
    body: bytes,
    *,
    ids: list[str],
    pristine: bool,
    headers: dict[str, str] | None = None,
    path: str | None = None,
) -> httpx.Response:
    """POST one case and check the answer; `pristine` cases must be accepted."""
    if headers is None:
        headers = auth_headers(target.key)
    url = path or f"/api/{target.project_id}/envelope/"
    try:
        response = target.client.post(
            url,
            content=body,
            # bytes, stripped: httpx refuses non-ASCII text and edge whitespace in a header value
            headers={k.encode(): v.strip(" \t").encode("latin-1") for k, v in headers.items()},
            timeout=REQUEST_TIMEOUT,
        )
    except httpx.TimeoutException as exc:
        pytest.fail(f"the inbox did not answer within {REQUEST_TIMEOUT} s: {exc!r}")
    ledger = target.ledger
    ledger.cases += 1
    ledger.statuses[response.status_code] = ledger.statuses.get(response.status_code, 0) + 1
    # Starlette redirects a doubled trailing slash to the canonical path: a clear answer too
    allowed = ALLOWED | {307} if url.split("?")[0].endswith("//") else ALLOWED
    assert response.status_code in allowed, (response.status_code, response.text[:500])
    if pristine:
        assert response.status_code == 200, response.text[:500]
        ledger.acknowledged.update(ids)
    elif response.status_code != 200:
        ledger.refused.update(ids)
    if response.status_code == 200 and "id" in response.json():
        ledger.acknowledged.add(response.json()["id"])  # whatever the case, "id" means stored
    if response.status_code not in (200, 307):
        problem = response.json()  # a refusal is JSON that says what is wrong
        assert isinstance(problem, dict)
        assert problem, response.text
    return response


def fill_ids(template: bytes) -> tuple[bytes, list[str]]:
    """Put fresh ids in place of the placeholders; the ids of the events, in order."""
    template = template.replace(HEADER_ID.encode(), uuid.uuid4().hex.encode())
    ids: list[str] = []
    while ID.encode() in template:
        new = uuid.uuid4().hex
        ids.append(new)
        template = template.replace(ID.encode(), new.encode(), 1)
    return template, ids


header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
)


# --- strategies -----------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
fuzz_json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
fuzz_item_types = st.sampled_from(
    [
        "event",
        "transaction",
        "check_in",
        "session",
        "sessions",
        "client_report",
        "log",
        "attachment",
        "profile",
        "replay_event",
        "statsd",
        "span",
        "trace_metric",
        "feedback",
        "user_report",
        "mystery",
        "",
    ]
)


def good_event_item() -> bytes:
    """A sentry-sdk shaped error event item (header and payload lines) with an id placeholder."""
    body = error_event(value="fuzz")
    lines = body.split(b"\n")
    payload = json.loads(lines[2])
    payload["event_id"] = ID
    data = json.dumps(payload).encode()
    return json.dumps({"type": "event", "length": len(data)}).encode() + b"\n" + data


@st.composite
def random_items(draw: st.DrawFn) -> bytes:
    kind = draw(fuzz_item_types)
    payload_value = draw(fuzz_json_values)
    if isinstance(payload_value, dict) and draw(st.booleans()):
        payload_value["event_id"] = ID
    payload = json.dumps(payload_value).encode()
    headers: dict[str, Any] = {"type": kind}
    if draw(st.booleans()):
        headers["length"] = len(payload)
    headers.update(
        draw(
            st.dictionaries(
                st.sampled_from(["content_type", "filename", "x"]), json_scalars, max_size=2
            )
        )
    )
    return json.dumps(headers).encode() + b"\n" + payload


def apply_mutation(data: bytes, mutation: tuple[str, int, bytes]) -> bytes:
    kind, position, junk = mutation
    at = position % (len(data) + 1)
    if kind == "truncate":
        return data[:at]
    if kind == "insert":
        return data[:at] + junk + data[at:]
    if kind == "overwrite":
        return data[:at] + junk + data[at + len(junk) :]
    if kind == "delete":
        return data[:at] + data[at + 1 + position % 7 :]
    if kind == "newlines":
        return data.replace(b"\n", b"\n" * (1 + position % 3), 1 + position % 4)
    if kind == "no-newlines":
        return data.replace(b"\n", b"", 1 + position % 3)
    if kind == "length":
        lengths = [b"-1", b"0", b"1e3", b'"12"', b"true", b"null", b"99999999999", b"3.5", b"[]"]
        return data.replace(
            b'"length": ', b'"length": ' + lengths[position % len(lengths)] + b', "was": ', 1
        )
    if kind == "nest":
        depth = 200 + position % 800
        return data.replace(b'"fuzz"', b"[" * depth + b"1" + b"]" * depth, 1)
    if kind == "utf16":
        return data.decode("latin-1").encode("utf-16")
    if kind == "double":
        return data + data
    if kind == "big":
        size = (1 << 20) + position % 4096  # just over the 1 MiB item limit after decompression
        return data.replace(b'"fuzz"', json.dumps("x" * size).encode(), 1)
    raise AssertionError(kind)


mutations = st.tuples(
    st.sampled_from(
        [
            "truncate",
            "insert",
            "overwrite",
            "delete",
            "newlines",
            "no-newlines",
            "length",
            "nest",
            "utf16",
            "double",
            "big",
        ]
    ),
    st.integers(min_value=0, max_value=10_000),
    st.binary(min_size=1, max_size=40)
    | st.sampled_from([b"\x00", b"\xff\xfe", b"{", b"}\n", b"\n\n", b'"']),
)


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> tuple[bytes, bool]:
    """An envelope template and whether it is pristine (a good event and nothing else)."""
    header: dict[str, Any] = {}
    if draw(st.booleans()):
        header["event_id"] = HEADER_ID
    if draw(st.booleans()):
        header["sent_at"] = draw(st.sampled_from(["2026-01-01T00:00:00Z", "yesterday", 5, None]))
    parts = [json.dumps(header).encode()]
    goods = draw(st.integers(min_value=0, max_value=2))
    parts += [good_event_item() for _ in range(goods)]
    extras = draw(st.lists(random_items(), max_size=3))
    parts += extras
    data = b"\n".join(parts) + draw(st.sampled_from([b"\n", b"", b"\n\n"]))
    applied = draw(st.lists(mutations, max_size=3))
    for mutation in applied:
        data = apply_mutation(data, mutation)
    return data, goods > 0 and not extras and not applied


# --- the cases ------------------------------------------------------------------------------------


@pytest.mark.slow
@fuzz(ENVELOPE_CASES)
@given(case=mutated_envelopes())
def test_mutated_envelopes_never_break_the_inbox(target: Target, case: tuple[bytes, bool]) -> None:
    template, pristine = case
    body, ids = fill_ids(template)
    send(target, body, ids=ids, pristine=pristine)


@st.composite
def requests(draw: st.DrawFn, target_key: str) -> tuple[dict[str, str], str, bool]:
    """Headers, a path and whether the request is authorised for the default project."""
    headers = {
        "Content-Type": draw(
            st.sampled_from(["application/x-sentry-envelope", "text/plain", "", "application/json"])
        )
    }
    auth = draw(
        st.sampled_from(
            [
                "good",
                "none",
                "wrong",
                "other",
                "query",
                "authorization",
                "malformed",
                "long",
                "random",
            ]
        )
    )
    good = auth in ("good", "query", "authorization")
    if auth == "good":
        headers["X-Sentry-Auth"] = f"Sentry sentry_key={target_key}, sentry_version=7"
    elif auth == "wrong":
        headers["X-Sentry-Auth"] = "Sentry sentry_key=0000, sentry_version=7"
    elif auth == "other":
        headers["X-Sentry-Auth"] = "Sentry sentry_key=@@OTHER@@, sentry_version=7"
    elif auth == "authorization":
        headers["Authorization"] = f"Sentry sentry_key={target_key}"
    elif auth == "malformed":
        headers["X-Sentry-Auth"] = draw(
            st.sampled_from(["Sentry", "sentry_key", "Sentry ,,,=", "=", "Sentry sentry_key="])
        )
    elif auth == "long":
        headers["X-Sentry-Auth"] = "Sentry sentry_key=" + "k" * draw(st.integers(100, 12_000))
    elif auth == "random":
        headers["X-Sentry-Auth"] = draw(header_text)
    extra = draw(
        st.dictionaries(
            st.sampled_from(["X-Forwarded-For", "User-Agent", "X-Junk", "Content-Type"]),
            header_text,
            max_size=2,
        )
    )
    headers.update(extra)
    project = draw(
        st.sampled_from(
            ["own", "other", "999999", "abc", "-1", "0", "9" * 30, "%2F", "own/../own", "1.0"]
        )
    )
    slash = draw(st.sampled_from(["envelope/", "envelope", "store/", "envelope//"]))
    query = f"?sentry_key={target_key}" if auth == "query" else ""
    good = (
        good
        and project == "own"
        and slash in ("envelope/", "envelope")
        and "Content-Type" not in extra
    )
    return headers, f"/api/{project}/{slash}{query}", good


@pytest.mark.slow
@fuzz(REQUEST_CASES)
@given(data=st.data())
def test_odd_headers_auth_and_paths_get_clear_answers(target: Target, data: st.DataObject) -> None:
    headers, path, good = data.draw(requests(target.key))
    path = path.replace("/own/", f"/{target.project_id}/").replace(
        "/other/", f"/{target.other_project}/"
    )
    headers = {k: v.replace("@@OTHER@@", target.other_key) for k, v in headers.items()}
    template = b"{}\n" + good_event_item() + b"\n"
    body, ids = fill_ids(template)
    send(target, body, ids=ids, pristine=good, headers=headers, path=path)


def deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


CODECS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "deflate-raw": deflate_raw,
    "br": brotli.compress,
}
ACCEPTED_NAMES = {"gzip": {"gzip", "x-gzip"}, "deflate": {"deflate"}, "br": {"br"}}


@dataclass(frozen=True)
class Encoding:
    """How a case's body is compressed, what the header claims, and how the result is damaged."""

    codec: str
    declared: str
    twist: str
    at: int
    junk: bytes

    def apply(self, data: bytes) -> bytes:
        body = bytes(CODECS[self.codec](data))
        if self.twist == "truncate":
            return body[: self.at % max(len(body), 1)]
        if self.twist == "flip":
            at = self.at % len(body)
            return body[:at] + bytes([body[at] ^ (self.junk[0] or 1)]) + body[at + 1 :]
        if self.twist == "twice":
            return bytes(CODECS[self.codec](body))
        if self.twist == "multi" and self.codec == "gzip":
            return body + gzip.compress(b"\n")  # a second member: still a valid gzip stream
        if self.twist == "tail":
            return body + self.junk
        return body

    @property
    def clean(self) -> bool:
        """The body decodes to exactly what was compressed, under a name the inbox accepts."""
        family = self.codec.split("-")[0]
        named = self.declared.strip().lower() in ACCEPTED_NAMES[family]
        return named and self.twist in ("none", "multi")


encodings = st.builds(
    Encoding,
    codec=st.sampled_from(sorted(CODECS)),
    declared=st.sampled_from(
        [
            *("gzip", "deflate", "br", "identity", "GZIP", " gzip ", "x-gzip", "gzip, br"),
            *("compress", "zstd", "*", "", "identity;q=1", "br\t", "deflate-raw"),
        ]
    )
    | header_text,
    twist=st.sampled_from(["none", "none", "truncate", "flip", "twice", "multi", "tail"]),
    at=st.integers(min_value=0, max_value=100_000),
    junk=st.binary(min_size=1, max_size=20),
)


@pytest.mark.slow
@fuzz(ENCODING_CASES)
@given(
    encoding=encodings,
    junk=st.none() | st.binary(max_size=300),
    match=st.booleans(),
)
def test_encodings_and_junk_compression_get_clear_answers(
    target: Target, encoding: Encoding, junk: bytes | None, match: bool
) -> None:
    if match:  # name the codec actually used, so good bodies must get through
        encoding = Encoding(
            encoding.codec, encoding.codec.split("-")[0], encoding.twist, encoding.at, encoding.junk
        )
    template = b"{}\n" + good_event_item() + b"\n" if junk is None else junk
    data, ids = fill_ids(template)
    headers = {**auth_headers(target.key), "Content-Encoding": encoding.declared}
    pristine = junk is None and encoding.clean
    send(target, encoding.apply(data), ids=ids, pristine=pristine, headers=headers)


def stored_ids(db_path: str) -> set[str]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM events")}


@pytest.mark.slow
def test_after_the_fuzz_the_inbox_still_works_and_the_store_matches(target: Target) -> None:
    body, ids = fill_ids(b"{}\n" + good_event_item() + b"\n")
    response = send(target, body, ids=ids, pristine=True)
    assert response.json() == {"id": ids[0]}
    stored = stored_ids(target.inbox.db_path)
    ledger = target.ledger
    missing = ledger.acknowledged - stored
    assert not missing, f"{len(missing)} acknowledged events are not stored"
    leaked = ledger.refused & stored
    assert not leaked, f"{len(leaked)} events of refused requests were stored"
    print(
        f"\n{ledger.cases} cases, statuses {dict(sorted(ledger.statuses.items()))}, "
        f"{len(ledger.acknowledged)} acknowledged event ids, all stored, "
        f"{len(ledger.refused)} ids in refused requests, none stored"
    )
