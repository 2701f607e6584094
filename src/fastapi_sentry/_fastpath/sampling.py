"""Head sampling decided before a transaction exists, with the SDK's own rule.

sentry-sdk decides inside `start_transaction`, so an unsampled request has already paid for a
transaction object, its ids and its scope bookkeeping. Here the same inputs give the same answer
first: the rate comes from `traces_sampler` (or the parent's decision, or
`traces_sample_rate`); the dice is the incoming trace's `sample_rand` (from its baggage, or
derived from its id as the SDK derives it), or for a trace started here one `random.random()`
that is then carried in the baggage, so downstream services follow it. A sampled request goes
through `start_transaction` as a `DecidedTransaction`, which takes this decision and rate instead
of running the traces sampler a second time, started by `start_sampled` (what
`start_transaction` does for it, without what only transaction-based profiling reads).

Ids of a trace started here and of its transaction come from `getrandbits` of a generator of
their own, as OpenTelemetry's id generator makes them, instead of `uuid4` (an `os.urandom` call
and a `UUID` built by its Python `__init__`, about four times the instructions); so do event ids
(`install_event_ids`), as version-4 `UUID`s.
"""

from __future__ import annotations

import math
import os
import random
import uuid
from collections.abc import MutableMapping
from decimal import Decimal
from numbers import Real
from typing import Any

import sentry_sdk
from sentry_sdk.consts import INSTRUMENTER
from sentry_sdk.profiler.continuous_profiler import (
    get_profiler_id,
    try_autostart_continuous_profiler,
    try_profile_lifecycle_trace_start,
)
from sentry_sdk.utils import logger

from fastapi_sentry._fastpath._sdk_seam import (
    Baggage,
    PropagationContext,
    Scope,
    Transaction,
    _generate_sample_rand,
    has_span_streaming_enabled,
    has_tracing_enabled,
    sdk_client,
    transaction_profiler,
)

#: The ids' own generator, seeded from `os.urandom` and again in a forked child: an app that
#: seeds the `random` module (tests, simulations) must not make two processes, or two runs,
#: draw the same event ids, which Sentry would take for one event sent twice.
_ids = random.Random()
_getrandbits = _ids.getrandbits
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.seed)
_UUID_VERSION_4 = ~(0xF000 << 64) & ~(0xC000 << 48)  # the bits `UUID(version=4)` clears
_UUID_VERSION_4_SET = (0x4000 << 64) | (0x8000 << 48)  # and those it sets
_new_object = object.__new__
_set_slot = object.__setattr__


def uuid4() -> uuid.UUID:
    """`uuid.uuid4()` from `random.getrandbits`: the same `UUID` that `UUID(int=bits,
    version=4)` makes, without its checks in Python."""
    made = _new_object(uuid.UUID)
    _set_slot(made, "int", (_getrandbits(128) & _UUID_VERSION_4) | _UUID_VERSION_4_SET)
    _set_slot(made, "is_safe", uuid.SafeUUID.unknown)
    return made


class _ClientUuidModule:
    """The `uuid` module as `sentry_sdk.client` sees it once `install_event_ids` has run:
    the real one, but for `uuid4` (which the client calls for each event's id)."""

    uuid4 = staticmethod(uuid4)

    def __getattr__(self, name: str) -> Any:
        return getattr(uuid, name)


def install_event_ids() -> None:
    """Event ids made by `uuid4` above (once per process)."""
    sdk_client.uuid = _ClientUuidModule()  # type: ignore[attr-defined,assignment]


def new_trace_id() -> str:
    """32 random hex digits, never all zero (an invalid trace id)."""
    bits = 0
    while not bits:
        bits = _getrandbits(128)
    return f"{bits:032x}"


def new_span_id() -> str:
    """16 random hex digits, never all zero (an invalid span id)."""
    bits = 0
    while not bits:
        bits = _getrandbits(64)
    return f"{bits:016x}"


class HeadOfTrace(PropagationContext):
    """A trace this service starts, its sampling decision already made.

    Outgoing `sentry-trace` carries the decision (`-1`/`-0`) and `baggage` the dice, the rate
    and the decision, exactly as a transaction's would, so services downstream (Celery tasks,
    HTTP calls) follow this decision instead of rolling their own.
    """

    __slots__ = ("decided", "sample_rand", "sample_rate")

    def __init__(self, sample_rand: float, sample_rate: float, decided: bool) -> None:
        super().__init__()
        self.sample_rand = sample_rand
        self.sample_rate = sample_rate
        self.decided = decided

    @property
    def trace_id(self) -> str:
        """Made only when something asks for it, as the SDK's, but without `uuid4`."""
        trace_id = self._trace_id
        if not trace_id:
            trace_id = self._trace_id = new_trace_id()
        return trace_id

    @trace_id.setter
    def trace_id(self, value: str) -> None:
        self._trace_id = value

    def to_traceparent(self) -> str:
        return f"{super().to_traceparent()}-{'1' if self.decided else '0'}"

    def get_baggage(self) -> Baggage:
        if self.baggage is None:
            baggage = Baggage.populate_from_propagation_context(self)
            baggage.sentry_items["sample_rand"] = f"{self.sample_rand:.6f}"
            baggage.sentry_items["sample_rate"] = str(self.sample_rate)
            baggage.sentry_items["sampled"] = "true" if self.decided else "false"
            baggage.mutable = False
            self.baggage = baggage
        return self.baggage

    def transaction_baggage(self) -> Baggage:
        """What a transaction started for this trace needs to reach the same decision."""
        return Baggage({"sample_rand": f"{self.sample_rand:.6f}"}, mutable=True)


