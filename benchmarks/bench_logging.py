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

Last, the wrapper alone: one prebuilt record through `callHandlers` with and without it, in one
process. Peak RSS of each child is written beside the figures.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import result_file  # noqa: E402

SIDES = ("bare", "before", "installed")
CASES = ("app.debug", "lib.info", "app.info", "app.warning", "access.info")


def _child(side: str, number: int, repeat: int) -> dict[str, float]:
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
    calls = {
        "app.debug": lambda: app.debug("loaded %s", 1),
        "lib.info": lambda: lib.info("request %s", 1),
        "app.info": lambda: app.info("loaded %s", 1),
        "app.warning": lambda: app.warning("slow %s", 1),
        "access.info": lambda: access.info("GET %s", "/"),
    }
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--against", metavar="REV", help="also time install() of this revision")
    parser.add_argument("--child", choices=SIDES)
    args = parser.parse_args()
    number, repeat, rounds = (2_000, 3, 2) if args.quick else (20_000, 5, 3)
    if args.child:
        print(json.dumps(_child(args.child, number, repeat)))
        return
    load_before = result_file.machine()
    sides = [side for side in SIDES if side != "before" or args.against]
    best: dict[str, dict[str, float]] = {side: {} for side in sides}
    with tempfile.TemporaryDirectory() as before_dir:
        if args.against:
            archive = subprocess.run(
                ["git", "archive", args.against, "src"], cwd=REPO, check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", before_dir], input=archive, check=True)
        for _ in range(rounds):  # interleaved: every side sees the same machine load
            for side in sides:
                src = Path(before_dir) / "src" if side == "before" else REPO / "src"
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
    result_file.write(
        "logging",
        best,
        table="\n".join(lines),
        settings={"number": number, "repeat": repeat, "rounds": rounds, "against": args.against},
        load_before=load_before,
    )


if __name__ == "__main__":
    main()
