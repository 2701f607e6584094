"""CPU instructions per cold scrub, today's Scrubber beside git REV's, each with the `fast` extra
(Hyperscan) and without it: repeatable on a busy machine.

    .venv/bin/python benchmarks/bench_scrubbing_instructions.py [--against REV] [--events typical]

Events: small, typical, large (tests/scrubbing/corpus.py's benchmark_events) and transaction, a
sampled transaction as install() makes it.

Wall time on this shared machine moves by tens of percent between runs of the same code (see
bench_scrubbing.py's results); callgrind's instruction count does not. Each figure is the count
for 25 cold scrubs minus the count for 5, over 20, so start-up and imports cancel out; for
EventScrubber(recursive=True), which mutates its input, the deep copies it scrubs are counted alone
and taken off. "no extra" children cannot import hyperscan, as an install without the extra.
Needs valgrind; writes benchmarks/results/scrubbing-instructions-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


CHILDREN = ("ours", "ours_pure", "before", "before_pure", "recursive", "copies")


def child(which: str, rev: str, event: str, count: int) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    if which.endswith("_pure"):
        sys.modules["hyperscan"] = None  # type: ignore[assignment]  # an install without `fast`
    from tests.scrubbing.corpus import benchmark_events, install_transaction

    from bench_scrubbing import scrubber_at
    from fastapi_sentry._scrubbing import Scrubber

    data = {**benchmark_events(), "transaction": install_transaction()}[event]
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
    scrubber = (Scrubber if which.startswith("ours") else scrubber_at(rev))()
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
    parser.add_argument("--child", choices=CHILDREN)
    parser.add_argument("count", nargs="?", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.against, args.events, args.count)
        return
    import result_file  # the parent's only

    load_before = result_file.machine()
    rows = {}
    lines = [
        f'Instructions per cold scrub, with the `fast` extra and without it ("pure"): ours, '
        f"{args.against}'s, EventScrubber(recursive=True)'s.",
        "",
        f"| {'event':<8} | {'recursive':>11} | {'ours':>11} | {'/rec':>5} | {'ours pure':>11} "
        f"| {'/rec':>5} | {'before':>11} | {'/rec':>5} | {'before pure':>11} | {'/rec':>5} |",
        "|" + "|".join("-" * (w + 2) for w in (8, 11, 11, 5, 11, 5, 11, 5, 11, 5)) + "|",
    ]
    print("\n".join(lines), flush=True)
    for event in args.events.split(","):
        per = {
            which: (instructions(which, args.against, event, 25)
                    - instructions(which, args.against, event, 5)) // 20
            for which in CHILDREN
        }  # fmt: skip
        recursive = per.pop("recursive") - per.pop("copies")  # the deep copies are not its cost
        ratios = {f"{which}_per_recursive": n / recursive for which, n in per.items()}
        rows[event] = {**per, "event_scrubber_recursive": recursive, **ratios}
        cells = " | ".join(
            f"{per[which]:>11,} | {ratios[which + '_per_recursive']:>4.2f}x"
            for which in ("ours", "ours_pure", "before", "before_pure")
        )
        lines.append(f"| {event:<8} | {recursive:>11,} | {cells} |")
        print(lines[-1], flush=True)
    path = result_file.write(
        "scrubbing-instructions",
        rows,
        settings={"against": args.against, "events": args.events, "counted": "(25 - 5) / 20"},
        load_before=load_before,
    )
    # the table went out row by row; the file keeps it whole
    report = json.loads(path.read_text())
    report["table"] = "\n".join(lines)
    path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
