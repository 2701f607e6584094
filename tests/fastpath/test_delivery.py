"""Errors first, and errors outlive an outage: the delivery transport against real receivers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from fastapi import FastAPI

import fastapi_sentry
from fastapi_sentry._fastpath import transport as _transport
from fastapi_sentry._fastpath.delivery import (
    BULK_SENDERS,
    DeliveryConfig,
    DeliveryTransport,
    delivery_transport,
)
from tests.fault_support import FaultReceiver, child_env
from tests.support.receiver import Receiver, decompress, parse_envelope

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.lean_only  # the fallback keeps sentry-sdk's own transport (tested below)


def delivered_items(receiver: FaultReceiver, type: str) -> list[dict[str, Any]]:
    """Payloads of `type` items in the requests the receiver answered 200."""
    with receiver._lock:
        arrivals = [a for a in receiver.arrivals if a.mode in ("healthy", "slow")]
    items = []
    for arrival in arrivals:
        envelope = parse_envelope(decompress(arrival.body, arrival.encoding))
        for headers, payload in envelope.items:
            if headers.get("type") == type:
                items.append(json.loads(payload))
    return items


def markers(events: list[dict[str, Any]], prefix: str) -> list[str]:
    """The messages of the events that start with `prefix` (one per event, repeats kept)."""
    found = []
    for event in events:
        message = event.get("message") or (event.get("logentry") or {}).get("message") or ""
        if message.startswith(prefix):
            found.append(message)
    return found


def wait_for_markers(receiver: FaultReceiver, prefix: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(set(markers(delivered_items(receiver, "event"), prefix))) < count:
        if time.monotonic() > deadline:
            got = len(set(markers(delivered_items(receiver, "event"), prefix)))
            raise TimeoutError(f"{got} of {count} {prefix!r} events arrived within {timeout} s")
        time.sleep(0.05)


def transport() -> DeliveryTransport:
    current = sentry_sdk.get_client().transport
    assert isinstance(current, DeliveryTransport)
    return current


def client_report_counts(receiver: FaultReceiver | Receiver) -> Counter[tuple[str, str]]:
    """(reason, category) -> quantity over every client report the receiver got."""
    counts: Counter[tuple[str, str]] = Counter()
    if isinstance(receiver, Receiver):
        reports = receiver.envelope_items("client_report")
    else:
        reports = delivered_items(receiver, "client_report")
    for report in reports:
        for entry in report.get("discarded_events", []):
            counts[entry["reason"], entry["category"]] += entry["quantity"]
    return counts


def test_errors_raised_while_the_receiver_is_down_all_arrive_once_after() -> None:
    prefix = f"outage-{uuid.uuid4().hex}"
    with FaultReceiver() as receiver:
        fastapi_sentry.install(FastAPI(), dsn=receiver.dsn, enable_tracing=False)
        sentry_sdk.capture_message(f"{prefix} before")
        sentry_sdk.flush(timeout=5)
        receiver.set_mode("refuse")
        down_until = time.monotonic() + 3.0
        raised = 0
        while time.monotonic() < down_until:  # one error every 0.1 s for the 3 s it is down
            sentry_sdk.capture_message(f"{prefix} #{raised}", level="error")
            raised += 1
            time.sleep(0.1)
        sentry_sdk.flush(timeout=2)  # what could be tried has been: the rest waits in the outbox
        assert transport().snapshot().outbox_events >= raised - 1
        receiver.set_mode("healthy")
        wait_for_markers(receiver, f"{prefix} #", raised, timeout=30)
        sentry_sdk.flush(timeout=5)
        found = markers(delivered_items(receiver, "event"), f"{prefix} #")
        assert sorted(found) == sorted(f"{prefix} #{n}" for n in range(raised))  # no repeats
        snapshot = transport().snapshot()
        assert snapshot.outbox_events == 0
        assert snapshot.sent["error"] == raised + 1
        assert not any(reason for reason, category in snapshot.dropped if category == "error")


def test_a_queue_full_of_transactions_never_costs_an_error() -> None:
    prefix = f"busy-{uuid.uuid4().hex}"
    with Receiver(delay=0.02) as receiver:
        fastapi_sentry.install(
            FastAPI(),
            dsn=receiver.dsn,
            traces_sample_rate=1.0,
            profiles_sample_rate=0.0,
            transport_queue_size=5,
        )
        for n in range(30):
            for _ in range(10):
                with sentry_sdk.start_transaction(name="busy", sampled=True):
                    pass
            sentry_sdk.capture_message(f"{prefix} #{n}", level="error")
        sentry_sdk.flush(timeout=30)
        found = markers(receiver.envelope_items("event"), f"{prefix} #")
        assert sorted(found) == sorted(f"{prefix} #{n}" for n in range(30))
        dropped = transport().snapshot().dropped
        assert dropped[("queue_overflow", "transaction")] > 0  # the queue was full
        assert not any(category == "error" for _, category in dropped)
        sentry_sdk.flush(timeout=5)  # the forced client report goes out
        counts = client_report_counts(receiver)
        assert counts["queue_overflow", "transaction"] == dropped[("queue_overflow", "transaction")]


def test_the_outbox_keeps_its_bounds_and_reports_what_it_let_go() -> None:
    prefix = f"bounded-{uuid.uuid4().hex}"
    with FaultReceiver() as receiver:
        receiver.set_mode("refuse")
        fastapi_sentry.install(
            FastAPI(), dsn=receiver.dsn, enable_tracing=False, spool_max_events=3
        )
        for n in range(10):
            sentry_sdk.capture_message(f"{prefix} #{n}", level="error")
        sentry_sdk.flush(timeout=5)
        snapshot = transport().snapshot()
        assert snapshot.outbox_events == 3
        assert snapshot.dropped[("cache_overflow", "error")] == 7
        receiver.set_mode("healthy")
        wait_for_markers(receiver, f"{prefix} #", 3, timeout=30)
        sentry_sdk.flush(timeout=5)
        found = markers(delivered_items(receiver, "event"), f"{prefix} #")
        assert sorted(found) == [f"{prefix} #{n}" for n in (7, 8, 9)]  # the oldest went first
        assert client_report_counts(receiver)["cache_overflow", "error"] == 7


def test_the_outbox_keeps_its_byte_bound() -> None:
    with FaultReceiver() as receiver:
        receiver.set_mode("refuse")
        fastapi_sentry.install(FastAPI(), dsn=receiver.dsn, enable_tracing=False, spool_max_mb=0.05)
        for n in range(20):
            sentry_sdk.capture_message(f"big #{n} " + "x" * 8000, level="error")
        sentry_sdk.flush(timeout=5)
        snapshot = transport().snapshot()
        assert 0 < snapshot.outbox_bytes <= 0.05 * 1024 * 1024
        assert snapshot.outbox_events + snapshot.dropped[("cache_overflow", "error")] == 20
        assert snapshot.outbox_events < 20


def test_a_rate_limit_is_waited_out_by_the_outbox() -> None:
    prefix = f"limited-{uuid.uuid4().hex}"
    retry_after = 2
    with FaultReceiver() as receiver:
        receiver.set_mode("refuse")
        fastapi_sentry.install(FastAPI(), dsn=receiver.dsn, enable_tracing=False)
        for n in range(5):
            sentry_sdk.capture_message(f"{prefix} #{n}", level="error")
        sentry_sdk.flush(timeout=5)
        assert transport().snapshot().outbox_events == 5
        receiver.set_mode("ratelimit", retry_after=retry_after)
        deadline = time.monotonic() + 30
        while receiver.count("ratelimit") == 0:  # the breaker's pause ends, the head goes out
            assert time.monotonic() < deadline, "the outbox never tried again"
            time.sleep(0.02)
        receiver.set_mode("healthy")
        with receiver._lock:
            limited_at = next(a.at for a in receiver.arrivals if a.mode == "ratelimit")
        wait_for_markers(receiver, f"{prefix} #", 4, timeout=30)
        sentry_sdk.capture_message(f"{prefix} after", level="error")
        sentry_sdk.flush(timeout=5)
        with receiver._lock:
            inside = [
                a for a in receiver.arrivals if limited_at < a.at < limited_at + retry_after - 0.2
            ]
        assert inside == []  # nothing was sent while the limit held
        found = markers(delivered_items(receiver, "event"), f"{prefix} ")
        # the one answered 429 is the receiver's to count; the other four, then the new one
        assert sorted(found) == sorted(
            [*(f"{prefix} #{n}" for n in range(1, 5)), f"{prefix} after"]
        )
        assert receiver.count("ratelimit") == 1


_SPOOL_SCRIPT = """
import logging, sys, sentry_sdk
from fastapi import FastAPI
import fastapi_sentry
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
fastapi_sentry.install(FastAPI())
for n in range(int(sys.argv[1])):
    sentry_sdk.capture_message(f"{sys.argv[2]} #{n}", level="error")
