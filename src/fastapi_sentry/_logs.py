"""Log records reach Sentry under Python's default logging, and what the app prints stays the same.

Python drops a record below its logger's effective level before any handler, or sentry-sdk's hook
in `Logger.callHandlers`, sees it: under the default configuration (root at WARNING) `logger.info`
never becomes a breadcrumb. So the app's loggers get a lower level (a `Lowered` int, so that the
app's own `setLevel`, which stores a plain int, still wins), and one wrapper around
`Logger.callHandlers` keeps the app's output as it was: a record below the level the app's
configuration lets through is handed to sentry-sdk's hook with a silent logger, never to the
app's handlers. Records below the breadcrumb level are still refused by the level check, at no cost.

Lowering the root logger would do it for every library too, and some change what they do when INFO
is enabled (SQLAlchemy logs every statement): only the loggers named in SENTRY_BREADCRUMB_LOGGERS,
by default the app's own package, are lowered.

Our own lines (the start-up line, fallback and config warnings) are printed by a handler of ours
when nothing else would print them (plain `uvicorn app:app` configures only uvicorn's loggers);
once the app configures logging, its configuration decides, so they are never printed twice.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from fastapi_sentry._state import on_reset

#: Our loggers' common prefix.
OWN_LOGGER = "fastapi_sentry"
#: The level our own lines are printed from when the app has not configured logging.
OWN_LINES_LEVEL = logging.INFO


class Lowered(int):
    """A logger level we set. `printed` is what the app's handlers get (None: what the parent's
    level lets through). A plain int put there by the app's own `setLevel` replaces it."""

    printed: int | None


def _lowered(level: int, printed: int | None) -> Lowered:
    value = Lowered(level)
    value.printed = printed
    return value


def printed_level(logger: logging.Logger) -> int:
    """The level the app's logging configuration lets through for this logger, ignoring ours."""
    node: Any = logger
    while node is not None:
        level = node.level
        if level:
            if type(level) is not Lowered:
                return int(level)
            if level.printed is not None:
                return level.printed
        node = node.parent
    return logging.NOTSET


class _OwnLinesHandler(logging.Handler):
    """Prints our own lines on stderr, uvicorn-style, only when no other handler would."""

    def emit(self, record: logging.LogRecord) -> None:
        if _others_print(logging.getLogger(record.name)):
            return
        try:
            prefix = f"{record.levelname}:"
            sys.stderr.write(f"{prefix:<9} {record.getMessage()}\n")
            sys.stderr.flush()
        except Exception:  # a closed stderr must not break the app
            self.handleError(record)


_OWN_HANDLER = _OwnLinesHandler(OWN_LINES_LEVEL)
# a logger with one handler that does nothing: the SDK's hook still runs, and no last-resort
# handler prints the record ("no handlers could be found")
_SILENT = logging.Logger("fastapi_sentry.silent")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


def _others_print(logger: logging.Logger) -> bool:
    """True when a handler other than ours is on this logger's way to the root."""
    node: Any = logger
    while node is not None:
        if any(handler is not _OWN_HANDLER for handler in node.handlers):
            return True
        if not node.propagate:
            return False
        node = node.parent
    return False


_inner: Callable[[logging.Logger, logging.LogRecord], None] | None = None


def _call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
    inner = _inner
    if inner is None:  # pragma: no cover - set before this replaces Logger.callHandlers
        return
    # the logger whose level decides (getEffectiveLevel's walk, inlined: this runs for every
    # record that passed the level check, uvicorn's access lines included)
    node: Any = self
    while node.level == 0 and node.parent is not None:
        node = node.parent
    if (
        type(node.level) is Lowered
        and record.levelno < printed_level(node)
        and not _own_line_shown(self, record)
    ):
        # below what the app prints: sentry-sdk's hook only (it wraps callHandlers too, inside
        # or outside this one; with the silent logger it runs once either way)
        inner(_SILENT, record)
        return
    inner(self, record)


def _own_line_shown(logger: logging.Logger, record: logging.LogRecord) -> bool:
    return (
        record.levelno >= OWN_LINES_LEVEL
        and record.name.startswith(OWN_LOGGER)
        and not _others_print(logger)
    )


def _patch_once() -> None:
    global _inner
    if _inner is None:
        _inner = logging.Logger.callHandlers
        logging.Logger.callHandlers = _call_handlers  # type: ignore[method-assign]


def _lower(logger: logging.Logger, level: int) -> None:
    current = logger.level
    if type(current) is Lowered:
        printed = current.printed
    elif current == logging.NOTSET and logger.parent is not None:
        printed = None
    else:
        printed = current
    if logger.getEffectiveLevel() > level or type(current) is Lowered:
        logger.setLevel(_lowered(level, printed))


def show_own_lines() -> None:
    """Our INFO lines (the start-up line) appear under plain uvicorn; see the module docstring."""
    _patch_once()
    own = logging.getLogger(OWN_LOGGER)
    if _OWN_HANDLER not in own.handlers:
        own.addHandler(_OWN_HANDLER)
    _lower(own, OWN_LINES_LEVEL)


def lower_levels(names: Iterable[str], level: int) -> list[str]:
    """Let records of these loggers (`root` for all) down to `level` reach sentry-sdk; returns
    the names lowered."""
    _patch_once()
    done = []
    for name in names:
        logger = logging.getLogger(None if name == "root" else name)
        before = logger.level
        _lower(logger, level)
        if logger.level is not before:
            done.append(name)
    return done


def app_package(module: str | None) -> str | None:
    """The logger name of the app's package, from the module that calls `install()`.

    The demo shop lives inside this package; its own package is the app there."""
    if not module:
        return None
    if module.startswith(OWN_LOGGER + ".examples."):
        return ".".join(module.split(".")[:3])
    if module.split(".")[0] == OWN_LOGGER:
        return None
    return module.split(".")[0]


def reset() -> None:
    """Give every logger we lowered back the level it had; remove our handler."""
    loggers: list[Any] = [logging.getLogger()]
    loggers += [
        item for item in logging.Logger.manager.loggerDict.values()
        if isinstance(item, logging.Logger)
    ]  # fmt: skip
    for logger in loggers:
        level = logger.level
        if type(level) is Lowered:
            logger.setLevel(level.printed if level.printed is not None else logging.NOTSET)
    logging.getLogger(OWN_LOGGER).removeHandler(_OWN_HANDLER)


on_reset(reset)
