"""What scrubbing costs and what it catches, beside sentry-sdk's own EventScrubber.

    .venv/bin/python benchmarks/bench_scrubbing.py [--quick] [--against REV] [--breakdown] [--cpu]

Prints two tables:
1. microseconds per event for a small, a typical (30 frames with locals, 50 breadcrumbs, 5 KB body)
   and a large event. "cold" clears the Scrubber's string cache before every event (nothing
   remembered from earlier events, only repeats within the event help); "warm" is the steady state
   when the same code paths keep failing; "pure cold" is cold without the C matcher of the optional
   `fast` extra (Hyperscan), as an install without it runs. EventScrubber mutates its input, so it
   gets a fresh deep copy per iteration, made outside the timed region. Peak RSS of the process and
   the peak of memory allocated during one call (tracemalloc, measured in a separate untimed pass)
   sit beside the speed figures;
2. the planted-secret corpus (tests/scrubbing/corpus.py) scored for our Scrubber, sentry-sdk's
   EventScrubber (default and recursive=True) and the seeds' top-level filter.

--breakdown prints where the cold time of the typical event goes instead: the walk, and each
step of the first look (timed one by one, best of several repeats).

--against REV adds "before" columns: the Scrubber of git revision REV (its _scrubbing and
_detectors, loaded under other names) timed in the same interleaved batches, so that a change is
measured under the same machine load as what it is compared with.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentry_sdk.scrubber import EventScrubber
from tests.scrubbing.corpus import (
    BENIGN,
    benchmark_events,
    build_corpus,
    score,
    seed_002_filter,
    sentry_event_scrubber,
)

from fastapi_sentry._scrubbing import Scrubber

Event = dict[str, Any]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def pure_scrubber() -> Scrubber:
    """A Scrubber without the C matcher of the optional `fast` extra, as an install without it."""
    scrubber = Scrubber()
    scrubber._c_matcher = None
    return scrubber


def corpus_table() -> dict[str, dict[str, int]]:
    cases = build_corpus()
    found: dict[str, dict[str, int]] = {}
    rows: list[tuple[str, Callable[[Event], Event]]] = [
        ("fastapi-sentry Scrubber", Scrubber().scrub_event),
        ("fastapi-sentry Scrubber, no C matcher", pure_scrubber().scrub_event),
        ("sentry-sdk EventScrubber()", sentry_event_scrubber(recursive=False)),
        ("sentry-sdk EventScrubber(recursive=True)", sentry_event_scrubber(recursive=True)),
        ("seed 002 filter_sensitive_data", seed_002_filter),
    ]
    print(
        f"Planted-secret corpus: {len(cases)} secrets (20 kinds x 20 places), {len(BENIGN)} benign"
    )
    print("values that must survive in every event.\n")
    print(f"| {'scrubber':<42} | {'secrets left':>14} | {'benign values lost':>18} |")
    print(f"|{'-' * 44}|{'-' * 16}|{'-' * 20}|")
    for name, scrub in rows:
        result = score(scrub, cases)
        left = f"{len(result.leaks)} / {result.secrets}"
        lost = f"{len(result.benign_lost)} / {len(BENIGN)}"
        print(f"| {name:<42} | {left:>14} | {lost:>18} |")
        found[name] = {
            "secrets_left": len(result.leaks),
            "secrets": result.secrets,
            "benign_lost": len(result.benign_lost),
            "benign": len(BENIGN),
        }
    print()
    return found


Run = Callable[[int], Callable[[], None]]


# --cpu swaps in process_time: on a machine shared by many processes, wall time mostly measures
# how long this one waited for a core.
CLOCK: list[Callable[[], float]] = [time.perf_counter]


def interleaved(runs: dict[str, Run], iterations: int, batches: int) -> dict[str, float]:
    """Median microseconds per call for each run, batches taken round-robin so that load from
    other processes on the machine hits every column alike. A run is prepared untimed (it gets
    the batch size) and returns the callable that is timed."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(batches):
        for name, prepare in runs.items():
            batch = prepare(iterations)
            start = CLOCK[0]()
            batch()
            samples[name].append((CLOCK[0]() - start) / iterations * 1e6)
            del batch
    return {name: statistics.median(values) for name, values in samples.items()}


