"""Request-scoped state and the request id: the lowest layer, importing nothing above it.

The request path fills a `RequestState` with a few cheap fields; they are read later only if an
event is actually sent. Reading the request id (helpers, log filters) never imports sentry_sdk.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import re
import unicodedata
from collections.abc import Callable, MutableMapping
from time import perf_counter
from typing import Any, Protocol


class Enricher(Protocol):
    """What turns a request's state into event fields (one per installed app)."""

    def __call__(self, event: dict[str, Any], state: RequestState) -> dict[str, Any]: ...

    def add_span_attributes(self, attributes: dict[str, Any], state: RequestState) -> None:
        """Request fields on a streamed span's attributes (`trace_lifecycle="stream"`)."""


class RequestState:
    """One per request. Filled by the request path; read when an event is actually sent."""

    __slots__ = (
        "asgi_scope",
        "body_chunks",
        "body_size",
        "enricher",
        "outcome",
        "request_id",
        "started",
        "status",
        "user",
        "user_resolved",
    )

    def __init__(
        self, asgi_scope: MutableMapping[str, Any], request_id: str, enricher: Enricher
    ) -> None:
        self.asgi_scope = asgi_scope
        self.request_id = request_id
        #: `perf_counter()` when the request came in: the one clock read every request pays for
        self.started = perf_counter()
        #: what turns this state into event fields (the installed app's settings)
        self.enricher = enricher
        self.status = 0
        #: the request body as the app read it, kept (not copied) while within the size limit
        self.body_chunks: list[bytes] | None = None
        self.body_size = 0
        self.user: dict[str, Any] | None = None
        self.user_resolved = False
        #: release health: "exited" unless an error event was sent ("errored", "crashed")
        self.outcome = "exited"


#: The custom event context saying how long the request had run when the event was made: Sentry's
#: `response` context has no duration, and a tag of milliseconds would be a value per event.
REQUEST_TIMING_CONTEXT = "request_timing"


def add_request_timing(event: dict[str, Any], state: RequestState) -> None:
    """`contexts.request_timing.elapsed_ms` on an error or message event (a transaction has
    its own start and end), so a slow request's error shows how long it had been running."""
    if event.get("type") == "transaction":
        return
    elapsed_ms = round((perf_counter() - state.started) * 1000, 3)
    contexts = event.get("contexts")
    if not isinstance(contexts, dict):
        contexts = event["contexts"] = {}
    contexts.setdefault(REQUEST_TIMING_CONTEXT, {"elapsed_ms": elapsed_ms})


class RequestLookup:
    """Where the request being handled in this context is found (`current_request`).

    The fallback request path sets it as a context variable of its own. The lean one keeps the
    request on the isolation scope it forks for it, which is in a context variable already (one
    fewer to set and reset per request), and says how to find it there with `find_in_scope`.
    """

    __slots__ = ("_in_scope", "_var")

    def __init__(self) -> None:
        self._var: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar(
            "fastapi_sentry_request", default=None
        )
        self._in_scope: Callable[[], RequestState | None] | None = None

    def get(self) -> RequestState | None:
        state = self._var.get()
        if state is None and self._in_scope is not None:
            return self._in_scope()
        return state

    def set(self, state: RequestState | None) -> contextvars.Token[RequestState | None]:
        return self._var.set(state)

    def reset(self, token: contextvars.Token[RequestState | None]) -> None:
        self._var.reset(token)

    def find_in_scope(self, finder: Callable[[], RequestState | None]) -> None:
        self._in_scope = finder


current_request = RequestLookup()


def get_request_id() -> str | None:
    """The id of the request being handled in this context, or None outside a request."""
    state = current_request.get()
    return None if state is None else state.request_id


