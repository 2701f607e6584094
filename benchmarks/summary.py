"""Issue 16's figures side by side, rebuilt from result files: nothing is re-run.

    .venv/bin/python benchmarks/summary.py              # newest files; writes summary-<time>.json
    .venv/bin/python benchmarks/summary.py --markdown   # ...and prints the README's table
    .venv/bin/python benchmarks/summary.py --show benchmarks/results/summary-<time>.json --markdown

`make bench` (run_all.py) calls `build()` with the files it has just written, so every cell comes
from one run; run alone, each part takes the newest file that has it, and every cell names its
file and date. The README's "Performance at a glance" table is `render(..., markdown=True)` of the
summary file it names (tests/test_bench_summary.py checks that).

What is read from each result file (anything missing shows as "not measured"):

- `overhead-*.json` (bench_overhead.py, HTTP): `results["by_endpoint"]["trivial"][letter]`, or
  `results["trivial"][letter]` in files from before `by_endpoint`, with `rps` (median round's
  requests per second) and `peak_rss_mb`. Letters: a no Sentry; i, c, j bare SDK at tracing off,
  0.1, 1.0; h, d, f install() at tracing off, 0.1, 1.0. The HTTP column takes one file only:
  throughput from different runs (different load) is not comparable.
- `inprocess-instructions-*.json` (bench_inprocess.py --instructions): `results[name]` with
  `instructions_per_request` and `peak_rss_mb`, for none, sdk-notrace, sdk-0.1, sdk-1.0,
  install-notrace, install-0.1, install-1.0; each cell takes the newest file that has it (counts
  repeat to within about 0.5%; its file and date are shown beside it).
- `inbox-ingest-*.json` (bench_inbox_ingest.py): `results["by_senders"]`, a list of rows with
  `rate` (events acknowledged and stored per second), `rss` (the inbox's peak RSS, MiB),
  `senders`, `missing` (acknowledged but not stored), `event_kb` (the event's size; absent = 6,
  the size before `--event-kb` existed) and `rules` (absent or 0 = no alert rules; others are
  skipped). `results["by_event_kb"]` (`{"6": [rows], "50": [rows]}`) is read too. Per size, the
  row with the highest rate is shown.
- `scrubbing-instructions-*.json` (bench_scrubbing_instructions.py): `results` (or `instructions`,
  top level or under `results`, in older files) mapping event → `ours` (with the `fast` extra
  where installed), `ours_pure` (without it; newer files), `event_scrubber_recursive`; per event
  the newest file that counted it; the
  event's size and peak RSS come from the newest `scrubbing-*.json` (bench_scrubbing.py):
  `results["microseconds_per_event"][event]["size_kb" | "peak_rss_mb"]`.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import result_file

#: (row label, bench_overhead.py letter, bench_inprocess.py configuration)
REQUEST_PATH = (
    ("no Sentry", "a", "none"),
    ("bare sentry-sdk, tracing off", "i", "sdk-notrace"),
    ("bare sentry-sdk, traces 0.1", "c", "sdk-0.1"),
    ("bare sentry-sdk, traces 1.0", "j", "sdk-1.0"),
    ("install(), tracing off", "h", "install-notrace"),
    ("install(), traces 0.1", "d", "install-0.1"),
    ("install(), traces 1.0", "f", "install-1.0"),
)
#: install() row → the bare SDK's row at the same tracing rate
TWINS = {3 + i: i for i in (1, 2, 3)}
INBOX_SIZES = ((6, 5000.0), (50, 1000.0))  # event KB, events per second wanted
INBOX_RSS_MB = 100.0
SCRUB_EVENTS = ("small", "typical", "large")
NOT_MEASURED = "not measured"


def _stamp(path: Path) -> str:
    return path.name.rsplit("-", 1)[-1].removesuffix(".json")


def _files(directory: Path, name: str) -> list[Path]:
    """`name`'s result files, newest first (the UTC time in the name orders them)."""
    pattern = re.compile(rf"{re.escape(name)}-\d{{8}}T\d{{6}}Z\.json")
    found = [p for p in directory.glob(f"{name}-*.json") if pattern.fullmatch(p.name)]
    return sorted(found, key=_stamp, reverse=True)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _results(data: dict[str, Any]) -> dict[str, Any]:
    found = data.get("results")
    return found if isinstance(found, dict) else data  # files from before result_file.py


