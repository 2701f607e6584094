"""An app module served by the plain `uvicorn module:app` command, as a user starts it.

Default logging, no `--log-config`: the case where the app's own loggers have no handler. Its
stderr is kept in a file and returned complete once the process has stopped (SIGTERM: uvicorn's
graceful stop, where `install()` flushes).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from tests.support.ports import free_port

UVICORN = Path(sys.executable).parent / "uvicorn"
SRC = Path(__file__).resolve().parents[2] / "src"


class PlainUvicorn:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], stderr: Path) -> None:
        self.url = url
        self.proc = proc
        self._stderr = stderr

    def stop(self) -> str:
        """Stop gracefully and return everything the process wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self._stderr.read_text(errors="replace")


@contextlib.contextmanager
def plain_uvicorn(
    target: str, *, cwd: Path, env: Mapping[str, str], pythonpath: list[Path] | None = None
) -> Iterator[PlainUvicorn]:
    """`uvicorn <target>` in `cwd`, with `pythonpath` (default: `cwd` and this checkout's src)."""
    port = free_port()
    child_env = {
        k: v for k, v in os.environ.items() if not k.startswith("SENTRY_") and k != "ENVIRONMENT"
    }
    paths = pythonpath if pythonpath is not None else [cwd, SRC]
    child_env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    child_env.update(env)
    stderr = cwd / f"uvicorn-{port}.stderr"
    argv = [str(UVICORN), target, "--host", "127.0.0.1", "--port", str(port)]
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    running = PlainUvicorn(f"http://127.0.0.1:{port}", proc, stderr)
    try:
        deadline = time.monotonic() + 60  # imports alone have taken 15 s on a loaded machine
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"uvicorn exited early:\n{running.stop()}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(running.url + "/", timeout=1)
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"uvicorn did not answer:\n{running.stop()}")
            time.sleep(0.05)
        yield running
    finally:
        running.stop()
