"""Errors first, and errors outlive an outage: the transport's queues and its outbox.

sentry-sdk sends every envelope through one queue (`transport_queue_size`): when a busy service
fills it with transactions, the next error is dropped like any transaction, and an envelope that
fails to send (receiver unreachable, 5xx) is gone. `DeliveryTransport` changes that:

- Two queues, each capped at `transport_queue_size`. Errors, messages and cron check-ins go
  through the first and are always sent before anything else, one at a time and in order, by a
  thread of their own; transactions, spans, sessions, profiles, logs and client reports share
  the second, and only they are dropped when it is full. `BULK_SENDERS` threads send those, each
  on its own kept-alive connection and waiting for its own answer: one sender delivers at most
  one envelope per round trip to the receiver. None of them starts a send while an error is
  queued or being sent, and none waits for another's answer.
- The outbox: an error or check-in that could not be delivered (connection refused or cut, a
  timeout, a 5xx answer, or the circuit breaker open) is kept, bounded by count and bytes, in
  memory and, with a spool directory, on disk (`spool.py`), so it survives a restart. It is sent
  oldest first once the receiver answers; while it is not empty a new error waits behind it.
- Never twice what was accepted: an envelope leaves the outbox on a 2xx answer, on a 429 (the
  receiver counted it as rate limited, which is why sentry-sdk records no loss for it either) and
  on another 4xx (refused for good: too large, malformed, a wrong key; counted as `send_error`).
  A send that failed after its body went out (a timeout waiting for the answer, a connection cut)
  may have been accepted all the same: it is sent again. Sentry, and the inbox, keep an event id
  once, so the resend cannot show up twice, whereas dropping it could lose the error for good.
  A 5xx other than 502-504 (a receiver that is down) answered `MAX_SERVER_ERRORS` times to the
  same envelope drops it: one envelope the receiver cannot take must not hold back the rest.
- Rate limits (429, `Retry-After`, `X-Sentry-Rate-Limits`) are sentry-sdk's own bookkeeping: new
  events of a limited category are dropped as it drops them (`ratelimit_backoff`), and the outbox
  waits for the limit to end before it sends again.
- Every drop goes through sentry-sdk's `record_lost_event`, so it is in the next client report:
  `queue_overflow` (second queue full), `cache_overflow` (outbox full: the oldest goes),
  `network_error` (a transaction or the like that failed to send), `send_error` (refused),
  `ratelimit_backoff`; they are also counted for `GET /metrics`.
- A graceful stop (`shutdown_timeout`) sends the first queue, then the outbox (waiting out a
  breaker pause that ends in time), then the rest; what is left of errors is written to the spool
  when there is one.

sentry-sdk's private names used here come from `_sdk_seam`; with an untested sentry-sdk
`install()` keeps the SDK's own transport (one queue, no outbox), as documented in the README.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Literal, cast

from sentry_sdk.consts import EndpointType
from sentry_sdk.envelope import Envelope, Item
from sentry_sdk.integrations.logging import ignore_logger
from sentry_sdk.utils import capture_internal_exceptions
from sentry_sdk.worker import Worker

from fastapi_sentry._fastpath.http1 import Connection
from fastapi_sentry._fastpath.spool import Entry, Outbox, claim_slot
from fastapi_sentry._fastpath.transport import ResilientTransport

logger = logging.getLogger("fastapi_sentry.delivery")

#: Item types that travel first and are kept when they cannot be sent: errors and messages
#: (`event`), cron check-ins. Attachments of an error travel in its envelope.
PRIORITY_ITEM_TYPES = frozenset({"event", "check_in"})

#: How often the outbox looks again while a rate limit lasts, in seconds.
RATE_LIMIT_POLL = 1.0

Outcome = Literal["done", "retry", "failed"]  # failed: the receiver answered an error (5xx)

#: Answers of a receiver that is down behind a proxy or restarting: the envelope is not at fault.
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
#: Other 5xx answers one envelope may get before it is dropped (`send_error`): an envelope the
#: receiver fails on every time must not hold every error behind it for ever.
MAX_SERVER_ERRORS = 5
#: Transactions and the like in flight at once, each on a thread and a connection of its own. One
#: sender that waits for each answer delivers at most one envelope per round trip: 10-50 a second
#: against a receiver 20-100 ms away (`benchmarks/bench_delivery.py`).
BULK_SENDERS = 4
Job = Envelope | Callable[[], None]


@dataclass(frozen=True)
class DeliveryConfig:
    """What `install()` sets from the `SENTRY_SPOOL_*` settings."""

    spool_dir: str | None = None
    max_events: int = 1000
    max_bytes: int = 20 * 1024 * 1024


@dataclass
class DeliverySnapshot:
    """The transport's counters at one moment, for `GET /metrics`."""

    sent: dict[str, int] = field(default_factory=dict)  # data category -> items
    dropped: dict[tuple[str, str], int] = field(default_factory=dict)  # (reason, category)
    queued: dict[str, int] = field(default_factory=dict)  # queue -> envelopes
    outbox_events: int = 0
    outbox_bytes: int = 0
    send_errors: int = 0
    paused: bool = False
    rate_limited: bool = False
    last_success: float | None = None  # unix time


