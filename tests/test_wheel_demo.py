"""The demo from a wheel, as someone who found the package on an index runs it.

The wheel is built from this checkout and installed into a fresh virtualenv outside the repository;
the demo runs from an empty folder with nothing of the checkout on the path. pip takes packages from
the index the machine is configured with (and its cache), as for any other install.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from fastapi_sentry._cli.demo import MISSING_EXTRA
from tests.e2e_support import REPO_ROOT
from tests.test_e2e_demo import assert_demo_issues

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MISSING_EXTRA_HINT = MISSING_EXTRA.split("; ", 1)[1]


def _env() -> dict[str, str]:
    """The test's environment without the checkout, the test venv or any Sentry or shop setting."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SENTRY_", "SHOP_"))
        and name not in ("DATABASE_URL", "REDIS_URL", "PYTHONPATH", "VIRTUAL_ENV")
    }


def _run(argv: Sequence[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _check(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _processes_running_from(directory: Path) -> dict[int, str]:
    """Live processes started from `directory` (the venv), by pid: none may outlive the demo."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if str(directory) in cmdline and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def test_pip_install_inbox_extra_then_demo_in_an_empty_folder(tmp_path: Path) -> None:
    dist, venv, empty = tmp_path / "dist", tmp_path / "venv", tmp_path / "empty"
    empty.mkdir()
    assert not tmp_path.resolve().is_relative_to(REPO_ROOT)

    _check(
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, REPO_ROOT], empty, 300)
    )
    (wheel,) = dist.glob("fastapi_sentry-*.whl")
    _check(_run([sys.executable, "-m", "venv", venv], empty, 120))
    python = venv / "bin" / "python"
    demo: list[str | Path] = [venv / "bin" / "fastapi-sentry", "demo", "--no-wait"]

    # Without the extra, the demo says which one to install instead of failing on an import.
    _check(_run([python, "-m", "pip", "install", "--quiet", wheel], empty, 300))
    bare = _run(demo, empty, 60)
    assert bare.returncode == 2, bare.stdout + bare.stderr
    assert MISSING_EXTRA_HINT in bare.stderr
    assert bare.stdout == ""

    _check(_run([python, "-m", "pip", "install", "--quiet", f"{wheel}[inbox]"], empty, 600))
    # the shop (code, static files) comes from the installed package, not from the checkout
    located = _check(
        _run(
            [
                python,
                "-c",
                "import importlib.resources as r, fastapi_sentry.examples.shop.app as a; "
                "print(a.__file__); "
                "print(r.files('fastapi_sentry.examples.shop').joinpath('static/robots.txt'))",
            ],
            empty,
            60,
        )
    ).split()
    for path in map(Path, located):
        assert path.is_file(), located
        assert path.is_relative_to(venv), located

    result = _run(demo, empty, 180)
    left = _processes_running_from(venv)
    for pid in left:  # the test itself leaves nothing behind, whatever the demo did
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert_demo_issues(_check(result))
    assert list(empty.iterdir()) == []
    assert left == {}
