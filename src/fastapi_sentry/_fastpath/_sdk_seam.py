"""The seam to sentry-sdk's private names: every one the lean request path relies on, checked once.

The `_fastpath` modules take sentry-sdk's private names from here and nowhere else, so this file
is the list of what an SDK upgrade can break. `PROBLEM` is None when the installed sentry-sdk is
one the lean path was tested with and every name below is there with the shape we use; otherwise
it says why not, and `install()` logs it once and uses sentry-sdk's own Starlette and FastAPI
integrations instead (`fastapi_sentry._setup`). To widen the range, run the whole test suite
with the new sentry-sdk installed and `FASTAPI_SENTRY_UNTESTED_SDK=1`, then raise `TESTED_UP_TO`.
"""

from __future__ import annotations

import os
import re

#: The sentry-sdk minor releases the lean path was tested with (inclusive).
TESTED_FROM = (2, 75)
TESTED_UP_TO = (2, 75)

#: Set to 1 to use the lean path on an untested sentry-sdk (while testing a wider range).
UNTESTED_SDK_VARIABLE = "FASTAPI_SENTRY_UNTESTED_SDK"

PROBLEM: str | None = None

try:
    import sentry_sdk.client as sdk_client
    from sentry_sdk import serializer as sdk_serializer
    from sentry_sdk._types import AnnotatedValue
    from sentry_sdk.data_collection import _apply_key_value_collection_filtering
    from sentry_sdk.integrations._asgi_common import (
        _get_ip,
        _get_path,
        _get_request_attributes,
        _get_request_data,
        _get_url,
        _RootPathInPath,
    )
    from sentry_sdk.integrations._wsgi_common import (
        _is_json_content_type,
        request_body_within_bounds,
    )
    from sentry_sdk.integrations.starlette import patch_templates
    from sentry_sdk.profiler import transaction_profiler
    from sentry_sdk.scope import Scope, _current_scope, _isolation_scope
    from sentry_sdk.tracing import Transaction
    from sentry_sdk.tracing_utils import (
        Baggage,
        PropagationContext,
        _generate_sample_rand,
        has_span_streaming_enabled,
        has_tracing_enabled,
    )
    from sentry_sdk.transport import HttpTransport
    from sentry_sdk.utils import _is_localhost, has_data_collection_enabled
except ImportError as exc:  # pragma: no cover - depends on the installed sentry-sdk
    PROBLEM = f"sentry-sdk has no {exc.name or exc.msg}"

__all__ = [
    "PROBLEM",
    "AnnotatedValue",
    "Baggage",
    "HttpTransport",
    "PropagationContext",
    "Scope",
    "Transaction",
    "_RootPathInPath",
    "_apply_key_value_collection_filtering",
    "_current_scope",
    "_generate_sample_rand",
    "_get_ip",
    "_get_path",
    "_get_request_attributes",
    "_get_request_data",
    "_get_url",
    "_is_json_content_type",
    "_is_localhost",
    "_isolation_scope",
    "has_data_collection_enabled",
    "has_span_streaming_enabled",
    "has_tracing_enabled",
    "patch_templates",
    "request_body_within_bounds",
    "sdk_client",
    "sdk_serializer",
    "transaction_profiler",
]

#: Attributes we call, override or assign, beyond the names imported above.
_SHAPES: tuple[tuple[str, str], ...] = (
    ("Scope", "_propagation_context"),  # set on a forked isolation scope
    ("Baggage", "_sample_rand"),  # an incoming trace's dice
    ("Baggage", "populate_from_propagation_context"),
    ("PropagationContext", "from_incoming_data"),
    ("PropagationContext", "to_traceparent"),
    ("Transaction", "_set_initial_sampling_decision"),  # `sampling.DecidedTransaction`
    ("Transaction", "_get_log_representation"),
    # `sampling.start_sampled` does `Scope.start_transaction`'s steps with these
    ("Transaction", "_baggage"),
    ("Transaction", "_continuous_profile"),
    ("Transaction", "init_span_recorder"),
    ("Transaction", "set_profiler_id"),
    ("PropagationContext", "_trace_id"),  # `sampling.HeadOfTrace` makes it without uuid4
    ("transaction_profiler", "_scheduler"),  # set up only for transaction-based profiling
    ("HttpTransport", "_send_envelope"),  # the circuit breaker wraps these three
    ("HttpTransport", "_handle_response"),
    ("HttpTransport", "_make_pool"),
    ("HttpTransport", "_serialize_envelope"),  # envelope bytes by orjson (`transport.py`)
    ("HttpTransport", "record_lost_event"),
    # the delivery transport (`delivery.py`) runs its own queues and sends with these
    ("HttpTransport", "_create_worker"),
    ("HttpTransport", "_prepare_envelope"),
    ("HttpTransport", "_update_headers"),
    ("HttpTransport", "_request"),
    ("HttpTransport", "_get_pool_options"),  # room in urllib3's pool for the bulk senders
    ("HttpTransport", "_update_rate_limits"),
    ("HttpTransport", "_check_disabled"),
    ("HttpTransport", "_is_rate_limited"),
    ("HttpTransport", "_flush_client_reports"),
    ("HttpTransport", "on_dropped_event"),
    ("sdk_client", "serialize"),  # replaced by the plain-JSON fast path
    ("sdk_client", "format_timestamp"),  # `sent_at`, by `serialize.format_timestamp`
    ("sdk_client", "uuid"),  # its `uuid4` made cheaper (`sampling.install_event_ids`)
    ("sdk_serializer", "MAX_DATABAG_DEPTH"),
    ("sdk_serializer", "global_repr_processors"),
    ("_RootPathInPath", "EITHER"),
)


def _version(text: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


def _check() -> str | None:
    from sentry_sdk.consts import VERSION

    found = _version(VERSION)
    untested_ok = os.environ.get(UNTESTED_SDK_VARIABLE, "").lower() in ("1", "true", "yes")
    if (found is None or not TESTED_FROM <= found <= TESTED_UP_TO) and not untested_ok:
        tested = ".".join(map(str, TESTED_FROM)) + "-" + ".".join(map(str, TESTED_UP_TO))
        return f"sentry-sdk {VERSION} is not one it was tested with ({tested})"
    names = globals()
    for owner, attribute in _SHAPES:
        if attribute not in getattr(names[owner], "__slots__", ()) and not hasattr(
            names[owner], attribute
        ):
            return f"sentry-sdk's {owner} has no {attribute}"
    return None


if PROBLEM is None:
    PROBLEM = _check()
