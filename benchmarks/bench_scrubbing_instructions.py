"""CPU instructions per cold scrub, today's Scrubber beside git REV's: repeatable on a busy machine.

    .venv/bin/python benchmarks/bench_scrubbing_instructions.py [--against REV] [--events typical]

Wall time on this shared machine moves by tens of percent between runs of the same code (see
bench_scrubbing.py's results); callgrind's instruction count does not. Each figure is the count
for 25 cold scrubs minus the count for 5, over 20, so start-up and imports cancel out. Needs
valgrind; writes benchmarks/results/scrubbing-instructions-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(which: str, rev: str, event: str, count: int) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    from tests.scrubbing.corpus import benchmark_events

    from bench_scrubbing import scrubber_at
    from fastapi_sentry._scrubbing import Scrubber

    scrubber = (Scrubber if which == "ours" else scrubber_at(rev))()
    data = benchmark_events()[event]
    for _ in range(count):
        scrubber.clear_cache()
        scrubber.scrub_event(data)


def instructions(which: str, rev: str, event: str, count: int) -> int:
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    argv += [__file__, "--child", which, "--against", rev, "--events", event, str(count)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stderr
    found = re.search(r"Collected : (\d+)", out)
    if found is None:
        raise RuntimeError(f"callgrind printed no total: {out[-500:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="HEAD", metavar="REV")
    parser.add_argument("--events", default="small,typical,large")
    parser.add_argument("--child", choices=["ours", "before"])
    parser.add_argument("count", nargs="?", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.against, args.events, args.count)
        return
    rows = {}
    print(f"Instructions per cold scrub, ours beside {args.against}.\n")
    print(f"| {'event':<8} | {'ours':>12} | {'before':>12} | {'change':>7} |")
    print(f"|{'-' * 10}|{'-' * 14}|{'-' * 14}|{'-' * 9}|")
    for event in args.events.split(","):
        per = {
            which: (instructions(which, args.against, event, 25)
                    - instructions(which, args.against, event, 5)) // 20
            for which in ("ours", "before")
        }  # fmt: skip
        change = per["ours"] / per["before"] - 1
        rows[event] = {**per, "change": change}
        print(f"| {event:<8} | {per['ours']:>12,} | {per['before']:>12,} | {change:>+7.1%} |")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"scrubbing-instructions-{stamp}.json"
    out.write_text(json.dumps({"against": args.against, "instructions": rows}, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