def alloc_peak_kb(call: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1] / 1024
    finally:
        tracemalloc.stop()


def on_copies(es: EventScrubber, event: Event) -> Run:
    """EventScrubber mutates: each batch gets its own deep copies, made untimed, just before."""

    def prepare(k: int) -> Callable[[], None]:
        copies = [copy.deepcopy(event) for _ in range(k)]

        def batch() -> None:
            for c in copies:
                es.scrub_event(c)  # type: ignore[arg-type]

        return batch

    return prepare


def repeat(scrubber: Scrubber, event: Event, *, cold: bool) -> Run:
    def prepare(k: int) -> Callable[[], None]:
        def batch() -> None:
            for _ in range(k):
                if cold:
                    scrubber.clear_cache()
                scrubber.scrub_event(event)

        return batch

    return prepare


def scrubber_at(rev: str) -> type[Scrubber]:
    """The Scrubber class as it was at git revision `rev`, importable beside today's."""
    root = Path(__file__).resolve().parents[1]
    folder = Path(tempfile.mkdtemp(prefix="bench_scrubbing_"))

    def source(*names: str) -> str:
        """The first of these paths that exists at `rev` (the modules moved into _scrubbing/)."""
        for name in names:
            shown = subprocess.run(
                ["git", "show", f"{rev}:src/fastapi_sentry/{name}.py"],
                cwd=root, check=False, capture_output=True, text=True,
            )  # fmt: skip
            if shown.returncode == 0:
                return shown.stdout
        raise SystemExit(f"--against {rev}: none of {names} exists at that revision")

    (folder / "detectors_before.py").write_text(source("_scrubbing/detectors", "_detectors"))
    old_imports = (
        "from fastapi_sentry._scrubbing import detectors as d",
        "from fastapi_sentry import _detectors as d",
    )
    scrubber = source("_scrubbing/scrubber", "_scrubbing")
    for line in old_imports:
        scrubber = scrubber.replace(line, "import detectors_before as d")
    (folder / "scrubbing_before.py").write_text(scrubber)
    sys.path.insert(0, str(folder))
    try:
        before: type[Scrubber] = importlib.import_module("scrubbing_before").Scrubber
    finally:  # both modules are loaded now
        sys.path.remove(str(folder))
        shutil.rmtree(folder)
    return before


