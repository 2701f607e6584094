"""`fastapi-sentry demo` as a user runs it: in a real process, from the checkout's virtualenv.

`tests/test_wheel_demo.py` runs the same demo from a wheel and checks the same issues with
`assert_demo_issues`.
"""

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


#: The issues the demo's steps create, by title prefix, with their event counts.
DEMO_ISSUES = {
    "UnsupportedHashError": 1,
    "ShippingRateMissingError": 1,
    "Slow operation: sales report": 1,
    "External API error: payments": 1,
    "External API error: mail": 3,
    "Product stock is low": 1,
    "ReceiptNotSentError": 1,
}


def assert_demo_issues(out: str) -> None:
    """The demo's printout shows every step ran and exactly the expected issues."""
    assert "[8/8]" in out
    assert re.search(r"unhandled error .* -> 500", out)
    assert re.search(r"validation error .* -> 422", out)
    url = re.search(r"issues in the inbox at (http://127\.0\.0\.1:\d+):", out)
    assert url, out
    issues = {
        title.strip(): int(count)
        for count, title in re.findall(r"^\s+(\d+)x\s+\w+\s+(.+)$", out, re.MULTILINE)
    }
    for prefix, count in DEMO_ISSUES.items():
        matching = [c for title, c in issues.items() if title.startswith(prefix)]
        assert matching == [count], (prefix, issues)
    assert len(issues) == len(DEMO_ISSUES), issues


def test_demo_drives_every_scenario_and_prints_the_issues(tmp_path: Path) -> None:
    # an empty folder and no checkout on PYTHONPATH: the shop comes from the installed package
    env = child_env({})
    del env["PYTHONPATH"]
    result = subprocess.run(
        [*DEMO, "--no-wait"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_demo_issues(result.stdout)
    assert list(tmp_path.iterdir()) == []


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
