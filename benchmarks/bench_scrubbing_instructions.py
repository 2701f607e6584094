"""CPU instructions per cold scrub, today's Scrubber beside git REV's: repeatable on a busy machine.

    .venv/bin/python benchmarks/bench_scrubbing_instructions.py [--against REV] [--events typical]

Wall time on this shared machine moves by tens of percent between runs of the same code (see
bench_scrubbing.py's results); callgrind's instruction count does not. Each figure is the count
for 25 cold scrubs minus the count for 5, over 20, so start-up and imports cancel out; for
EventScrubber(recursive=True), which mutates its input, the deep copies it scrubs are counted alone
and taken off. Needs valgrind; writes benchmarks/results/scrubbing-instructions-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(which: str, rev: str, event: str, count: int) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    from tests.scrubbing.corpus import benchmark_events

    from bench_scrubbing import scrubber_at
    from fastapi_sentry._scrubbing import Scrubber

    data = benchmark_events()[event]
    if which in ("recursive", "copies"):
        # EventScrubber mutates its input: it scrubs deep copies, whose cost "copies" measures
        import copy

        from sentry_sdk.scrubber import EventScrubber

        copies = [copy.deepcopy(data) for _ in range(count)]
        if which == "recursive":
            deep = EventScrubber(recursive=True, send_default_pii=False)
            for c in copies:
                deep.scrub_event(c)  # type: ignore[arg-type]
        return
    scrubber = (Scrubber if which == "ours" else scrubber_at(rev))()
    for _ in range(count):
        scrubber.clear_cache()
        scrubber.scrub_event(data)


def instructions(which: str, rev: str, event: str, count: int) -> int:
    from callgrind import count_instructions  # the parent's only

    argv = [__file__, "--child", which, "--against", rev, "--events", event, str(count)]
    return count_instructions(argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="HEAD", metavar="REV")
    parser.add_argument("--events", default="small,typical,large")
    parser.add_argument("--child", choices=["ours", "before", "recursive", "copies"])
    parser.add_argument("count", nargs="?", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.against, args.events, args.count)
        return
    rows = {}
    print(
        f"Instructions per cold scrub: ours, {args.against}'s, EventScrubber(recursive=True)'s.\n"
    )
    print(f"| {'event':<8} | {'ours':>12} | {'before':>12} | {'change':>7} | {'recursive':>12} "
          f"| {'ours/rec':>8} | {'before/rec':>10} |")  # fmt: skip
    print(f"|{'-' * 10}|{'-' * 14}|{'-' * 14}|{'-' * 9}|{'-' * 14}|{'-' * 10}|{'-' * 12}|")
    for event in args.events.split(","):
        per = {
            which: (instructions(which, args.against, event, 25)
                    - instructions(which, args.against, event, 5)) // 20
            for which in ("ours", "before", "recursive", "copies")
        }  # fmt: skip
        recursive = per.pop("recursive") - per.pop("copies")  # the deep copies are not its cost
        change = per["ours"] / per["before"] - 1
        ours_rec, before_rec = per["ours"] / recursive, per["before"] / recursive
        rows[event] = {**per, "change": change, "event_scrubber_recursive": recursive,
                       "ours_per_recursive": ours_rec,
                       "before_per_recursive": before_rec}  # fmt: skip
        print(f"| {event:<8} | {per['ours']:>12,} | {per['before']:>12,} | {change:>+7.1%} "
              f"| {recursive:>12,} | {ours_rec:>7.2f}x | {before_rec:>9.2f}x |")  # fmt: skip
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"scrubbing-instructions-{stamp}.json"
    out.write_text(json.dumps({"against": args.against, "instructions": rows}, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