def speed_table(quick: bool, against: str | None) -> dict[str, dict[str, float]]:
    events = benchmark_events()
    found: dict[str, dict[str, float]] = {}
    batches = 5 if quick else 9
    counts = {"small": 200, "typical": 30, "large": 8} if quick else {
        "small": 1000, "typical": 100, "large": 25}  # fmt: skip
    before = scrubber_at(against) if against else None
    print(f"Microseconds per event, median of {batches} interleaved batches (lower is better).")
    if before is not None:
        print(f"'before' is the Scrubber at {against}, timed in the same batches.")
    print()
    columns = [("event", 8), ("size", 7), ("ours cold", 9), ("ours warm", 9), ("pure cold", 9)]
    if before is not None:
        columns += [("before cold", 11), ("before warm", 11)]
    columns += [("EventScrubber", 13), ("recursive=True", 14), ("cold/rec", 8), ("warm/rec", 8)]
    columns += [("pure cold/rec", 13)]
    if before is not None:
        columns += [("before cold/rec", 15)]
    columns += [("alloc ours", 10), ("alloc rec", 9), ("peak RSS", 8)]
    header = "| " + " | ".join(f"{c:<{w}}" if c == "event" else f"{c:>{w}}" for c, w in columns)
    print(header + " |")
    print("|" + "|".join("-" * (w + 2) for _, w in columns) + "|")
    for name, event in events.items():
        n = counts[name]
        scrubber = Scrubber()
        shallow = EventScrubber(send_default_pii=False)
        deep = EventScrubber(recursive=True, send_default_pii=False)

        scrubber.scrub_event(event)  # so that the first "warm" batch is warm
        # "pure": the same Scrubber without the C matcher of the optional `fast` extra (Hyperscan),
        # as an install without it runs; "ours" uses it where it is installed
        pure = pure_scrubber()
        pure.scrub_event(event)
        runs = {
            "cold": repeat(scrubber, event, cold=True),
            "warm": repeat(scrubber, event, cold=False),
            "pure cold": repeat(pure, event, cold=True),
        }
        if before is not None:
            old = before()
            old.scrub_event(event)
            runs["before cold"] = repeat(old, event, cold=True)
            runs["before warm"] = repeat(old, event, cold=False)
        runs["shallow"] = on_copies(shallow, event)
        runs["deep"] = on_copies(deep, event)
        t = interleaved(runs, n, batches)
        t_cold, t_warm, t_shallow, t_deep = t["cold"], t["warm"], t["shallow"], t["deep"]

        scrubber.clear_cache()
        a_ours = alloc_peak_kb(lambda: scrubber.scrub_event(event))  # noqa: B023
        victim = copy.deepcopy(event)
        a_deep = alloc_peak_kb(lambda: deep.scrub_event(victim))  # type: ignore[arg-type]  # noqa: B023
        cells = [f"{name:<8}", f"{len(json.dumps(event)) / 1024:>4.0f} KB", f"{t_cold:>9.0f}",
                 f"{t_warm:>9.0f}", f"{t['pure cold']:>9.0f}"]  # fmt: skip
        if before is not None:
            cells += [f"{t['before cold']:>11.0f}", f"{t['before warm']:>11.0f}"]
        cells += [f"{t_shallow:>13.0f}", f"{t_deep:>14.0f}", f"{t_cold / t_deep:>7.1f}x",
                  f"{t_warm / t_deep:>7.1f}x", f"{t['pure cold'] / t_deep:>12.1f}x"]  # fmt: skip
        if before is not None:
            cells += [f"{t['before cold'] / t_deep:>14.1f}x"]
        cells += [f"{a_ours:>7.0f} KB", f"{a_deep:>6.0f} KB", f"{peak_rss_mb():>5.0f} MB"]
        print("| " + " | ".join(cells) + " |")
        found[name] = {
            "size_kb": round(len(json.dumps(event)) / 1024, 1),
            "ours_cold_us": round(t_cold, 1),
            "ours_warm_us": round(t_warm, 1),
            "pure_cold_us": round(t["pure cold"], 1),
            "c_matcher": scrubber._c_matcher is not None,
            "event_scrubber_us": round(t_shallow, 1),
            "event_scrubber_recursive_us": round(t_deep, 1),
            "alloc_ours_kb": round(a_ours),
            "alloc_recursive_kb": round(a_deep),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
        if before is not None:
            found[name]["before_cold_us"] = round(t["before cold"], 1)
            found[name]["before_warm_us"] = round(t["before warm"], 1)
    print()
    return found


def breakdown() -> dict[str, float]:
    """The cold path of the typical event, step by step (private methods: this follows the code)."""
    from fastapi_sentry._scrubbing import detectors as d
    from fastapi_sentry._scrubbing import scrubber as s

    event = benchmark_events()["typical"]
    scrubber = pure_scrubber()  # the steps below are the Python first look's
    fast = Scrubber()  # with the C matcher where the `fast` extra is installed
    deep = EventScrubber(recursive=True, send_default_pii=False)

    def best(prepare: Run, n: int = 100) -> float:
        """Best of 7 batches: each step alone, so the least disturbed batch is the fairest."""
        times = []
        for _ in range(7):
            batch = prepare(n)
            start = CLOCK[0]()
            batch()
            times.append((CLOCK[0]() - start) / n * 1e6)
        return min(times)

    def each(call: Callable[[], object]) -> Run:
        def prepare(n: int) -> Callable[[], None]:
            def batch() -> None:
                for _ in range(n):
                    call()

            return batch

        return prepare

    def walk() -> s._Pending:
        scrubber.clear_cache()
        pending = s._Pending()
        root: s._Node = [None, None, event, dict(event)]  # as scrub_event starts its walk
        for key, value in event.items():
            if key not in s._SKIPPED_TOP_LEVEL:
                scrubber._field(key, value, 1, pending, root)
        return pending

    def cold() -> None:
        scrubber.clear_cache()
        scrubber.scrub_event(event)

    def cold_fast() -> None:
        fast.clear_cache()
        fast.scrub_event(event)

    pending = walk()
    strings = list(set(map(s._THIRD, pending)).union(*map(s._SECOND, pending.leaves)))
    joined = "\x00".join(strings)
    raw = joined.encode("ascii")
    flagged = sorted(scrubber._suspects(strings))

    def cards() -> int:
        return raw.translate(d.CARD_DIGITS, d.CARD_SEPARATORS).find(d.CARD_RUN)

    steps: list[tuple[str, Run]] = [
        ("EventScrubber(recursive=True), for scale", on_copies(deep, event)),
        ("scrub_event, cold, whole, with the C matcher", each(cold_fast)),
        ("scrub_event, cold, whole, Python first look", each(cold)),
        ("  walk: keys classified, new strings deferred", each(walk)),
        ("  distinct deferred strings", each(lambda: list(set(map(s._THIRD, pending))))),
        ("  first look, whole", each(lambda: scrubber._suspects(strings))),
        ("    join, ASCII and NUL checks", each(lambda: "\x00".join(strings).count("\x00"))),
        ("    value fragments: regex passes, scheme words",
         each(lambda: scrubber._fragments(joined))),
        ("    keyed separators: translate, split, key runs",
         each(lambda: scrubber._keyed_separators(raw))),
        ("    card digits: translate, find", each(cards)),
        ("  first look, whole, with the C matcher", each(lambda: fast._suspects(strings))),
        (f"  detectors on the {len(flagged)} flagged strings",
         each(lambda: [scrubber._scan(strings[i]) for i in flagged])),
    ]  # fmt: skip
    rows = [(name, best(prepare)) for name, prepare in steps]
    print(f"Cold path of the typical event: {len(pending)} new strings, {len(strings)} distinct,")
    print(f"{len(joined)} characters; {len(flagged)} flagged by the first look.")
    print("Microseconds, best of 7 batches of 100, each step alone.\n")
    print(f"| {'step':<52} | {'us':>6} |")
    print(f"|{'-' * 54}|{'-' * 8}|")
    for name, us in rows:
        print(f"| {name:<52} | {us:>6.0f} |")
    print(f"\npeak RSS: {peak_rss_mb():.0f} MB")
    return {name.strip(): round(us, 1) for name, us in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke run)")
    parser.add_argument("--against", metavar="REV", help="also time the Scrubber of git REV")
    parser.add_argument("--breakdown", action="store_true", help="where the cold time goes")
    parser.add_argument("--cpu", action="store_true", help="CPU time of this process, not wall")
    args = parser.parse_args()
    if args.cpu:
        CLOCK[0] = time.process_time
    import result_file

    load_before = result_file.machine()
    if args.breakdown:
        steps = breakdown()
        result_file.write(
            "scrubbing-breakdown",
            {"typical_cold_steps_us": steps, "peak_rss_mb": round(peak_rss_mb(), 1)},
            settings={"c_matcher": Scrubber()._c_matcher is not None},
            load_before=load_before,
        )
        return
    print(f"Python {sys.version.split()[0]}, sentry-sdk {_sdk_version()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"peak RSS after imports: {peak_rss_mb():.0f} MB\n")
    # speed first: the process's peak RSS only grows, and the corpus run holds 400 events
    speed = speed_table(args.quick, args.against)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    corpus = corpus_table()
    result_file.write(
        "scrubbing",
        {"microseconds_per_event": speed, "corpus": corpus},
        settings={"quick": args.quick, "against": args.against},
        load_before=load_before,
    )


def _sdk_version() -> str:
    from sentry_sdk.consts import VERSION

    return VERSION


if __name__ == "__main__":
    main()
