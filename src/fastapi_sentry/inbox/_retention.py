"""Retention: keep at most N events per project and none older than D days.

A background thread deletes the oldest events in small batches, each its own short write
transaction, so ingest's group commits slip in between them. Only event rows (and their spans) go:
issues keep their counts, user counts and first/last seen, which are stored totals, not derived
from the events kept. SQLite reuses the freed pages, so the file stops growing at the limit.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from fastapi_sentry.inbox._store import InboxStore

logger = logging.getLogger(__name__)

#: Rows per delete transaction: small enough that ingest never waits long for the write lock.
BATCH = 500


class Retention:
    """Enforces ``max_events`` (per project) and ``max_age_days`` until :meth:`stop`."""

    def __init__(
        self,
        store: InboxStore,
        *,
        max_events: int | None = None,
        max_age_days: float | None = None,
        interval: float = 1.0,
    ) -> None:
        if max_events is not None and max_events < 1:
            raise ValueError(
                f"max_events={max_events!r} must be at least 1 (or None for no limit)."
            )
        if max_age_days is not None and max_age_days <= 0:
            raise ValueError(f"max_age_days={max_age_days!r} must be more than 0 (or None).")
        self.store = store
        self.max_events = max_events
        self.max_age_days = max_age_days
        self.interval = interval
        self.deleted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Retention:
        self._thread = threading.Thread(
            target=self._run, name="fastapi-sentry-inbox-retention", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while self.prune_batch() and not self._stop.is_set():
                    pass
            except Exception:  # the store closing under us, or a disk error: try again later
                logger.exception("Retention could not delete old events; trying again")
            self._stop.wait(self.interval)

    def prune_batch(self) -> int:
        """Delete at most one batch of events over a limit; returns how many were deleted."""
        deleted = self.store.write(self._delete_batch)
        self.deleted += deleted
        return deleted

    def _delete_batch(self, conn: sqlite3.Connection) -> int:
        cutoff_id = 0
        if self.max_age_days is not None:
            horizon = time.time() - self.max_age_days * 86400
            # ids grow with arrival: the newest event older than the horizon bounds the delete
            row = conn.execute(
                "SELECT id FROM events WHERE id <= (SELECT min(id) + ? FROM events) "
                "AND received < ? ORDER BY id DESC LIMIT 1",
                (BATCH, horizon),
            ).fetchone()
            cutoff_id = row[0] if row else 0
        ids = []
        if cutoff_id:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM events WHERE id <= ? ORDER BY id LIMIT ?", (cutoff_id, BATCH)
                )
            ]
        if not ids and self.max_events is not None:
            ids = self._over_limit(conn)
        if not ids:
            return 0
        marks = ", ".join("?" * len(ids))
        conn.execute(f"DELETE FROM spans WHERE event_row IN ({marks})", ids)  # noqa: S608
        conn.execute(f"DELETE FROM events WHERE id IN ({marks})", ids)  # noqa: S608
        return len(ids)

    def _over_limit(self, conn: sqlite3.Connection) -> list[int]:
        limit = self.max_events or 0
        for (project_id,) in conn.execute("SELECT id FROM projects ORDER BY id").fetchall():
            # counted on an index; the oldest rows are then first in id order
            (count,) = conn.execute(
                "SELECT count(*) FROM events WHERE project_id = ?", (project_id,)
            ).fetchone()
            if count > limit:
                return [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM events WHERE project_id = ? ORDER BY id LIMIT ?",
                        (project_id, min(count - limit, BATCH)),
                    )
                ]
        return []
