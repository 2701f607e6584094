"""The README's "Performance at a glance" table comes from a file: it is what benchmarks/summary.py
renders from the summary file the README names, character for character."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SUMMARY = (sys.executable, str(ROOT / "benchmarks" / "summary.py"))
BLOCK = re.compile(
    r"<!-- summary: (benchmarks/results/summary-\S+\.json) -->\n(.*?)\n<!-- /summary -->", re.S
)


def _summary(*args: str) -> str:
    return subprocess.run(
        [*SUMMARY, *args], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout


def test_readme_table_is_the_named_summary_file_rendered() -> None:
    match = BLOCK.search(README.read_text())
    assert match, "README has no <!-- summary: benchmarks/results/summary-<time>.json --> block"
    path = ROOT / match[1]
    assert json.loads(path.read_text())["benchmark"] == "summary"
    assert match[2] == _summary("--show", str(path), "--markdown"), (
        f"README's table is not {match[1]} rendered; paste the output of "
        f"`benchmarks/summary.py --show {match[1]} --markdown`"
    )


def test_summary_names_the_files_it_was_built_from_and_they_are_kept() -> None:
    match = BLOCK.search(README.read_text())
    assert match
    summary = json.loads((ROOT / match[1]).read_text())
    built_from = summary["settings"]["built_from"]
    assert built_from, "the summary names no result file"
    assert set(summary["results"]["sources"]) <= set(built_from)
    for name in built_from:
        assert (ROOT / "benchmarks" / "results" / name).is_file(), f"{name} is not kept"


def test_a_part_not_run_shows_as_not_measured_and_targets_are_judged(tmp_path: Path) -> None:
    rows = [{"senders": 8, "rate": 6000.0, "rss": 50.0, "missing": 0, "event_kb": 6}]
    inbox = tmp_path / "inbox-ingest-20260101T000000Z.json"
    inbox.write_text(json.dumps({"benchmark": "inbox-ingest", "results": {"by_senders": rows}}))
    shown = _summary("--dir", str(tmp_path), "--no-write")
    lines = {line.split("  ")[0]: line for line in shown.splitlines()}
    assert "6,000" in lines["6 KB"]
    assert lines["50 KB"].split()[2:] == ["not", "measured"] * 3
    assert lines["inbox >= 5,000 events/s at 6 KB within 100 MB"].endswith("  met")
    assert lines["install(), traces 0.1"].count("not measured") == 6
    assert not list(tmp_path.glob("summary-*.json"))  # --no-write
