"""`fastapi-sentry demo` as a user runs it: from the repository root, in a real process."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from fastapi_sentry._cli.demo import STOP_HINT
from tests.e2e_support import BIN, REPO_ROOT, child_env

pytestmark = pytest.mark.slow

DEMO = [str(BIN / "fastapi-sentry"), "demo"]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        match = re.search(r"^PPid:\s+(\d+)$", status, re.MULTILINE)
        if match and int(match.group(1)) == pid:
            found.append(int(entry.name))
    return found


def _exists(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _read_until(process: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    """Output until it contains `marker`; fails with what was printed so far."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, min(left, 0.5)))
        chunk = os.read(fd, 65536) if ready else b""
        seen += chunk
        if (ready and not chunk) or left <= 0:
            pytest.fail(f"the demo never printed {marker!r}; it printed:\n{seen.decode()}")
    return seen.decode()


def _start_demo(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*DEMO, *args],
        cwd=REPO_ROOT,
        env=child_env({}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)
    if process.stdout is not None:
        process.stdout.close()


def _run_demo_to_the_end(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEMO, "--no-wait"],
        cwd=cwd,
        env=child_env({}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_drives_every_scenario_and_prints_the_issues() -> None:
    result = _run_demo_to_the_end(REPO_ROOT)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "[8/8]" in out
    assert re.search(r"unhandled error .* -> 500", out)
    assert re.search(r"validation error .* -> 422", out)
    url = re.search(r"issues in the inbox at (http://127\.0\.0\.1:\d+):", out)
    assert url, out
    issues = {
        title.strip(): int(count)
        for count, title in re.findall(r"^\s+(\d+)x\s+\w+\s+(.+)$", out, re.MULTILINE)
    }
    prefixes = {
        "UnsupportedHashError": 1,
        "ShippingRateMissingError": 1,
        "Slow operation: sales report": 1,
        "External API error: payments": 1,
        "External API error: mail": 3,
        "Product stock is low": 1,
        "ReceiptNotSentError": 1,
    }
    for prefix, count in prefixes.items():
        matching = [c for title, c in issues.items() if title.startswith(prefix)]
        assert matching == [count], (prefix, issues)
    assert len(issues) == len(prefixes), issues


def test_demo_outside_a_checkout_says_where_to_run_it(tmp_path: Path) -> None:
    result = _run_demo_to_the_end(tmp_path)
    assert result.returncode == 2
    assert "run `fastapi-sentry demo` from the repository root" in result.stderr


def test_ctrl_c_in_the_final_wait_stops_the_inbox_and_exits_0() -> None:
    process = _start_demo()
    try:
        seen = _read_until(process, STOP_HINT, timeout=90)
        inbox = re.search(r"Inbox listening on (http://\S+)", seen)
        assert inbox
        assert httpx.get(inbox.group(1) + "/api/0/projects/", timeout=5).status_code == 200
        # the shop has been stopped already; only the inbox is left
        assert [pid for pid in _children(process.pid) if _exists(pid)] == []
        process.send_signal(signal.SIGINT)
        status = process.wait(30)
    finally:
        _kill(process)
    assert status == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(inbox.group(1), timeout=2)


def test_ctrl_c_mid_run_stops_the_shop_and_the_inbox() -> None:
    process = _start_demo()
    try:
        seen = _read_until(process, "[1/8]", timeout=90)
        inbox = re.search(r"Inbox listening on (http://\S+)", seen)
        assert inbox
        children = _children(process.pid)
        assert children, "the demo should be running the shop as a child process"
        process.send_signal(signal.SIGINT)
        status = process.wait(30)
    finally:
        _kill(process)
    assert status == 130
    assert [pid for pid in children if _exists(pid)] == []
    with pytest.raises(httpx.TransportError):
        httpx.get(inbox.group(1), timeout=2)
