"""Instructions the transport spends sending one sampled transaction, stage by stage.

`bench_inprocess.py --instructions` gives the whole cost of a sampled request; this one splits
the part after the event reaches the transport. A child process makes one real transaction
envelope (`install()` at traces 1.0, one request to a trivial endpoint), then repeats one stage
on it under valgrind's callgrind:

- `copy`: nothing but making the fresh copies every stage sends (subtract it from the others)
- `serialize`: the envelope's bytes (the transport's `envelope_bytes` where it has one, else
  sentry-sdk's `Envelope.serialize`)
- `prepare`: the transport's `_prepare_envelope`: rate-limit check, bytes, compression, headers
- `post`: the transport's `_post`: all of the above plus the HTTP request and its answer
- `capture`: `capture_envelope` from the request's thread, sent by the transport's worker thread
  (what a sampled request really costs after its event is handed over), then a flush

Each stage runs with 100 and then 1,100 repetitions; the difference over 1,000 is one envelope's
count, so start-up cancels out. The receiver (HTTP/1.1 keep-alive, answers 200) runs in this
parent process and is not counted.

    python benchmarks/bench_send_instructions.py [--stages serialize,prepare,post,capture]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from bench_inprocess import _SCOPE, _receive, _received, _receiver, _send

STAGES = ("copy", "serialize", "prepare", "post", "capture")


def _envelope(dsn: str) -> tuple[Any, Any]:
    """The transport `install()` made and the envelope of one sampled request."""
    import sentry_sdk
    from fastapi import FastAPI

    import fastapi_sentry

    app = FastAPI()
    fastapi_sentry.install(app, dsn=dsn, traces_sample_rate=1.0, transport_queue_size=100_000)

    @app.get("/api/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    transport: Any = sentry_sdk.get_client().transport
    caught: list[Any] = []
    transport.capture_envelope = caught.append  # this instance only: keep, do not send
    driven: Any = app  # the ASGI types of the benchmark are looser than FastAPI's
    asyncio.run(driven(dict(_SCOPE), _receive, _send))
    del transport.capture_envelope
    envelope = next(e for e in caught if any(i.type == "transaction" for i in e.items))
    return transport, envelope


def _fresh(envelope: Any) -> Any:
    """The envelope as a new one: a payload keeps its bytes once made, a new event has none."""
    from sentry_sdk.envelope import Envelope, Item, PayloadRef

    items = [
        Item(payload=PayloadRef(json=i.payload.json), headers=i.headers) for i in envelope.items
    ]
    return Envelope(headers=envelope.headers, items=items)


def _child(stage: str, count: int, dsn: str) -> None:
    from sentry_sdk.envelope import Envelope

    transport, envelope = _envelope(dsn)
    serialize: Callable[[Envelope], bytes] = Envelope.serialize
    with contextlib.suppress(ImportError):  # the transport's own envelope bytes, where it has them
        from fastapi_sentry._fastpath.transport import envelope_bytes as serialize
    copies = [_fresh(envelope) for _ in range(count)]  # made in every stage: cancels out
    if stage == "serialize":
        for copy in copies:
            serialize(copy)
    elif stage == "prepare":
        for copy in copies:
            transport._prepare_envelope(copy)
    elif stage == "post":
        for copy in copies:
            transport._post(copy)
    elif stage == "capture":
        for copy in copies:
            transport.capture_envelope(copy)
        transport.flush(timeout=600)
    size = len(serialize(envelope))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"stage": stage, "envelope_bytes": size, "peak_rss_mb": peak_mb}))


def _run(stages: list[str], dsn: str) -> None:
    import result_file
    from callgrind import count_instructions

    load_before = result_file.machine()
    results: dict[str, dict[str, Any]] = {}
    lines = [f"{'stage':10} {'instr/envelope':>15} {'sent/rep':>9}"]
    for stage in stages:
        counts = []
        sent = 0
        for count in (100, 1100):
            before = _received["envelopes"]
            counts.append(
                count_instructions([__file__, "--child", stage, "--dsn", dsn, "--n", str(count)])
            )
            time.sleep(0.5)  # the last answers may still be being read
            sent += _received["envelopes"] - before
        per = (counts[1] - counts[0]) / 1000
        results[stage] = {"instructions_per_envelope": round(per), "sent_per_rep": sent / 1200}
        lines.append(f"{stage:10} {per:15,.0f} {sent / 1200:9.3f}")
        print(lines[-1], flush=True)
    lines.append(
        "\nsent/rep = envelopes the receiver got per repetition (post and capture send each one)"
    )
    result_file.write(
        "send-instructions",
        results,
        table="\n".join(lines),
        settings={"repetitions": [100, 1100], "tool": "valgrind --tool=callgrind"},
        load_before=load_before,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.n, args.dsn)
        return 0
    _run(args.stages.split(","), _receiver())
    return 0


if __name__ == "__main__":
    sys.exit(main())