class RequestIdLogFilter(logging.Filter):
    """Adds `record.request_id` so a log format can show it (`%(request_id)s`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        state = current_request.get()
        record.request_id = "-" if state is None else state.request_id
        return True


#: Sentry's limit for a tag value, in characters: what `safe_text` cuts to unless told otherwise.
SAFE_TEXT_LIMIT = 200


def safe_text(value: object, limit: int | None = SAFE_TEXT_LIMIT) -> str:
    """Text that came from a request, made safe for a tag or a log line.

    Every character that could start a line, move the cursor, colour a terminal or hide text
    (CR, LF, NEL, U+2028, ESC, bidi overrides, lone surrogates: all but printable characters and
    spaces) is written as its escape (`\\r`, `\\x1b`), so a crafted value cannot forge a log line
    or split a tag; then the text is cut to `limit` characters, ending in `...` when cut.
    """
    text = value if type(value) is str else _as_text(value)
    cut = limit is not None and len(text) > limit
    if cut:
        text = text[:limit]  # escapes only lengthen: the rest could not show anyway
    if not text.isprintable():
        text = _NOT_PLAIN_ASCII.sub(_shown_run, text)
    if limit is not None and (cut or len(text) > limit):
        text = text[: limit - 3] + "..." if limit >= 3 else text[:limit]
    return text


# runs of characters other than printable ASCII: only these need a closer look
_NOT_PLAIN_ASCII = re.compile(r"[^\x20-\x7e]+")


def _shown_run(match: re.Match[str]) -> str:
    return "".join(map(_shown, match.group()))


def _shown(ch: str) -> str:
    if ch.isprintable() or unicodedata.category(ch) == "Zs":  # spaces other than ' ' stay
        return ch
    return ch.encode("unicode_escape").decode("ascii")


def _as_text(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} object that cannot be shown>"


def safe_tags(event: dict[str, Any]) -> None:
    """Every tag key and text value of an event as `safe_text`, whoever set it (the request path,
    user tags from a JWT's claims, the app's own `set_tag` with a header's value). Keys are cut
    to Sentry's limit here; values are left whole for the size limits, which cut them to the same
    limit with Sentry's `_meta` note."""
    tags = event.get("tags")
    if not isinstance(tags, dict):
        return
    for key, value in tags.items():
        if type(key) is not str or not key.isprintable() or len(key) > SAFE_TEXT_LIMIT:
            break
        if type(value) is str and not value.isprintable():
            break
        if value is not None and type(value) not in (str, int, float, bool):
            break
    else:
        return  # the usual case: nothing to change
    event["tags"] = {
        safe_text(key): value
        if value is None or type(value) in (int, float, bool)
        else safe_text(value, None)
        for key, value in tags.items()
    }


_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


def sane_request_id(value: bytes) -> str | None:
    """An incoming request id we can echo and tag safely, or None (then a new one is made).

    Not repaired: an id with control characters, spaces or over 128 characters is not one a
    proxy or client made, so a fresh id replaces it rather than a cleaned copy of its text.
    """
    text = value.decode("latin-1")
    return text if _SANE_REQUEST_ID.fullmatch(text) else None


_id_prefix = os.urandom(10).hex()
_id_counter = itertools.count()
#: the last 2 of the 12 counter digits: the other 10 change once in 256 ids, so an id is
#: made by a lookup and one concatenation instead of formatting the counter each time
_LOW_DIGITS = tuple(f"{low:02x}" for low in range(256))
#: (counter >> 8, prefix + the counter's first 10 digits) for the run of 256 being handed out;
#: one tuple, so a thread reading it never pairs one run's number with another's digits
_id_run: tuple[int, str] = (-1, "")


def new_request_id() -> str:
    """32 hex characters, like `uuid4().hex`: a random per-process prefix and a counter.

    Unique without 16 random bytes per request (see benchmarks/bench_inprocess.py).
    """
    global _id_run
    number = next(_id_counter)
    run, high = _id_run
    if run != number >> 8:
        high = "%s%010x" % (_id_prefix, number >> 8)  # noqa: UP031 - as the fast path below
        _id_run = (number >> 8, high)
    return high + _LOW_DIGITS[number & 0xFF]


def _new_process_prefix() -> None:
    global _id_prefix, _id_run
    _id_prefix = os.urandom(10).hex()  # a forked worker must not repeat its parent's ids
    _id_run = (-1, "")


os.register_at_fork(after_in_child=_new_process_prefix)
