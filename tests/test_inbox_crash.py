"""The inbox as users run it (`python -m fastapi_sentry inbox`) under a kill -9 and a decompression
bomb: nothing it acknowledged is lost, and a bomb costs it neither time nor memory."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import brotli
import httpx
import pytest

from tests.fault_support import REPO, child_env, memory_kb
from tests.inbox_support import auth_headers, error_event, gzipped

pytestmark = pytest.mark.slow

BURST = 5000
SENDERS = 6
GIB = 1 << 30
MIB = 1 << 20
BOMB_SECONDS = 5.0
BOMB_MEMORY_KB = 100 * 1024


@dataclass
class Inbox:
    proc: subprocess.Popen[str]
    url: str
    project_id: str
    key: str

    @property
    def envelope_url(self) -> str:
        return f"{self.url}/api/{self.project_id}/envelope/"


@contextlib.contextmanager
def inbox_process(db: Path) -> Iterator[Inbox]:
    """`python -m fastapi_sentry inbox --port 0 --db DB`, read back from what the CLI prints."""
    argv = [sys.executable, "-m", "fastapi_sentry", "inbox", "--port", "0", "--db", str(db)]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=child_env({"PYTHONUNBUFFERED": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        printed = ""
        deadline = time.monotonic() + 20
        match = None
        while match is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            printed += line
            match = re.search(r"SENTRY_DSN=http://(\w+)@(127\.0\.0\.1:\d+)/(\d+)", printed)
        assert match is not None, f"the inbox printed no DSN: {printed!r}"
        key, host, project_id = match.groups()
        yield Inbox(proc, f"http://{host}", project_id, key)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def burst_bodies(count: int) -> list[tuple[str, bytes]]:
    """`count` gzip envelopes shaped like sentry-sdk's, each with its own event id."""
    bodies = []
    for index in range(count):
        event_id = uuid.uuid4().hex
        body = error_event(value=f"burst {index}", event_id=event_id)
        bodies.append((event_id, gzipped(body)))
    return bodies


def test_kill_9_mid_burst_loses_no_acknowledged_event(tmp_path: Path) -> None:
    db = tmp_path / "inbox.db"
    bodies = burst_bodies(BURST)
    acknowledged: list[str] = []
    refused: list[int] = []
    lock = threading.Lock()
    next_body = iter(bodies)

    with inbox_process(db) as inbox:
        headers = {**auth_headers(inbox.key), "Content-Encoding": "gzip"}

        def sender() -> None:
            with httpx.Client(headers=headers, timeout=10) as client:
                for event_id, body in next_body:
                    try:
                        response = client.post(inbox.envelope_url, content=body)
                    except httpx.HTTPError:
                        return  # killed: what was not answered 200 was never promised
                    with lock:
                        if response.status_code == 200:
                            assert response.json() == {"id": event_id}
                            acknowledged.append(event_id)
                        else:
                            refused.append(response.status_code)

        threads = [threading.Thread(target=sender, daemon=True) for _ in range(SENDERS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < BURST // 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(inbox.proc.pid, signal.SIGKILL)
        killed_at = len(acknowledged)
        inbox.proc.wait(10)
        for thread in threads:
            thread.join(15)
        assert not any(thread.is_alive() for thread in threads)

    assert not refused, f"statuses other than 200 during the burst: {sorted(set(refused))}"
    assert BURST // 2 <= killed_at < BURST, "the kill did not land mid-burst"
    with inbox_process(db) as restarted:
        response = httpx.get(
            f"{restarted.url}/api/0/projects/{restarted.project_id}/events/",
            params={"limit": "10000"},
            timeout=30,
        )
        assert response.status_code == 200
        readable = {event["eventID"] for event in response.json()}
        lost = [event_id for event_id in acknowledged if event_id not in readable]
        alive = httpx.post(
            restarted.envelope_url,
            content=error_event(value="after the restart"),
            headers=auth_headers(restarted.key),
            timeout=10,
        )
    assert lost == [], f"{len(lost)} of {len(acknowledged)} acknowledged events were lost"
    assert alive.status_code == 200
    print(
        f"\nkill -9 after {killed_at} of {BURST} acknowledged; {len(acknowledged)} acknowledged "
        f"in all, {len(readable)} readable after the restart, 0 lost"
    )


# --- decompression bombs ----------------------------------------------------------------------


def zeros_compressed(compress: Callable[[bytes], bytes], flush: Callable[[], bytes]) -> bytes:
    """1 GiB of zeros through a streaming compressor, a MiB at a time (never 1 GiB in memory)."""
    chunk = bytes(MIB)
    parts = [compress(chunk) for _ in range(GIB // MIB)]
    parts.append(flush())
    return b"".join(parts)


def gzip_bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return zeros_compressed(compressor.compress, compressor.flush)


def deflate_bomb() -> bytes:
    compressor = zlib.compressobj(9)
    return zeros_compressed(compressor.compress, compressor.flush)


def brotli_bomb() -> bytes:
    compressor = brotli.Compressor(quality=5)
    return zeros_compressed(compressor.process, compressor.finish)


BOMBS = {"gzip": gzip_bomb, "deflate": deflate_bomb, "br": brotli_bomb}


def post_raw(url: str, path: str, headers: dict[str, str], body: bytes, timeout: float) -> int:
    """POST over a plain socket and return the status, even if the server answers and closes
    before the body is all sent (an HTTP client library would report only the broken pipe)."""
    host, port = url.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:

        def send() -> None:
            with contextlib.suppress(OSError):
                sock.sendall(head.encode() + body)

        writer = threading.Thread(target=send, daemon=True)
        writer.start()
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
        writer.join(timeout)
    match = re.match(rb"HTTP/1\.1 (\d{3})", answer)
    assert match is not None, f"no HTTP answer: {answer[:200]!r}"
    return int(match.group(1))


@pytest.mark.parametrize("encoding", sorted(BOMBS))
def test_a_1_gib_decompression_bomb_is_refused_quickly_with_memory_bounded(
    tmp_path: Path, encoding: str
) -> None:
    bomb = BOMBS[encoding]()
    assert len(bomb) < 2 * MIB  # the point of a bomb: small on the wire
    with inbox_process(tmp_path / "inbox.db") as inbox:
        headers = {**auth_headers(inbox.key), "Content-Encoding": encoding}
        warm = httpx.post(
            inbox.envelope_url,
            content=gzip.compress(error_event()),
            headers={**auth_headers(inbox.key), "Content-Encoding": "gzip"},
            timeout=10,
        )
        assert warm.status_code == 200
        peak_before = memory_kb(inbox.proc.pid, "VmHWM")
        started = time.monotonic()
        status = post_raw(
            inbox.url, f"/api/{inbox.project_id}/envelope/", headers, bomb, BOMB_SECONDS * 4
        )
        seconds = time.monotonic() - started
        peak_after = memory_kb(inbox.proc.pid, "VmHWM")
        alive = httpx.post(
            inbox.envelope_url, content=error_event(), headers=auth_headers(inbox.key), timeout=10
        )
    assert status == 413
    assert seconds < BOMB_SECONDS
    assert peak_after - peak_before < BOMB_MEMORY_KB, (peak_before, peak_after)
    assert alive.status_code == 200
    print(
        f"\n{encoding} bomb: {len(bomb) / MIB:.2f} MiB on the wire, 1 GiB inflated; {status} in "
        f"{seconds:.2f} s; peak RSS {peak_before / 1024:.1f} -> {peak_after / 1024:.1f} MB"
    )
