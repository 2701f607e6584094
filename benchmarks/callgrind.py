"""One way to count a Python child's CPU instructions: valgrind's callgrind, whose totals do not
move with the machine's load the way wall time does on a shared machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

_TOTAL = re.compile(r"Collected : (\d+)")
#: valgrind's own lines on stderr start with `==<pid>==`; the rest is the child's.
_VALGRIND_LINE = re.compile(r"==\d+==")
_DSN_KEY = re.compile(r"(\w+://)[^@/\s]+@")


def count_instructions(
    argv: Sequence[str | Path], *, pythonpath: Sequence[str | Path] = (), timeout: float = 1800
) -> int:
    """Instructions callgrind counts for `python <argv>`, start-up included; `pythonpath` goes
    first on the child's path (a source tree of another revision, say)."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    command += [str(arg) for arg in argv]
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if done.returncode != 0:
        # a child that fails after its work still gets a total: it must not pass for a result
        how = (
            f"was killed by signal {-done.returncode}"
            if done.returncode < 0
            else f"exited with {done.returncode}"
        )
        raise RuntimeError(
            f"The child {_shown(argv)} {how} under callgrind; its stderr ends:\n"
            f"{_child_stderr(done.stderr)[-1000:]}"
        )
    found = _TOTAL.search(done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no total for {_shown(argv)}: {done.stderr[-1000:]}")
    return int(found.group(1))


def _shown(argv: Sequence[str | Path]) -> list[str]:
    """The child's arguments for a message, with any DSN's key masked."""
    return [_DSN_KEY.sub(r"\1***@", str(arg)) for arg in argv]


def _child_stderr(stderr: str) -> str:
    """What the child itself wrote to stderr, without valgrind's lines around it."""
    return "\n".join(line for line in stderr.splitlines() if not _VALGRIND_LINE.match(line))
