"""Process helpers for the end-to-end tests: start, wait for, and always stop real processes.

Each process runs in its own session (process group), with its output in a log file, so that a
failing test can show what every process printed and stopping it also stops its children (the
Celery prefork pool).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent

T = TypeVar("T")


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The test's environment without any Sentry or shop settings, plus `extra`.

    The repository root goes on PYTHONPATH: the example service is imported from the checkout.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SENTRY_", "SHOP_")) and name not in ("DATABASE_URL", "REDIS_URL")
    }
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Process:
    """A child process with its output in `log_path`; `stop()` ends it and its group."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            self.argv,
            env=dict(env),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self, tail: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-tail:]

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (a graceful stop: uvicorn and Celery flush Sentry), then SIGKILL the group."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        # the group too: a prefork child must not outlive its parent
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._log.close()
        return self.popen.returncode

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


def wait_until(
    check: Callable[[], T | None], timeout: float, what: str, processes: Sequence[Process] = ()
) -> T:
    """Poll `check` until it returns something other than None/False; fail with the logs."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        dead = [p for p in processes if not p.alive()]
        if dead or time.monotonic() > deadline:
            reason = f"{', '.join(p.name for p in dead)} exited" if dead else f"{timeout} s passed"
            raise AssertionError(f"{what}: not reached ({reason}).\n{logs(processes)}")
        time.sleep(0.1)


def wait_http(url: str, timeout: float, processes: Sequence[Process]) -> None:
    """Wait until `url` answers at all (any status)."""

    def answers() -> bool:
        try:
            httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            return False
        return True

    wait_until(answers, timeout, f"GET {url}", processes)


def wait_for_log(process: Process, text: str, timeout: float) -> None:
    wait_until(
        lambda: text in process.output(tail=200_000),
        timeout,
        f"{text!r} in the log of {process.name}",
        [process],
    )


def logs(processes: Sequence[Process]) -> str:
    return "\n".join(
        f"----- {p.name} (pid {p.pid}, exit {p.popen.poll()}) -----\n{p.output()}"
        for p in processes
    )


def uvicorn_argv(target: str, port: int, *, factory: bool = True) -> list[str]:
    argv = [PYTHON, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--no-access-log", "--log-level", "warning"]
    if factory:
        argv.append("--factory")
    return argv


def celery_argv(app: str, *args: str) -> list[str]:
    return [str(BIN / "celery"), "-A", app, *args]
