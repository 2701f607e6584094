"""CPU instructions the inbox spends per error event (parse, records, group commit into SQLite),
today's code beside git REV's: repeatable on a busy machine.

    .venv/bin/python benchmarks/bench_inbox_ingest_instructions.py [--against REV]

bench_inbox_ingest.py measures the running server, but on this shared machine its throughput and
CPU per event move by tens of percent between runs of the same code; callgrind's instruction count
does not. The events are bench_inbox_ingest's (sentry-sdk shaped, ~6 KB, sent_at now); each figure
is the count for 160 events minus the count for 40, over 120, so start-up, imports and the
database's creation cancel out. REV's ``src`` is taken with ``git archive``. Needs valgrind; writes
benchmarks/results/inbox-ingest-instructions-<time>.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL, LARGE = 40, 160
_SEPARATOR = b"\n--next envelope--\n"


def child(count: int, bodies_file: str) -> None:
    """Ingest ``count`` events as the server does: 8 requests per group commit. The bodies are
    built by the parent: building and compressing them is the sender's work, not the inbox's."""
    from fastapi_sentry.inbox import InboxStore
    from fastapi_sentry.inbox._envelope import parse_envelope
    from fastapi_sentry.inbox._ingest import records_from_envelope

    bodies = gzip.decompress(Path(bodies_file).read_bytes()).split(_SEPARATOR)[:count]
    with tempfile.TemporaryDirectory() as tmp, InboxStore(Path(tmp) / "inbox.db") as store:
        project = store.default_project().id
        for start in range(0, count, 8):
            now = time.time()
            store.write_many(
                [
                    store.ingest_job(project, records_from_envelope(parse_envelope(body), now), now)
                    for body in bodies[start : start + 8]
                ]
            )


def instructions(src: Path, count: int, bodies_file: Path) -> int:
    from callgrind import count_instructions  # the parent's only

    argv = [__file__, "--child", str(count), "--bodies", str(bodies_file)]
    return count_instructions(argv, pythonpath=[src, ROOT])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="HEAD", metavar="REV")
    parser.add_argument("--child", type=int, metavar="COUNT")
    parser.add_argument("--bodies", metavar="FILE")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.bodies)
        return
    sys.path[:0] = [str(ROOT / "benchmarks")]
    from bench_inbox_ingest import make_body

    with tempfile.TemporaryDirectory() as tmp:
        bodies_file = Path(tmp) / "bodies.gz"
        plain = [gzip.decompress(make_body(number)[1]) for number in range(LARGE)]
        bodies_file.write_bytes(gzip.compress(_SEPARATOR.join(plain), compresslevel=1))
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.against, "src"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        sources = {"ours": ROOT / "src", "before": Path(tmp) / "src"}
        per = {
            which: (instructions(src, LARGE, bodies_file) - instructions(src, SMALL, bodies_file))
            // (LARGE - SMALL)
            for which, src in sources.items()
        }
    change = per["ours"] / per["before"] - 1
    print(f"Instructions per error event (parse + records + commit), ours beside {args.against}:")
    print(f"ours {per['ours']:,}  before {per['before']:,}  change {change:+.1%}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"inbox-ingest-instructions-{stamp}.json"
    result = {"against": args.against, "instructions_per_event": {**per, "change": change}}
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