sentry_sdk.flush(timeout=5)
sentry_sdk.get_client().close(timeout=2)
print("ok")
"""


def run_service(spool: Path, dsn: str, count: int, prefix: str) -> str:
    env = child_env(
        {
            "SENTRY_DSN": dsn,
            "SENTRY_SPOOL_DIR": str(spool),
            "SENTRY_ENABLE_TRACING": "false",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", _SPOOL_SCRIPT, str(count), prefix],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    return result.stderr


def test_the_spool_survives_a_restart_and_sets_damaged_files_aside(tmp_path: Path) -> None:
    prefix = f"spooled-{uuid.uuid4().hex}"
    spool = tmp_path / "spool"
    with FaultReceiver() as receiver:
        receiver.set_mode("refuse")
        log = run_service(spool, receiver.dsn, 5, prefix)
        assert "5 undelivered error(s) kept in SENTRY_SPOOL_DIR" in log
        files = sorted((spool / "slot-0").glob("*.envelope"))
        assert len(files) == 5
        # a file cut short (a disk full, an editor), garbage, and a write that never finished
        files[0].write_bytes(files[0].read_bytes()[:-10])
        (spool / "slot-0" / "00000000000000000000-1-000001.envelope").write_bytes(b"\x00garbage")
        (spool / "slot-0" / "00000000000000000001-1-000001.tmp").write_bytes(b"half")
        receiver.set_mode("healthy")
        log = run_service(spool, receiver.dsn, 0, prefix)
        found = markers(delivered_items(receiver, "event"), f"{prefix} #")
    assert len(found) == 4
    assert len(set(found)) == 4
    assert f"{prefix} #0" not in found  # the damaged one is not sent half
    assert log.count("Set aside a damaged spool file") == 2, log
    assert sorted(p.suffix for p in (spool / "slot-0").iterdir() if p.name != ".lock") == [
        ".corrupt",
        ".corrupt",
    ]


def test_a_second_process_on_the_same_spool_takes_its_own_slot(tmp_path: Path) -> None:
    from fastapi_sentry._fastpath.spool import claim_slot

    first = claim_slot(tmp_path)
    second = claim_slot(tmp_path)
    assert first is not None
    assert second is not None
    assert (first[0].name, second[0].name) == ("slot-0", "slot-1")
    first[1].close()
    third = claim_slot(tmp_path)
    assert third is not None
    assert third[0].name == "slot-0"
    second[1].close()
    third[1].close()


@pytest.mark.sdk_errors_expected
def test_the_breaker_pause_moves_errors_to_the_outbox_not_the_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_transport, "FIRST_BACKOFF", 60.0)
    with Receiver(status=500) as receiver:
        fastapi_sentry.install(FastAPI(), dsn=receiver.dsn, enable_tracing=False)
        for n in range(10):
            sentry_sdk.capture_message(f"paused #{n}", level="error")
        sentry_sdk.flush(timeout=5)
        snapshot = transport().snapshot()
        assert len(receiver.bodies) == 1  # one 500, then the pause
        assert snapshot.paused
        assert snapshot.outbox_events == 10
        assert snapshot.send_errors == 1
        receiver.status = 200
        transport()._closed_at = time.monotonic()  # the pause is over, without waiting a minute
        transport().delivery.wake()
        sentry_sdk.flush(timeout=10)
        found = markers(receiver.envelope_items("event"), "paused #")
        # the one answered 500, then all ten once each, oldest first
        assert found == ["paused #0", *(f"paused #{n}" for n in range(10))]


def is_transaction(body: bytes) -> bool:
    return b'"type":"transaction"' in body


def install_traced(receiver: Receiver) -> None:
    fastapi_sentry.install(
        FastAPI(), dsn=receiver.dsn, traces_sample_rate=1.0, profiles_sample_rate=0.0
    )


def send_transactions(prefix: str, count: int) -> None:
    for n in range(count):
        with sentry_sdk.start_transaction(name=f"{prefix} #{n}", sampled=True):
            pass


def transaction_names(receiver: Receiver) -> list[str]:
    return [str(t.get("transaction")) for t in receiver.envelope_items("transaction")]


def test_transactions_are_sent_several_at_a_time_and_each_once() -> None:
    """One send at a time delivers one envelope per round trip (10-50 a second to a Sentry
    20-100 ms away): the receiver holds every answer, and `BULK_SENDERS` requests, no more,
    reach it before the first is answered."""
    gate = threading.Event()
    with Receiver(gate=gate, hold=is_transaction) as receiver:
        install_traced(receiver)
        try:
            send_transactions("held", 20)
            receiver.wait_arrived(BULK_SENDERS)
        finally:
            gate.set()
        sentry_sdk.flush(timeout=30)
        assert sorted(transaction_names(receiver)) == sorted(f"held #{n}" for n in range(20))
        assert receiver.most_held == BULK_SENDERS
        assert transport().snapshot().sent["transaction"] == 20


def test_over_urllib3_the_bulk_senders_each_keep_a_pooled_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """https DSNs, proxies and socket options keep sentry-sdk's urllib3 pool: it has room for a
    connection per sender, so none is opened and thrown away for each envelope."""
    gate = threading.Event()
    with Receiver(gate=gate, hold=is_transaction, keep_alive=True) as receiver:
        sentry_sdk.init(
            dsn=receiver.dsn,
            traces_sample_rate=1.0,
            socket_options=[],  # what keeps the urllib3 path on a plain http DSN
            transport=delivery_transport(DeliveryConfig()),
        )
        assert transport()._connection is None
        try:
            send_transactions("pooled", 12)
            receiver.wait_arrived(BULK_SENDERS)
        finally:
            gate.set()
        sentry_sdk.flush(timeout=30)
        assert sorted(transaction_names(receiver)) == sorted(f"pooled #{n}" for n in range(12))
        assert receiver.most_held == BULK_SENDERS
    assert "Connection pool is full" not in caplog.text


@pytest.mark.sdk_errors_expected
def test_sends_that_fail_together_open_the_breaker_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pause doubles with each failed try; sends that were in flight together are one try."""
    monkeypatch.setattr(_transport, "FIRST_BACKOFF", 60.0)
    gate = threading.Event()
    with Receiver(gate=gate, hold=is_transaction, status=500) as receiver:
        install_traced(receiver)
        try:
            send_transactions("failing", BULK_SENDERS)
            receiver.wait_arrived(BULK_SENDERS)
        finally:
            gate.set()
        sentry_sdk.flush(timeout=30)
        assert transport()._failures == 1
        assert transport().snapshot().dropped[("network_error", "transaction")] == BULK_SENDERS


