"""`make bench`: the benchmarks behind issue 16's figures, then one side-by-side summary (~30 min).

    .venv/bin/python benchmarks/run_all.py           # the summary's set, ~30 min
    .venv/bin/python benchmarks/run_all.py --full    # and the rest (faults, timed runs...), ~1.5 h
    .venv/bin/python benchmarks/run_all.py --smoke   # tiny durations, files to a temp directory

Each benchmark prints its own table and writes its result file through result_file.py; they run
one after another, never together (they measure the same two cores): the wall-clock ones (HTTP,
inbox ingest) first, then the instruction counts, which other load does not move. Then summary.py
builds `summary-<time>.json` from exactly the files this run wrote (it names them) and prints the
table:
HTTP and in-process side by side, the inbox, scrubbing, and issue 16's targets met or not. A part
that failed shows as "not measured". BENCH_RESULTS_DIR sends every file elsewhere.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_RESULTS = HERE / "results"
#: the request path's configurations, bench_overhead.py's letters and bench_inprocess.py's names
HTTP_CONFIGS = "aicjhdfg"
INPROCESS_CONFIGS = "none,sdk-notrace,sdk-0.1,sdk-1.0,install-notrace,install-0.1,install-1.0"


def plan(mode: str) -> list[list[str]]:
    """The commands, in order: `mode` is "smoke", "summary" or "full"."""
    smoke = mode == "smoke"
    overhead = ["--rounds", "1", "--duration", "1", "--warmup", "0.5"] if smoke else []
    inbox = ["--senders", "8", "--seconds", "1" if smoke else "8", "--sizes", "6", "50"]
    # wall-clock figures first, while the machine is as quiet as the run began; then the
    # instruction counts, which do not move with load (other work may start once they run)
    commands = [
        ["bench_overhead.py", "--configs", HTTP_CONFIGS, "--endpoints", "trivial", *overhead],
        ["bench_inbox_ingest.py", *inbox],
        [
            "bench_inprocess.py",
            "--instructions",
            "--configs",
            "none,install-notrace" if smoke else INPROCESS_CONFIGS,
        ],
        [
            "bench_scrubbing_instructions.py",
            "--events",
            "small" if smoke else "small,typical,large",
        ],
    ]
    if mode == "full":
        commands += [
            ["bench_overhead.py"],  # the realistic endpoint and the seeds' pattern too
            ["bench_faults.py"],  # what a failing Sentry costs; the tests keep the guarantees
            ["bench_inprocess.py"],  # timed, beside the instruction counts
            ["bench_scrubbing.py"],
            ["bench_inbox_ingest.py", "--senders", "4", "8", "16", "--seconds", "8"],
            ["bench_relay_normalizer.py"],  # after an ingest run: it compares with that figure
        ]
    return commands


def _snapshot(*directories: Path) -> set[Path]:
    return {p for d in directories if d.is_dir() for p in d.glob("*.json")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--full", action="store_true", help="every benchmark, ~1.5 h")
    group.add_argument("--smoke", action="store_true", help="tiny durations, to a temp dir")
    args = parser.parse_args(argv)
    if args.smoke and not os.environ.get("BENCH_RESULTS_DIR"):
        # a smoke run's figures mean nothing: they must not land among the real ones
        os.environ["BENCH_RESULTS_DIR"] = tempfile.mkdtemp(prefix="bench-smoke-")
    import result_file  # after BENCH_RESULTS_DIR is final: it reads it on import
    import summary

    results_dir = result_file.RESULTS_DIR
    mode = "full" if args.full else "smoke" if args.smoke else "summary"
    started = time.monotonic()
    produced: list[Path] = []
    failed = []
    for command in plan(mode):
        print(f"\n=== {' '.join(command)} (load {os.getloadavg()[0]:.1f}) ===", flush=True)
        before = _snapshot(results_dir, REPO_RESULTS)
        begun = time.monotonic()
        result = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], check=False)
        new = sorted(_snapshot(results_dir, REPO_RESULTS) - before)
        for path in new:
            if path.parent.resolve() != results_dir:  # a script that ignores BENCH_RESULTS_DIR
                moved = results_dir / path.name
                shutil.move(path, moved)
                path = moved
            produced.append(path)
        print(f"=== {command[0]}: {time.monotonic() - begun:.0f} s ===", flush=True)
        if result.returncode != 0:
            failed.append(command[0])
    print(f"\n=== summary (all benchmarks: {(time.monotonic() - started) / 60:.1f} min) ===")
    figures = summary.build(results_dir, only=produced)
    path = summary.write(figures, [p.name for p in produced])
    print(f"(rebuild it: benchmarks/summary.py --show {path} [--markdown])")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
