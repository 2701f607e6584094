"""One place that writes a benchmark's result file, so every file says the same things.

Figures live in `benchmarks/results/<name>-<UTC time>.json`, not in prose: the README cites the
file a table comes from, and a module docstring points at the benchmark. Each file carries the
machine (CPUs, load average before and after: the machine may be shared, so a figure is only as
good as the load beside it), the package versions, the command line and the table as printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

#: BENCH_RESULTS_DIR sends a run's files elsewhere (a smoke run's must not land in the repository).
RESULTS_DIR = Path(
    os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).resolve().parent / "results"
).resolve()

#: Versions of the packages a figure depends on, written with it.
PACKAGES = ("fastapi-sentry", "sentry-sdk", "fastapi", "starlette", "uvicorn")


def machine() -> dict[str, Any]:
    """The machine now: call it before the run and pass it as `load_before`."""
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def write(
    name: str,
    results: dict[str, Any],
    *,
    table: str = "",
    settings: dict[str, Any] | None = None,
    load_before: dict[str, Any] | None = None,
    out: Path | None = None,
) -> Path:
    """Print `table` (if the benchmark has not printed its own), write `results` (speed figures
    with peak RSS beside them) and say where they went."""
    if table:
        print("\n" + table, flush=True)
    now = datetime.now(timezone.utc)
    report = {
        "benchmark": name,
        "date": now.isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "machine": {
            **machine(),
            "loadavg_before": (load_before or {}).get("loadavg"),
        },
        "versions": versions(),
        "settings": settings or {},
        "results": results,
        "table": table,
    }
    path = out or RESULTS_DIR / f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    shown = path.resolve()
    with contextlib.suppress(ValueError):  # outside the repository: shown in full
        shown = shown.relative_to(Path(__file__).resolve().parent.parent)
    print(f"\nresults: {shown}", flush=True)
    return path
