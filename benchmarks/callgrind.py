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
    found = _TOTAL.search(done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no total for {list(argv)}: {done.stderr[-1000:]}")
    return int(found.group(1))