class _Sources:
    """Every file a cell came from, with its date and the load beside it."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}

    def use(self, path: Path, data: dict[str, Any]) -> str:
        if path.name not in self.files:
            machine = data.get("machine") or {}
            stamp = _stamp(path)
            self.files[path.name] = {
                "date": data.get("date")
                or f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:"
                f"{stamp[13:15]}+00:00",
                "loadavg_before": (machine.get("loadavg_before") or [None])[0],
                "loadavg_after": (machine.get("loadavg") or [None])[0],
                "command": data.get("command"),
            }
        return path.name


def _http(files: list[Path], sources: _Sources) -> list[dict[str, Any] | None]:
    for path in files:
        data = _load(path)
        results = _results(data)
        by_config = (results.get("by_endpoint") or results).get("trivial")
        if not isinstance(by_config, dict):
            continue
        name = sources.use(path, data)
        base = (by_config.get("a") or {}).get("rps")
        cells: list[dict[str, Any] | None] = []
        for _, letter, _ in REQUEST_PATH:
            run = by_config.get(letter)
            if not run or not run.get("rps"):
                cells.append(None)
                continue
            cells.append(
                {
                    "config": letter,
                    "rps": round(run["rps"]),
                    "ratio": round(run["rps"] / base, 3) if base else None,
                    "peak_rss_mb": run.get("peak_rss_mb"),
                    "source": name,
                }
            )
        return cells
    return [None] * len(REQUEST_PATH)


def _inprocess(files: list[Path], sources: _Sources) -> list[dict[str, Any] | None]:
    found: dict[str, tuple[dict[str, Any], str]] = {}
    for path in files:  # newest first: a configuration's newest count wins
        data = _load(path)
        results = _results(data)
        for _, _, config in REQUEST_PATH:
            figures = results.get(config)
            if config in found or not isinstance(figures, dict):
                continue
            if figures.get("instructions_per_request"):
                found[config] = (figures, sources.use(path, data))
    base = found.get("none", ({}, ""))[0].get("instructions_per_request")
    cells: list[dict[str, Any] | None] = []
    for _, _, config in REQUEST_PATH:
        if config not in found:
            cells.append(None)
            continue
        figures, name = found[config]
        count = figures["instructions_per_request"]
        cells.append(
            {
                "config": config,
                "instructions": count,
                "ratio": round(base / count, 3) if base else None,
                "peak_rss_mb": figures.get("peak_rss_mb"),
                "source": name,
            }
        )
    return cells


def _inbox_rows(results: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for row in results.get("by_senders") or []:
        yield row
    for kb, rows in (results.get("by_event_kb") or {}).items():
        for row in rows:
            yield {"event_kb": float(kb), **row}


def _inbox(files: list[Path], sources: _Sources) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = []
    for kb, wanted in INBOX_SIZES:
        cell: dict[str, Any] = {"event_kb": kb, "wanted_per_s": wanted}
        for path in files:
            data = _load(path)
            rows = [
                row
                for row in _inbox_rows(_results(data))
                if float(row.get("event_kb") or 6) == kb
                and not row.get("rules")
                and row.get("rate")
            ]
            if rows:
                best = max(rows, key=lambda row: row["rate"])
                cell.update(
                    {
                        "rate": round(best["rate"]),
                        "senders": best.get("senders"),
                        "missing": best.get("missing", 0),
                        "peak_rss_mb": round(best["rss"], 1) if best.get("rss") else None,
                        "source": sources.use(path, data),
                    }
                )
                break
        cells.append(cell)
    return cells


def _scrubbing_rows(data: dict[str, Any]) -> dict[str, Any]:
    """Event → counts, in either shape the instruction benchmark has written."""
    rows = data.get("instructions") or _results(data).get("instructions") or _results(data)
    return rows if isinstance(rows, dict) else {}


def _scrubbing(
    files: list[Path], timed: list[Path], sources: _Sources
) -> list[dict[str, Any] | None]:
    """Per event, the newest file that counted it (one run may count one event only)."""
    sizes: dict[str, Any] = {}
    rss_source = None
    for timed_path in timed:
        timed_data = _load(timed_path)
        per_event = _results(timed_data).get("microseconds_per_event")
        if isinstance(per_event, dict):
            sizes, rss_source = per_event, sources.use(timed_path, timed_data)
            break
    cells: list[dict[str, Any] | None] = []
    for event in SCRUB_EVENTS:
        cell = None
        for path in files:
            data = _load(path)
            row = _scrubbing_rows(data).get(event)
            if not isinstance(row, dict) or not row.get("event_scrubber_recursive"):
                continue
            timed_row = sizes.get(event) or {}
            cell = {
                "event": event,
                "size_kb": timed_row.get("size_kb"),
                "ours": row["ours"],
                "ours_pure": row.get("ours_pure"),  # without the `fast` extra, where counted
                "event_scrubber_recursive": row["event_scrubber_recursive"],
                "ratio": round(row["ours"] / row["event_scrubber_recursive"], 3),
                "peak_rss_mb": timed_row.get("peak_rss_mb"),
                "rss_source": rss_source if timed_row else None,
                "source": sources.use(path, data),
            }
            break
        cells.append(cell)
    return cells


def _targets(
    http: list[dict[str, Any] | None],
    inprocess: list[dict[str, Any] | None],
    inbox: list[dict[str, Any]],
    scrubbing: list[dict[str, Any] | None],
) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(target: str, figure: str | None, met: bool | None) -> None:
        targets.append({"target": target, "figure": figure, "met": met})

    d = http[5]
    add(
        "install() at traces 0.1 over HTTP >= 0.70 of no Sentry (req/s)",
        f"{d['ratio']:.2f}" if d and d["ratio"] is not None else None,
        None if not d or d["ratio"] is None else d["ratio"] >= 0.70,
    )
    untraced = inprocess[4]
    add(
        "install() untraced, in-process >= 0.90 of no Sentry (instructions)",
        f"{untraced['ratio']:.2f}" if untraced and untraced["ratio"] is not None else None,
        None if not untraced or untraced["ratio"] is None else untraced["ratio"] >= 0.90,
    )
    for mode, cells, key, higher in (
        ("HTTP req/s", http, "rps", True),
        ("in-process instructions", inprocess, "instructions", False),
    ):
        for ours_row, sdk_row in TWINS.items():
            ours, sdk = cells[ours_row], cells[sdk_row]
            rate = REQUEST_PATH[ours_row][0].split(", ", 1)[1]
            figure = met = None
            if ours and sdk:
                figure = f"{ours[key]:,} vs {sdk[key]:,}"
                met = ours[key] >= sdk[key] if higher else ours[key] <= sdk[key]
            add(f"install() never below bare SDK, {rate}, {mode}", figure, met)
    for cell in inbox:
        rss = cell.get("peak_rss_mb")
        figure = met = None
        if cell.get("rate"):
            figure = f"{cell['rate']:,}/s, {rss if rss is not None else '?'} MB"
            met = (
                cell["rate"] >= cell["wanted_per_s"]
                and rss is not None
                and rss <= INBOX_RSS_MB
                and not cell.get("missing")
            )
        add(
            f"inbox >= {cell['wanted_per_s']:,.0f} events/s at {cell['event_kb']} KB "
            f"within {INBOX_RSS_MB:.0f} MB",
            figure,
            met,
        )
    for event, scrub in zip(SCRUB_EVENTS, scrubbing, strict=True):
        add(
            f"scrubbing cold <= 1.0x EventScrubber(recursive=True), {event} event",
            f"{scrub['ratio']:.2f}x" if scrub else None,
            None if not scrub else scrub["ratio"] <= 1.0,
        )
    return targets


def build(directory: Path | None = None, only: Iterable[Path] | None = None) -> dict[str, Any]:
    """The summary's figures: from the files in `only` if given (one run's), else the newest."""
    directory = directory or result_file.RESULTS_DIR
    chosen = {Path(p).name for p in only} if only is not None else None

    def files(name: str) -> list[Path]:
        return [p for p in _files(directory, name) if chosen is None or p.name in chosen]

    sources = _Sources()
    http = _http(files("overhead"), sources)
    inprocess = _inprocess(files("inprocess-instructions"), sources)
    inbox = _inbox(files("inbox-ingest"), sources)
    scrubbing = _scrubbing(files("scrubbing-instructions"), files("scrubbing"), sources)
    return {
        "request_path": [
            {"label": label, "http": h, "inprocess": p}
            for (label, _, _), h, p in zip(REQUEST_PATH, http, inprocess, strict=True)
        ],
        "inbox": inbox,
        "scrubbing": [s for s in scrubbing if s],
        "targets": _targets(http, inprocess, inbox, scrubbing),
        "sources": sources.files,
    }


# --- rendering: a pure function of a summary file's `results` (the README test relies on it) ---


def _number(value: Any, fmt: str = ",.0f", missing: str = NOT_MEASURED) -> str:
    return missing if value is None else format(value, fmt)


def _tables(summary: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    order = list(summary.get("sources") or {})

    def mark(name: str | None) -> str:
        return f"[{order.index(name) + 1}]" if name in order else ""

    request_rows = []
    for row in summary.get("request_path") or []:
        h, p = row.get("http") or {}, row.get("inprocess") or {}
        request_rows.append(
            [
                row["label"],
                _number(h.get("rps")),
                _number(h.get("ratio"), ".2f"),
                _number(h.get("peak_rss_mb"), ".1f"),
                mark(h.get("source")),
                _number(p.get("instructions")),
                _number(p.get("ratio"), ".2f"),
                _number(p.get("peak_rss_mb"), ".1f"),
                mark(p.get("source")),
            ]
        )
    inbox_rows = [
        [
            f"{cell['event_kb']} KB",
            _number(cell.get("rate")),
            _number(cell.get("senders"), "d"),
            _number(cell.get("peak_rss_mb"), ".1f"),
            mark(cell.get("source")),
        ]
        for cell in summary.get("inbox") or []
    ]
    scrub_rows = [
        [
            cell["event"] + ("" if cell.get("size_kb") is None else f" ({cell['size_kb']:.0f} KB)"),
            _number(cell["ours"]),
            _number(cell["event_scrubber_recursive"]),
            f"{cell['ratio']:.2f}x",
            _number(cell.get("ours_pure")),
            _pure_ratio(cell),
            _number(cell.get("peak_rss_mb"), ".1f"),
            " ".join(filter(None, (mark(cell["source"]), mark(cell.get("rss_source"))))),
        ]
        for cell in summary.get("scrubbing") or []
    ] or [[NOT_MEASURED, "", "", "", "", "", "", ""]]
    met = {True: "met", False: "NOT MET", None: NOT_MEASURED}
    target_rows = [
        [t["target"], t["figure"] or NOT_MEASURED, met[t["met"]]]
        for t in summary.get("targets") or []
    ]
    source_rows = [
        [
            f"[{number}]",
            name,
            str(info.get("date") or ""),
            _number(info.get("loadavg_before"), ".1f", "?")
            + " / "
            + _number(info.get("loadavg_after"), ".1f", "?"),
        ]
        for number, (name, info) in enumerate((summary.get("sources") or {}).items(), 1)
    ]
    return [
        (
            "Request path, trivial endpoint (HTTP: uvicorn + wrk; in-process: callgrind)",
            [
                "configuration",
                "HTTP req/s",
                "vs none",
                "peak RSS MB",
                "from",
                "instr/request",
                "vs none",
                "peak RSS MB",
                "from",
            ],
            request_rows,
        ),
        (
            "Inbox ingest (gzip envelopes, every ack checked against SQLite)",
            ["event", "events/s", "senders", "peak RSS MB", "from"],
            inbox_rows,
        ),
        (
            "Scrubbing, cold, CPU instructions per event",
            [
                "event",
                "Scrubber (`fast` extra)",
                "EventScrubber(recursive=True)",
                "ratio",
                "Scrubber, no extra",
                "ratio",
                "peak RSS MB",
                "from",
            ],
            scrub_rows,
        ),
        ("Issue 16's targets", ["target", "figure", "met"], target_rows),
        ("Files (load average: before / after)", ["", "file", "date", "load"], source_rows),
    ]


def _pure_ratio(cell: dict[str, Any]) -> str:
    pure = cell.get("ours_pure")
    return NOT_MEASURED if not pure else f"{pure / cell['event_scrubber_recursive']:.2f}x"


def render(summary: dict[str, Any], *, markdown: bool = False) -> str:
    """The side-by-side tables, as text for the terminal or as the README's markdown."""
    out: list[str] = []
    for title, header, rows in _tables(summary):
        if markdown:
            out.append(f"**{title}**\n")
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join("---" for _ in header) + "|")
            out.extend("| " + " | ".join(row) + " |" for row in rows)
        else:
            widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
            out.append(title)
            out.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
            out.extend(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                for row in rows
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def write(summary: dict[str, Any], built_from: list[str]) -> Path:
    return result_file.write(
        "summary",
        summary,
        table=render(summary),
        settings={"built_from": built_from},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print the README's table too")
    parser.add_argument("--show", type=Path, help="render this summary file; build nothing")
    parser.add_argument("--no-write", action="store_true", help="print only; write no file")
    parser.add_argument("--dir", type=Path, default=None, help="where the result files are")
    args = parser.parse_args(argv)
    if args.show:
        summary = _results(_load(args.show))
        print(render(summary, markdown=args.markdown), end="")
        return 0
    summary = build(args.dir)
    if args.no_write:
        print(render(summary), end="")
    else:
        path = write(summary, sorted(summary["sources"]))
        print(f"(summary: {path.name})")
    if args.markdown:
        print("\n" + render(summary, markdown=True), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
