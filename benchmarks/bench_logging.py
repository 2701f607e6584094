"""What the logging set-up of `install()` costs per log call, beside bare sentry-sdk.

    .venv/bin/python benchmarks/bench_logging.py [--quick] [--against REV]

Sides: bare sentry-sdk; install() of the revision given by `--against REV` (its `src/`, exported
to a temporary folder: the figure this change is measured against); install(). All run sentry-sdk
with the same LoggingIntegration (INFO breadcrumbs, ERROR events), logging left at Python's
default (root at WARNING) plus one root handler writing nowhere, as an app's configured handler
would. Each case is timed in interleaved rounds, one child process per side, best of several
repeats, nanoseconds per call:

- `app.debug`: a DEBUG call on the app's logger, a record nobody wants: refused by the level check
  on both sides (the app's logger is at INFO with install(), still above DEBUG);
- `lib.info`: an INFO call on a library's logger (not lowered): refused on both sides;
- `app.info`: an INFO call on the app's logger: nothing on bare sentry-sdk (refused), a
  breadcrumb with install() (the point of the change, not an overhead);
- `app.warning` / `access.info`: records that are printed (the app's warning; a logger with its
  own level and handler, as uvicorn's access log): here the wrapper around `callHandlers` adds
  its level lookup to what both sides do.

Then the wrapper alone: one prebuilt record through `callHandlers` with and without it, in one
process. Peak RSS of each child is written beside the figures. Wall time on this shared machine
moves by tens of percent between processes; `--instructions` adds callgrind's instruction count
per call for the printed records (needs valgrind), which does not.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SIDES = ("bare", "before", "installed")
CASES = ("app.debug", "lib.info", "app.info", "app.warning", "access.info")


def _calls(side: str) -> tuple[dict[str, Callable[[], None]], logging.Logger]:
    """The side set up as described above; the log calls by case, and the access logger."""
    import sentry_sdk
    from fastapi import FastAPI
    from sentry_sdk.integrations.logging import LoggingIntegration

    class Nowhere(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            self.format(record)

    logging.getLogger().addHandler(Nowhere())
    access = logging.getLogger("bench.access")
    access.setLevel(logging.INFO)
    access.propagate = False
    access.addHandler(Nowhere())
    dsn = "http://key@127.0.0.1:9/1"
    if side == "bare":
        sentry_sdk.init(
            dsn=dsn, integrations=[LoggingIntegration(level=logging.INFO)], traces_sample_rate=0
        )
    else:
        import fastapi_sentry

        if side == "before":  # the revision given by --against, which has no such setting
            fastapi_sentry.install(FastAPI(), dsn=dsn)
        else:
            fastapi_sentry.install(FastAPI(), dsn=dsn, breadcrumb_loggers=["benchapp"])
    app = logging.getLogger("benchapp.orders")
    lib = logging.getLogger("somelib.client")
    calls: dict[str, Callable[[], None]] = {
        "app.debug": lambda: app.debug("loaded %s", 1),
        "lib.info": lambda: lib.info("request %s", 1),
        "app.info": lambda: app.info("loaded %s", 1),
        "app.warning": lambda: app.warning("slow %s", 1),
        "access.info": lambda: access.info("GET %s", "/"),
    }
    return calls, access


def _child(side: str, number: int, repeat: int) -> dict[str, float]:
    calls, access = _calls(side)
    figures = {
        case: min(timeit.repeat(calls[case], number=number, repeat=repeat)) / number * 1e9
        for case in CASES
    }
    if side == "installed":
        figures.update(_wrapper_cost(access, number, repeat))
    figures["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return figures


def _wrapper_cost(logger: logging.Logger, number: int, repeat: int) -> dict[str, float]:
    """The wrapper alone: the same record through `callHandlers` with and without it, batches
    alternating in one process (the noise of separate processes is far larger than this)."""
    from fastapi_sentry import _logs

    inner = _logs._inner
    assert inner is not None
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "GET /", (), None)
    timed = {
        "with": lambda: _logs._call_handlers(logger, record),
        "without": lambda: inner(logger, record),
    }
    best = {name: float("inf") for name in timed}
    for _ in range(repeat * 4):
        for name, call in timed.items():
            best[name] = min(best[name], timeit.timeit(call, number=number) / number * 1e9)
    return {
        "callHandlers_without_wrapper": best["without"],
        "callHandlers_with_wrapper": best["with"],
    }


def _run_calls(side: str, case: str, count: int) -> None:
    calls, _ = _calls(side)
    for _ in range(count):
        calls[case]()


def _instructions(sides: list[str], src_of: Callable[[str], Path]) -> dict[str, dict[str, float]]:
    """Instructions per call (callgrind), for the cases that differ: the count for 1,100 calls
    minus the count for 100, over 1,000, so start-up and imports cancel out."""
    from callgrind import count_instructions  # the parent's only

    found: dict[str, dict[str, float]] = {side: {} for side in sides}
    for side in sides:
        path = [src_of(side), REPO]
        for case in ("app.warning", "access.info"):
            argv = [__file__, "--child", side, "--run", case]
            counts = [count_instructions([*argv, str(n)], pythonpath=path) for n in (100, 1_100)]
            found[side][case] = (counts[1] - counts[0]) / 1_000
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--against", metavar="REV", help="also time install() of this revision")
    parser.add_argument("--child", choices=SIDES)
    parser.add_argument("--run", nargs=2, metavar=("CASE", "COUNT"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions (valgrind)"
    )
    args = parser.parse_args()
    if args.child and args.run:
        _run_calls(args.child, args.run[0], int(args.run[1]))
        return
    number, repeat, rounds = (2_000, 3, 2) if args.quick else (20_000, 5, 3)
    if args.child:
        print(json.dumps(_child(args.child, number, repeat)))
        return
    import result_file  # here, not at the top: the children never need it

    load_before = result_file.machine()
    sides = [side for side in SIDES if side != "before" or args.against]
    best: dict[str, dict[str, float]] = {side: {} for side in sides}
    with tempfile.TemporaryDirectory() as before_dir:
        if args.against:
            archive = subprocess.run(
                ["git", "archive", args.against, "src"], cwd=REPO, check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", before_dir], input=archive, check=True)

        def src_of(side: str) -> Path:
            return Path(before_dir) / "src" if side == "before" else REPO / "src"

        counted = _instructions(sides, src_of) if args.instructions else None
        for _ in range(rounds):  # interleaved: every side sees the same machine load
            for side in sides:
                src = src_of(side)
                env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(REPO)])}
                argv = [sys.executable, __file__, "--child", side]
                out = subprocess.run(
                    [*argv, *(["--quick"] if args.quick else [])],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=env,
                ).stdout
                for key, value in json.loads(out.splitlines()[-1]).items():
                    best[side][key] = min(best[side].get(key, value), value)
    lines = ["| call | " + " | ".join(sides) + " |", "|---" * (len(sides) + 1) + "|"]
    for case in (*CASES, "peak_rss_kb"):
        lines.append(f"| `{case}` | " + " | ".join(f"{best[s][case]:.0f}" for s in sides) + " |")
    mine = best["installed"]
    lines.append(
        f"\nThe wrapper alone, one printed INFO record: callHandlers "
        f"{mine['callHandlers_without_wrapper']:.0f} ns without it, "
        f"{mine['callHandlers_with_wrapper']:.0f} ns with it."
    )
    if counted is not None:
        lines += ["", "| instructions per call | " + " | ".join(sides) + " |"]
        lines.append("|---" * (len(sides) + 1) + "|")
        for case in counted[sides[0]]:
            row = " | ".join(f"{counted[s][case]:.0f}" for s in sides)
            lines.append(f"| `{case}` | {row} |")
    result_file.write(
        "logging",
        {"ns_per_call": best, "instructions_per_call": counted},
        table="\n".join(lines),
        settings={"number": number, "repeat": repeat, "rounds": rounds, "against": args.against},
        load_before=load_before,
    )


if __name__ == "__main__":
    main()
