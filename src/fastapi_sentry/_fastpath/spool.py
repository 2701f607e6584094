"""The outbox: errors and check-ins that could not be delivered yet, bounded, oldest first.

It holds serialized envelopes (the uncompressed bytes sentry-sdk would send), so its bound in
bytes is what it really takes. With a directory it mirrors every entry in a file of its own,
written to a temporary name and renamed, so a crash leaves either the whole file or none; each
file starts with a line carrying the body's length and SHA-256, so a damaged one is recognised,
set aside (renamed `*.corrupt`, one log line) and never sent half. Several processes may share one
directory (uvicorn workers): each claims a `slot-N` subdirectory with an exclusive lock, and a
process started later takes over the files of a slot nobody holds.

Not thread-safe by itself: the delivery worker calls it under its own lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

logger = logging.getLogger("fastapi_sentry.delivery")

MAGIC = b"fastapi-sentry-spool 1"
SUFFIX = ".envelope"
#: Slots tried in a shared directory (one per process that writes there at the same time).
MAX_SLOTS = 64


@dataclass
class Entry:
    body: bytes
    categories: tuple[str, ...]
    path: Path | None = None
    server_errors: int = 0  # 5xx answers it got (502-504 not counted)


def _frame(body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest().encode()
    return b"%s %d %s\n" % (MAGIC, len(body), digest)


def _unframe(data: bytes) -> bytes | None:
    """The body of a spool file, or None when the file is not one we wrote whole."""
    head, sep, body = data.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 4 or b" ".join(parts[:2]) != MAGIC:
        return None
    if not parts[2].isdigit() or int(parts[2]) != len(body):
        return None
    if hashlib.sha256(body).hexdigest().encode() != parts[3]:
        return None
    return body


def claim_slot(root: Path) -> tuple[Path, IO[bytes]] | None:
    """A `slot-N` directory under `root` locked for this process (the lock lives as long as the
    returned file), or None when the directory cannot be used (logged once)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: one process, no lock
        root.mkdir(parents=True, exist_ok=True)
        return root, open(os.devnull, "rb")
    try:
        root.mkdir(parents=True, exist_ok=True)
        for n in range(MAX_SLOTS):
            slot = root / f"slot-{n}"
            slot.mkdir(exist_ok=True)
            lock = open(slot / ".lock", "ab")  # noqa: SIM115 - held for the transport's life
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                continue
            return slot, lock
    except OSError as exc:
        logger.warning(
            "SENTRY_SPOOL_DIR %s cannot be used (%s); undelivered errors are kept in memory only.",
            root,
            exc.strerror or type(exc).__name__,
        )
        return None
    logger.warning(
        "SENTRY_SPOOL_DIR %s has %d processes writing to it already; this one keeps undelivered "
        "errors in memory only.",
        root,
        MAX_SLOTS,
    )
    return None


class Outbox:
    """Bounded FIFO of envelopes; `on_drop(entry, reason)` is told of each one it lets go."""

    def __init__(
        self,
        *,
        max_events: int,
        max_bytes: int,
        directory: Path | None,
        on_drop: Callable[[Entry, str], None],
    ) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.directory = directory
        self._on_drop = on_drop
        self._entries: deque[Entry] = deque()
        self.bytes = 0
        self._seq = 0
        self._write_failed = False

    def __len__(self) -> int:
        return len(self._entries)

    def head(self) -> Entry | None:
        return self._entries[0] if self._entries else None

    def add(self, body: bytes, categories: tuple[str, ...], server_errors: int = 0) -> None:
        """Keep an envelope, letting the oldest go when a bound would be passed."""
        entry = Entry(body, categories, server_errors=server_errors)
        if self.max_events <= 0 or len(body) > self.max_bytes:
            self._on_drop(entry, "cache_overflow")
            return
        while self._entries and (
            len(self._entries) >= self.max_events or self.bytes + len(body) > self.max_bytes
        ):
            self._on_drop(self._pop(), "cache_overflow")
        entry.path = self._write(body)
        self._entries.append(entry)
        self.bytes += len(body)

    def remove_head(self) -> None:
        """The head was delivered (or refused for good): forget it, file and all."""
        if self._entries:
            self._pop()

    def _pop(self) -> Entry:
        entry = self._entries.popleft()
        self.bytes -= len(entry.body)
        if entry.path is not None:
            with contextlib.suppress(OSError):
                entry.path.unlink()
        return entry

    def _write(self, body: bytes) -> Path | None:
        if self.directory is None:
            return None
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}{SUFFIX}"
        path = self.directory / name
        temporary = path.with_suffix(".tmp")
        try:
            with open(temporary, "wb") as out:
                out.write(_frame(body) + body)
            os.replace(temporary, path)
        except OSError as exc:
            if not self._write_failed:
                self._write_failed = True
                logger.warning(
                    "Could not write to SENTRY_SPOOL_DIR %s (%s); undelivered errors are kept in "
                    "memory until it works again.",
                    self.directory,
                    exc.strerror or type(exc).__name__,
                )
            with contextlib.suppress(OSError):
                temporary.unlink()
            return None
        self._write_failed = False
        return path

    def load(self, categories_of: Callable[[bytes], tuple[str, ...] | None]) -> int:
        """Take in the files a previous process left, oldest first; the number taken.

        `categories_of` parses a body (None: not an envelope). Half-written temporary files
        are removed; damaged ones are set aside with one log line each.
        """
        if self.directory is None:
            return 0
        taken = 0
        for path in sorted(self.directory.iterdir()):
            if path.suffix == ".tmp":
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            if path.suffix != SUFFIX:
                continue
            try:
                body = _unframe(path.read_bytes())
            except OSError:
                body = None
            categories = categories_of(body) if body is not None else None
            if body is None or categories is None:
                aside = path.with_suffix(".corrupt")
                with contextlib.suppress(OSError):
                    os.replace(path, aside)
                logger.warning(
                    "Set aside a damaged spool file %s; it is not sent (delete it at will).", aside
                )
                continue
            entry = Entry(body, categories, path)
            while self._entries and (
                len(self._entries) >= self.max_events or self.bytes + len(body) > self.max_bytes
            ):
                self._on_drop(self._pop(), "cache_overflow")
            if self.max_events <= 0 or len(body) > self.max_bytes:
                self._on_drop(entry, "cache_overflow")
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            self._entries.append(entry)
            self.bytes += len(body)
            taken += 1
        return taken

    def release(self) -> None:
        """Forget what is held in memory (the files stay, for the next process)."""
        self._entries.clear()
        self.bytes = 0
