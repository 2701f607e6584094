"""Run every benchmark in turn (`make bench`, about an hour): overhead, faults, in-process,
scrubbing, inbox ingest.

Each prints its own table (speed beside peak RSS) and writes its result file under
benchmarks/results/ through result_file.py. They run one after another, never together: they
measure the same two cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    ["bench_overhead.py"],
    ["bench_faults.py"],  # what a failing Sentry costs; the tests keep only the guarantees
    ["bench_inprocess.py"],
    ["bench_inprocess.py", "--instructions"],  # the README's figures for the request path
    ["bench_scrubbing.py"],
    ["bench_inbox_ingest.py", "--senders", "4", "8", "16", "--seconds", "8"],
    ["bench_relay_normalizer.py"],  # after the ingest run: it compares with that figure
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