class DecidedTransaction(Transaction):
    """A transaction `HeadSampler` has already sampled, at `decided_rate`.

    `start_transaction` would otherwise run the traces sampler again (and then its own dice, which
    reach the same answer). It still builds the sampling context, writes the rate into the dynamic
    sampling context and starts the profile exactly as for any transaction.
    """

    __slots__ = ("decided_rate",)

    def __init__(self, decided_rate: float, **fields: Any) -> None:
        super().__init__(**fields)
        self.decided_rate = decided_rate

    def _set_initial_sampling_decision(self, sampling_context: Any) -> None:
        self.sample_rate = self.decided_rate
        self.sampled = True
        if logger.isEnabledFor(10):  # logging.DEBUG; the SDK's message, only when it is shown
            logger.debug("[Tracing] Starting %s", self._get_log_representation())


def start_sampled(transaction: DecidedTransaction, scope: Scope) -> bool:
    """`Scope.start_transaction(transaction)` for a transaction `HeadSampler` has sampled.

    The same steps in the same order, less two that only transaction-based profiling reads: the
    sampling context (the transaction's `to_json`) and a `Profile` object (a `uuid4` and a
    thread lookup), which is never sent when the transaction profiler is not set up. False when
    that profiler is set up (or the SDK would not start the transaction at all): then
    `start_transaction` must run.
    """
    client = scope.get_client()
    options = client.options
    if (
        transaction_profiler._scheduler is not None
        or options["instrumenter"] != INSTRUMENTER.SENTRY
        or has_span_streaming_enabled(options)
    ):
        return False
    if transaction.scope is None:
        transaction.scope = scope
    try_autostart_continuous_profiler()
    keep_incoming_sample_rate = (
        transaction.sampled is None
        and transaction.parent_sampled is not None
        and not callable(options.get("traces_sampler"))
    )
    transaction._set_initial_sampling_decision(sampling_context={})
    if transaction.sample_rate is not None and not keep_incoming_sample_rate:
        baggage = scope.get_active_propagation_context().baggage
        if baggage is not None:
            baggage.sentry_items["sample_rate"] = str(transaction.sample_rate)
        if transaction._baggage:
            transaction._baggage.sentry_items["sample_rate"] = str(transaction.sample_rate)
    transaction._continuous_profile = try_profile_lifecycle_trace_start()
    if transaction._continuous_profile is not None:
        transaction.set_profiler_id(get_profiler_id())
    transaction.init_span_recorder(maxlen=options["_experiments"].get("max_spans") or 1000)
    return True


class HeadSampler:
    __slots__ = ("enabled", "final")

    def __init__(self) -> None:
        options = sentry_sdk.get_client().options
        self.enabled = bool(
            callable(options.get("traces_sampler")) or options.get("traces_sample_rate")
        )
        #: our decision stands for the SDK's (it would not unsample a transaction outright)
        self.final = has_tracing_enabled(options)

    def decide(
        self, asgi_scope: MutableMapping[str, Any], incoming: PropagationContext | None
    ) -> tuple[bool, PropagationContext, float | None]:
        """Sampled or not, the propagation context the request should carry, and the sample
        rate a sampled transaction gets (None: the SDK must decide again, and log why not)."""
        rate, valid = self._rate(asgi_scope, incoming)
        decided = rate if valid and self.final else None
        if incoming is not None:
            if rate <= 0.0 or rate >= 1.0:
                return rate >= 1.0, incoming, decided
            return _sample_rand(incoming) < rate, incoming, decided
        # A new trace: one cheap draw, six decimals like the SDK's, instead of the SDK's
        # uuid4 plus a Random seeded from it, which every request would pay for.
        sample_rand = int(random.random() * 1_000_000) / 1_000_000
        sampled = sample_rand < rate
        return sampled, HeadOfTrace(sample_rand, rate, sampled), decided

    def _rate(
        self, asgi_scope: MutableMapping[str, Any], incoming: PropagationContext | None
    ) -> tuple[float, bool]:
        """The rate the SDK would give the transaction, and whether the SDK would accept it."""
        client = sentry_sdk.get_client()
        options = client.options
        parent_sampled = incoming.parent_sampled if incoming is not None else None
        sampler = options.get("traces_sampler")
        try:
            if callable(sampler):
                raw = sampler(
                    {
                        "transaction_context": {
                            "op": f"{asgi_scope['type']}.server",
                            "name": asgi_scope.get("path", ""),
                            "source": "url",
                        },
                        "parent_sampled": parent_sampled,
                        "asgi_scope": asgi_scope,
                    }
                )
            elif parent_sampled is not None:
                raw = parent_sampled
            else:
                raw = options.get("traces_sample_rate") or 0.0
            rate = float(raw)
        except Exception:
            return 1.0, False  # let start_transaction decide and log what is wrong
        monitor = client.monitor
        if monitor is not None:
            rate /= 2**monitor.downsample_factor
        return rate, _valid_rate(raw)


def _valid_rate(raw: Any) -> bool:
    """`sentry_sdk.utils.is_valid_sample_rate` without its warning (the SDK logs it itself)."""
    if not isinstance(raw, (Real, Decimal)) or math.isnan(raw):
        return False
    return 0.0 <= float(raw) <= 1.0


def _sample_rand(propagation: PropagationContext) -> float:
    """An incoming trace's dice: from its baggage, or derived from its id as the SDK does."""
    baggage = propagation.baggage
    if baggage is not None:
        incoming = baggage._sample_rand()
        if incoming is not None:
            return float(incoming)
    return _generate_sample_rand(propagation.trace_id)
