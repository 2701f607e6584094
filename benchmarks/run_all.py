"""Run every benchmark in turn (`make bench`, about 45 min): overhead, scrubbing, inbox ingest.

Each prints its own table (speed beside peak RSS) and keeps its raw JSON where it says. They run one
after another, never together: they measure the same two cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    ["bench_overhead.py"],
    ["bench_inprocess.py"],
    ["bench_inprocess.py", "--instructions"],  # the README's figures for the request path
    ["bench_scrubbing.py"],
    ["bench_inbox_ingest.py", "--senders", "4", "8", "16", "--seconds", "8"],
)


def main() -> int:
    failed = []
    for command in BENCHMARKS:
        print(f"\n=== {' '.join(command)} ===", flush=True)
        result = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], check=False)
        if result.returncode != 0:
            failed.append(command[0])
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