def test_flush_waits_for_every_send_in_flight() -> None:
    """With nothing left in the queues, only the sends waiting for their answers remain (one
    bulk sender is left free: the client report `flush` queues must not be what it waits for)."""
    gate = threading.Event()
    at_flush_end: list[int] = []

    def flush() -> None:
        sentry_sdk.flush(timeout=30)
        at_flush_end.append(len(receiver.envelope_items("transaction")))

    with Receiver(gate=gate, hold=is_transaction) as receiver:
        install_traced(receiver)
        flusher = threading.Thread(target=flush)
        try:
            send_transactions("in flight", BULK_SENDERS - 1)
            receiver.wait_arrived(BULK_SENDERS - 1)  # all taken from the queue, none answered
            flusher.start()
            flusher.join(0.5)  # a flush that did not wait would be done by now
        finally:
            gate.set()
        flusher.join(30)
    assert at_flush_end == [BULK_SENDERS - 1]


def test_an_error_is_not_held_up_by_transactions_waiting_for_answers() -> None:
    gate = threading.Event()
    with Receiver(gate=gate, hold=is_transaction) as receiver:
        install_traced(receiver)
        try:
            send_transactions("slow", 40)
            receiver.wait_arrived(BULK_SENDERS)  # every bulk sender waits for an answer
            for n in range(3):
                sentry_sdk.capture_message(f"urgent #{n}", level="error")
            receiver.wait_for_items("event", 3)  # while the transactions are still held
        finally:
            gate.set()
        sentry_sdk.flush(timeout=30)
        assert sorted(transaction_names(receiver)) == sorted(f"slow #{n}" for n in range(40))
        assert markers(receiver.envelope_items("event"), "urgent #") == [
            f"urgent #{n}" for n in range(3)
        ]