def is_priority(envelope: Envelope) -> bool:
    return any(item.type in PRIORITY_ITEM_TYPES for item in envelope.items)


def _categories(envelope: Envelope) -> tuple[str, ...]:
    return tuple(str(item.data_category) for item in envelope.items)


def _parse_categories(body: bytes) -> tuple[str, ...] | None:
    try:
        envelope = Envelope.deserialize(body)
    except Exception:
        return None
    return _categories(envelope) if envelope.items else None


#: every worker of this process, so a forked child can give each one fresh locks and threads
_workers: weakref.WeakSet[DeliveryWorker] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for worker in list(_workers):
        worker._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class DeliveryWorker(Worker):
    """sentry-sdk's `BackgroundWorker`, prioritised: one thread sends errors and the outbox, one
    at a time and in order; `bulk_senders` threads send the rest, each waiting for its own
    answer, so that many are in flight at once and an error never waits behind one."""

    def __init__(self, queue_size: int, bulk_senders: int = BULK_SENDERS) -> None:
        self.queue_size = queue_size
        self.bulk_senders = bulk_senders
        self._make_locks()
        self.priority: deque[Envelope] = deque()
        self.bulk: deque[Job] = deque()
        self.owner: DeliveryTransport | None = None
        self._active = 0  # jobs being done now, by any of the threads
        self._errors_busy = False  # the errors' thread is sending (queue or outbox)
        self._stopped = False
        self._threads: list[threading.Thread | None] = [None] * (1 + bulk_senders)
        self._thread_pid: int | None = None
        self._running = False  # every thread started (in `_thread_pid`) and none has ended
        _workers.add(self)

    def _make_locks(self) -> None:
        lock = threading.RLock()
        #: the errors' thread and `flush` wait on it; every change of state notifies it
        self.cond = threading.Condition(lock)
        #: the bulk threads wait on it, one woken per envelope
        self._bulk_ready = threading.Condition(lock)
        #: `flush` waits on it: notified when the last job being done is done
        self._idle = threading.Condition(lock)

    def _after_fork_in_child(self) -> None:
        """A fork copies the queues and the lock as they were, but none of the threads: a lock
        one of them held would never be released here. What was queued is the parent's to send
        (the child sending it too would deliver it twice); what was in flight is the parent's."""
        self._make_locks()
        self.priority.clear()
        self.bulk.clear()
        self._active = 0
        self._errors_busy = False
        self._threads = [None] * (1 + self.bulk_senders)
        self._thread_pid = None
        self._running = False
        if self.owner is not None:
            self.owner._after_fork_in_child()

    @property
    def is_alive(self) -> bool:
        return self._alive()

    def _alive(self) -> bool:
        thread = self._threads[0]
        return thread is not None and thread.is_alive() and self._thread_pid == os.getpid()

    def _ensure_thread(self) -> None:
        # per envelope: a pid and a flag, not five `is_alive()` calls
        if self._stopped or (self._running and self._thread_pid == os.getpid()):
            return
        with self.cond:
            if self._thread_pid != os.getpid():
                self._threads = [None] * (1 + self.bulk_senders)
                self._active = 0
                self._errors_busy = False
            self._thread_pid = os.getpid()
            for index, thread in enumerate(self._threads):
                if thread is not None and thread.is_alive():
                    continue
                name = "fastapi-sentry.delivery" + (f".bulk-{index}" if index else "")
                thread = threading.Thread(target=self._run, args=(index,), name=name, daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # the interpreter is shutting down
                    return
                self._threads[index] = thread
            self._running = True

    def full(self) -> bool:
        return len(self.bulk) >= self.queue_size

    def submit(self, callback: Callable[[], Any]) -> bool:
        return self.submit_bulk(callback)

    def submit_bulk(self, job: Job) -> bool:
        self._ensure_thread()
        with self.cond:
            if len(self.bulk) >= self.queue_size:
                return False
            self.bulk.append(job)
            if self.bulk_senders:
                self._bulk_ready.notify()
            else:
                self.cond.notify_all()
        return True

    def submit_priority(self, envelope: Envelope) -> bool:
        self._ensure_thread()
        with self.cond:
            if len(self.priority) >= self.queue_size:
                return False
            self.priority.append(envelope)
            self.cond.notify_all()
        return True

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _next_job(self, index: int) -> tuple[str, Job | None] | None:
        """Under the lock: thread `index`'s next thing to do, or None after waiting."""
        owner = self.owner
        wait = owner.outbox_wait() if owner is not None else None
        if index == 0:
            if self.priority:
                self._errors_busy = True
                return "priority", self.priority.popleft()
            if wait == 0.0:
                self._errors_busy = True
                return "outbox", None
            if self.bulk and not self.bulk_senders:
                return "bulk", self.bulk.popleft()
            if self._errors_busy:  # done with errors: the bulk threads may start sending again
                self._errors_busy = False
                self._bulk_ready.notify_all()
            self.cond.wait(wait)
            return None
        # no new send starts while errors are queued or being sent: they keep the line first
        if self.bulk and not (self.priority or self._errors_busy or wait == 0.0):
            return "bulk", self.bulk.popleft()
        self._bulk_ready.wait()
        return None

    def _run(self, index: int) -> None:
        try:
            self._loop(index)
        finally:
            self._running = False  # the next submit starts what ended

    def _loop(self, index: int) -> None:
        while True:
            with self.cond:
                job = None
                while job is None:
                    if self._stopped:
                        return
                    job = self._next_job(index)
                self._active += 1
            owner = self.owner
            try:
                if owner is not None:
                    with capture_internal_exceptions():
                        owner.deliver(job[0], job[1], index)
            finally:
                with self.cond:
                    self._active -= 1
                    if not self._active:
                        self._idle.notify_all()

    def _pending(self, deadline: float) -> bool:
        owner = self.owner
        wait = owner.outbox_wait() if owner is not None else None
        outbox_due = wait is not None and time.monotonic() + wait < deadline
        return bool(self._active) or bool(self.priority) or bool(self.bulk) or outbox_due

    def flush(self, timeout: float, callback: Any | None = None) -> None:
        """Wait until both queues are empty, nothing is in flight and the outbox is empty or
        paused for longer than the time left (a pause that ends in time is waited for, so a
        graceful stop during a short outage still delivers; a longer one keeps what it holds
        in the outbox)."""
        self._ensure_thread()
        deadline = time.monotonic() + timeout
        with self.cond:
            self.cond.notify_all()
            while self._pending(deadline) and self.is_alive:
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.debug(
                        "flush timed out: %d error(s) and %d other envelope(s) still queued",
                        len(self.priority),
                        len(self.bulk),
                    )
                    return
                self._idle.wait(min(left, 0.1))  # 0.1: an outbox pause may end

    def kill(self) -> None:
        with self.cond:
            self._stopped = True
            self.cond.notify_all()
            self._bulk_ready.notify_all()
            self._idle.notify_all()
        if self.owner is not None:
            self.owner.stopped()


class DeliveryTransport(ResilientTransport):
    """`ResilientTransport` (pools, compression, circuit breaker) with two queues and an outbox."""

    config: ClassVar[DeliveryConfig] = DeliveryConfig()

    def __init__(self, options: dict[str, Any]) -> None:
        self._stats_lock = threading.Lock()
        self._sent: Counter[str] = Counter()
        self._dropped: Counter[tuple[str, str]] = Counter()
        self._send_errors = 0
        self._last_success: float | None = None
        super().__init__(options)
        #: the bulk threads' own connections (plain http DSNs; urllib3's pool serves the rest)
        self._bulk_connections: list[Connection] = []
        if self._connection is not None:
            url = self._auth.get_api_url(EndpointType.ENVELOPE)
            self._bulk_connections = [
                Connection(url, timeout=self.TIMEOUT) for _ in range(self.delivery.bulk_senders)
            ]
        self._sender = threading.local()  # which connection this thread sends on
        # what the transport logs about sending must not become events to send (a loop while
        # the receiver fails), as sentry-sdk keeps its own logger out
        ignore_logger(logger.name)
        self._slot_lock: IO[bytes] | None = None
        directory: Path | None = None
        if self.config.spool_dir:
            claimed = claim_slot(Path(self.config.spool_dir))
            if claimed is not None:
                directory, self._slot_lock = claimed
        self.outbox = Outbox(
            max_events=self.config.max_events,
            max_bytes=self.config.max_bytes,
            directory=directory,
            on_drop=self._outbox_dropped,
        )
        with self.delivery.cond:
            taken = self.outbox.load(_parse_categories)
        if taken:
            logger.info("%d undelivered error(s) from the spool will be sent first.", taken)
        self.delivery.owner = self
        if taken:
            self.delivery.wake()
            self.delivery._ensure_thread()

    def _create_worker(self, options: dict[str, Any]) -> Worker:
        self.delivery = DeliveryWorker(queue_size=options["transport_queue_size"])
        return self.delivery

    def _get_pool_options(self) -> dict[str, Any]:
        """urllib3 keeps one connection per host by default: the bulk threads' would be opened
        and thrown away for every envelope (with a warning each time)."""
        options: dict[str, Any] = super()._get_pool_options()
        options.setdefault("maxsize", 1 + BULK_SENDERS)
        return options

    def _request(
        self, method: str, endpoint_type: EndpointType, body: Any, headers: Mapping[str, str]
    ) -> Any:
        connection: Connection | None = getattr(self._sender, "connection", None)
        if connection is None or endpoint_type is not EndpointType.ENVELOPE or method != "POST":
            return super()._request(method, endpoint_type, body, headers)
        return connection.post(body if isinstance(body, bytes) else bytes(body), headers)

    def _failed(self) -> None:
        """Sends in flight together fail together: the first failure opens the breaker, the
        others (sent before it opened) must not double its pause again each."""
        if not self.backing_off:
            super()._failed()

    def _after_fork_in_child(self) -> None:
        """Locks a parent's sender thread may have held at the fork (see `DeliveryWorker`)."""
        self._stats_lock = threading.Lock()
        self._breaker_lock = threading.Lock()

    def kill(self) -> None:
        super().kill()
        for connection in self._bulk_connections:
            connection.close()

    # -- entry points sentry-sdk calls

    def capture_envelope(self, envelope: Envelope) -> None:
        if is_priority(envelope):
            if not self.delivery.submit_priority(envelope):
                self._keep(envelope)  # the first queue is full: the outbox takes the overflow
            return
        if not self.delivery.submit_bulk(envelope):
            self.on_dropped_event("full_queue")
            for item in envelope.items:
                self.record_lost_event("queue_overflow", item=item)

    def flush(self, timeout: float, callback: Any | None = None) -> None:
        if timeout > 0:
            self.delivery.submit_bulk(lambda: self._flush_client_reports(force=True))
            self.delivery.flush(timeout, callback)

    def record_lost_event(
        self,
        reason: str,
        data_category: Any = None,
        item: Item | None = None,
        *,
        quantity: int = 1,
    ) -> None:
        super().record_lost_event(reason, data_category, item, quantity=quantity)
        category = item.data_category if item is not None else data_category
        if category is not None:
            with self._stats_lock:
                self._dropped[reason, str(category)] += 1 if item is not None else quantity

    # -- the worker's side

    def outbox_wait(self) -> float | None:
        """Under the worker's lock: 0 when the outbox's head can be sent now, else the seconds
        to wait (None: nothing in it)."""
        head = self.outbox.head()
        if head is None:
            return None
        pause = self._closed_at - time.monotonic()
        if pause > 0:
            return pause
        if any(self._check_disabled(category) for category in head.categories):
            return RATE_LIMIT_POLL
        return 0.0

    def deliver(self, kind: str, job: Job | None, sender: int = 0) -> None:
        if sender and self._bulk_connections:
            self._sender.connection = self._bulk_connections[sender - 1]
        if kind == "outbox":
            self._send_outbox_head()
        elif kind == "priority" and isinstance(job, Envelope):
            self._send_priority(job)
        elif isinstance(job, Envelope):
            self._send_bulk(job)
        elif job is not None:
            job()

    def _send_priority(self, envelope: Envelope) -> None:
        kept = self._without_limited(envelope)
        if kept is None:
            return
        with self.delivery.cond:
            behind = len(self.outbox) > 0
        if behind or self.backing_off:
            self._keep(kept)
            return
        outcome = self._post(kept)
        if outcome != "done":
            self._keep(kept, server_errors=int(outcome == "failed"))
        self._flush_client_reports()

    def _send_outbox_head(self) -> None:
        with self.delivery.cond:
            head = self.outbox.head()
        if head is None:
            return
        try:
            envelope = Envelope.deserialize(head.body)
        except Exception:
            envelope = None
        outcome = "done" if envelope is None else self._post(envelope)
        if outcome == "failed":
            head.server_errors += 1
            if head.server_errors < MAX_SERVER_ERRORS:
                return
            logger.error(
                "Sentry answered %d server errors to the same envelope; it is dropped.",
                head.server_errors,
            )
            self._outbox_dropped(head, "send_error")
        elif outcome == "retry":
            return
        with self.delivery.cond:
            if self.outbox.head() is head:
                self.outbox.remove_head()

    def _send_bulk(self, envelope: Envelope) -> None:
        if self.backing_off:
            self._restore_client_reports(envelope)
        elif self._post(envelope) == "done":  # else dropped: only errors and check-ins are kept
            self._flush_client_reports()
            return
        self.on_dropped_event("network")
        for item in envelope.items:
            if item.type != "client_report":
                self.record_lost_event("network_error", item=item)

    def _without_limited(self, envelope: Envelope) -> Envelope | None:
        """The envelope without the items a rate limit covers (dropped as sentry-sdk does)."""
        items = []
        for item in envelope.items:
            if self._check_disabled(item.data_category):
                self.record_lost_event("ratelimit_backoff", item=item)
            else:
                items.append(item)
        if not items:
            return None
        return envelope if len(items) == len(envelope.items) else Envelope(envelope.headers, items)

    def _keep(self, envelope: Envelope, server_errors: int = 0) -> None:
        body = envelope.serialize()
        with self.delivery.cond:
            self.outbox.add(body, _categories(envelope), server_errors)
            self.delivery.cond.notify_all()

    def _outbox_dropped(self, entry: Entry, reason: str) -> None:
        try:
            items = Envelope.deserialize(entry.body).items
        except Exception:
            items = []
        for item in items:
            self.record_lost_event(reason, item=item)

    def _post(self, envelope: Envelope) -> Outcome:
        """Send once: "done" when the receiver decided (accepted, limited or refused), "retry"
        when it could not be reached or was unavailable (502-504), "failed" on another 5xx."""
        prepared = self._prepare_envelope(envelope)  # drops limited items, adds a client report
        if prepared is None:
            return "done"
        sent, body, headers = prepared
        self._update_headers(headers)
        try:
            response = self._request("POST", EndpointType.ENVELOPE, body.getvalue(), headers)
        except Exception as exc:
            logger.debug("sending to Sentry failed: %s", type(exc).__name__)
            self._send_failed(sent)
            return "retry"
        try:
            self._update_rate_limits(response)
            status = int(response.status)
        finally:
            response.close()
        if 200 <= status < 300:
            with self._breaker_lock:
                self._failures = 0
            with self._stats_lock:
                self._last_success = time.time()
                for item in sent.items:
                    if item.type != "client_report":
                        self._sent[str(item.data_category)] += 1
            return "done"
        if status == 429:
            self.on_dropped_event("status_429")
            return "done"
        if status >= 500:
            self._send_failed(sent)
            return "retry" if status in UNAVAILABLE_STATUSES else "failed"
        logger.error("Sentry refused an envelope with HTTP %s; it is dropped.", status)
        with self._stats_lock:
            self._send_errors += 1
        for item in sent.items:
            if item.type != "client_report":
                self.record_lost_event("send_error", item=item)
        return "done"

    def _send_failed(self, sent: Envelope) -> None:
        self._failed()
        with self._stats_lock:
            self._send_errors += 1
        self._restore_client_reports(sent)

    def _restore_client_reports(self, envelope: Envelope) -> None:
        """A client report that could not be sent is counted again, for a later envelope
        (sentry-sdk loses it: the drops of an outage would never be reported)."""
        for item in envelope.items:
            if item.type == "client_report" and item.payload.json is not None:
                for entry in item.payload.json.get("discarded_events", []):
                    super().record_lost_event(
                        entry["reason"], entry["category"], quantity=entry["quantity"]
                    )

    def stopped(self) -> None:
        """The worker was told to stop: errors still queued go to the outbox (on disk, with a
        spool), and the spool's slot is left for the next process."""
        with self.delivery.cond:
            pending = list(self.delivery.priority)
            self.delivery.priority.clear()
        for envelope in pending:
            self._keep(envelope)
        with self.delivery.cond:
            held = len(self.outbox)
            on_disk = self.outbox.directory is not None
            if held and on_disk:
                logger.info("%d undelivered error(s) kept in SENTRY_SPOOL_DIR for next time.", held)
            elif held:
                logger.warning(
                    "%d undelivered error(s) lost at shutdown; set SENTRY_SPOOL_DIR to keep them.",
                    held,
                )
            self.outbox.release()
        if self._slot_lock is not None:
            self._slot_lock.close()
            self._slot_lock = None

    # -- what /metrics shows

    def snapshot(self) -> DeliverySnapshot:
        with self.delivery.cond:
            queued = {"errors": len(self.delivery.priority), "other": len(self.delivery.bulk)}
            outbox_events, outbox_bytes = len(self.outbox), self.outbox.bytes
        with self._stats_lock:
            return DeliverySnapshot(
                sent=dict(self._sent),
                dropped=dict(self._dropped),
                queued=queued,
                outbox_events=outbox_events,
                outbox_bytes=outbox_bytes,
                send_errors=self._send_errors,
                paused=self.backing_off,
                rate_limited=self._is_rate_limited(),
                last_success=self._last_success,
            )


def delivery_transport(config: DeliveryConfig) -> type[DeliveryTransport]:
    """A `DeliveryTransport` class carrying these settings (sentry-sdk makes the instance)."""
    return cast(
        "type[DeliveryTransport]",
        type("DeliveryTransport", (DeliveryTransport,), {"config": config, "__module__": __name__}),
    )