def test_errors_captured_after_transactions_are_sent_before_them() -> None:
    """What a graceful stop relies on: in the time it has, the errors go out first. The receiver
    holds every request until the first error has arrived, so what is queued behind the
    transactions in flight does not depend on how fast this machine is."""
    gate = threading.Event()
    with Receiver(gate=gate) as receiver:
        install_traced(receiver)
        try:
            send_transactions("before the errors", 40)
            receiver.wait_arrived(BULK_SENDERS)  # the bulk senders are busy
            for n in range(10):
                sentry_sdk.capture_message(f"first #{n}", level="error")
            receiver.wait_arrived(BULK_SENDERS + 1)  # and the first error is on its way
        finally:
            gate.set()
        sentry_sdk.flush(timeout=30)
        kinds = [
            {str(headers.get("type")) for headers, _ in envelope.items}
            for envelope in receiver.envelopes()
        ]
    # the transactions in flight and the ten errors (their answers in any order), then the
    # 36 transactions queued before the errors: none started while an error waited
    first = BULK_SENDERS + 10
    assert sum("event" in types for types in kinds[:first]) == 10, kinds[: first + 5]
    assert all(types == {"transaction"} for types in kinds[first:]), kinds
    assert sum("transaction" in types for types in kinds) == 40


def test_a_child_forked_while_transactions_are_in_flight_sends_its_own_once() -> None:
    """Celery's prefork pool forks whenever it likes: the child gets the parent's queues and
    locks as they were, but not its threads. It must neither hang nor wait for the parent's
    sends, nor send what the parent had queued (the parent does)."""
    gate = threading.Event()
    with Receiver(gate=gate, hold=lambda body: b"parent #" in body) as receiver:
        install_traced(receiver)
        try:
            send_transactions("parent", BULK_SENDERS + 2)
            receiver.wait_arrived(BULK_SENDERS)  # four in flight, two queued
            pid = os.fork()
            if pid == 0:
                code = 1
                signal.alarm(20)  # a hang ends the child (SIGALRM) instead of the test run
                try:
                    send_transactions("child", 1)
                    sentry_sdk.capture_message("from the child", level="error")
                    sentry_sdk.flush(timeout=10)
                    snapshot = transport().snapshot()
                    done = not transport().delivery._active and snapshot.queued == {
                        "errors": 0,
                        "other": 0,
                    }
                    sent = (snapshot.sent.get("transaction"), snapshot.sent.get("error"))
                    code = 0 if done and sent == (1, 1) else 2
                finally:
                    os._exit(code)
        finally:
            gate.set()
        _, status = os.waitpid(pid, 0)
        sentry_sdk.flush(timeout=30)
        names = transaction_names(receiver)
        errors = markers(receiver.envelope_items("event"), "from the child")
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(names) == sorted(["child #0", *(f"parent #{n}" for n in range(BULK_SENDERS + 2))])
    assert errors == ["from the child"]


def test_the_fallback_keeps_sentry_sdks_own_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an untested sentry-sdk nothing of the transport's private side is relied on: plain
    sentry-sdk behaviour (one queue, no outbox), as the README says."""
    from fastapi_sentry._fastpath import _sdk_seam

    monkeypatch.setattr(_sdk_seam, "PROBLEM", "forced by this test")
    with Receiver() as receiver:
        fastapi_sentry.install(FastAPI(), dsn=receiver.dsn, enable_tracing=False)
        current = sentry_sdk.get_client().transport
        assert type(current) is sentry_sdk.transport.HttpTransport
        sentry_sdk.capture_message("fallback", level="error")
        sentry_sdk.flush(timeout=5)
        assert markers(receiver.envelope_items("event"), "fallback") == ["fallback"]


@pytest.mark.sdk_errors_expected
@pytest.mark.parametrize("status", [500, 503])
def test_an_envelope_the_receiver_always_fails_on_does_not_block_the_rest(
    monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    """A 500 to the same envelope five times drops it (`send_error`); a 503 is the receiver
    being down, so the envelope waits however long that lasts."""
    from fastapi_sentry._fastpath import delivery

    monkeypatch.setattr(_transport, "FIRST_BACKOFF", 0.01)
    monkeypatch.setattr(_transport, "MAX_BACKOFF", 0.02)
    attempts = delivery.MAX_SERVER_ERRORS
    with Receiver(status=status) as receiver:
        fastapi_sentry.install(FastAPI(), dsn=receiver.dsn, enable_tracing=False)
        sentry_sdk.capture_message("poison", level="error")
        # retried with short pauses: a 500 five times, a 503 for as long as it lasts
        receiver.wait_for(attempts if status == 500 else 2 * attempts)
        sentry_sdk.flush(timeout=5)
        snapshot = transport().snapshot()
        if status == 500:
            assert snapshot.dropped[("send_error", "error")] == 1
            assert len(markers(receiver.envelope_items("event"), "poison")) == attempts
            assert snapshot.outbox_events == 0
        else:
            assert snapshot.outbox_events == 1
            assert ("send_error", "error") not in snapshot.dropped
        receiver.status = 200
        sentry_sdk.capture_message("after", level="error")
        sentry_sdk.flush(timeout=10)
        assert markers(receiver.envelope_items("event"), "after")  # nothing blocks it
