"""SQLite storage for the inbox.

One write connection, behind a lock, commits whatever requests are waiting as one transaction
(group commit, see ``write_many``); a request is acknowledged only when its commit returned. The
app calls it from the event loop thread: a writer thread would cost a GIL hand-off per request,
which measured slower than the writes themselves. WAL with
``synchronous=NORMAL`` keeps every committed transaction through a kill -9 of the process (not
through a power cut, which a development inbox does not need). Reads use their own connections and
never wait for the writer. Queries are assembled from constant fragments; values are always bound.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import orjson

from fastapi_sentry.inbox._errors import StorageError
from fastapi_sentry.inbox._ingest import UNLABELED, Record, span_event_id
from fastapi_sentry.inbox._monitor_schema import migrate, regress
from fastapi_sentry.inbox._search import event_filter, issue_filter, parse

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    public_key TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS issues (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    hash TEXT NOT NULL,
    type TEXT NOT NULL,
    title TEXT NOT NULL,
    culprit TEXT NOT NULL,
    level TEXT NOT NULL,
    metadata TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    count INTEGER NOT NULL,
    user_count INTEGER NOT NULL DEFAULT 0,
    UNIQUE (project_id, hash)
);
CREATE INDEX IF NOT EXISTS issues_last_seen ON issues (project_id, last_seen);
CREATE TABLE IF NOT EXISTS issue_users (
    issue_id INTEGER NOT NULL,
    user_key TEXT NOT NULL,
    PRIMARY KEY (issue_id, user_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS issue_tags (
    issue_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (issue_id, key, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    type TEXT NOT NULL,
    event_id TEXT NOT NULL,
    issue_id INTEGER,
    received REAL NOT NULL,
    timestamp REAL NOT NULL,
    environment TEXT,
    release TEXT,
    level TEXT,
    name TEXT,
    status TEXT,
    duration_ms REAL,
    data TEXT NOT NULL,
    raw BLOB
);
CREATE INDEX IF NOT EXISTS events_type ON events (project_id, type, id);
CREATE INDEX IF NOT EXISTS events_issue ON events (issue_id, id);
CREATE INDEX IF NOT EXISTS events_event_id ON events (project_id, event_id);
CREATE TABLE IF NOT EXISTS spans (
    event_row INTEGER NOT NULL,
    project_id INTEGER NOT NULL,
    transaction_name TEXT NOT NULL,
    op TEXT NOT NULL,
    description TEXT NOT NULL,
    duration_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_name ON spans (project_id, transaction_name, duration_ms);
"""

_DEDUPLICATED_TYPES = ("error", "default", "transaction", "span", "feedback")

# Environment and release in one statement (one or two rows): a statement less per event.
_TAG_UPSERT_END = (
    " ON CONFLICT DO UPDATE SET count = count + 1, last_seen = max(last_seen, excluded.last_seen)"
)
_TAG_UPSERT = {
    1: "INSERT INTO issue_tags (issue_id, key, value, count, first_seen, last_seen) "
    "VALUES (?, ?, ?, 1, ?, ?)" + _TAG_UPSERT_END,
    2: "INSERT INTO issue_tags (issue_id, key, value, count, first_seen, last_seen) "
    "VALUES (?, ?, ?, 1, ?, ?), (?, ?, ?, 1, ?, ?)" + _TAG_UPSERT_END,
}


@dataclass(frozen=True)
class Project:
    """A project: its id and public key make up the DSN an SDK sends to."""

    id: int
    name: str
    public_key: str

    def dsn(self, base_url: str) -> str:
        """The DSN for this project on the inbox at ``base_url`` (e.g. ``http://127.0.0.1:8969``)."""
        parts = urlsplit(base_url)
        path = parts.path.rstrip("/")
        return f"{parts.scheme}://{self.public_key}@{parts.netloc}{path}/{self.id}"


def iso(ts: float) -> str:
    """Sentry's timestamp format: RFC 3339, UTC, microseconds, ``Z``."""
    return (
        datetime.fromtimestamp(ts, tz=timezone.utc)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (what Sentry's p50/p95/p99 approximate)."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * fraction // 1))
    return sorted_values[min(int(rank), len(sorted_values)) - 1]


WriteJob = Callable[[sqlite3.Connection], Any]
WriteResult = tuple[Any, "BaseException | None"]


def _isolated(conn: sqlite3.Connection, jobs: list[WriteJob]) -> list[WriteResult]:
    """Run each job in its own savepoint: one failing job leaves the others' writes."""
    results: list[WriteResult] = []
    for job in jobs:
        conn.execute("SAVEPOINT job")
        try:
            result = job(conn)
        except Exception as e:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            results.append((None, e))
        else:
            conn.execute("RELEASE job")
            results.append((result, None))
    return results


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


class InboxStore:
    """The inbox's SQLite database (created on first use, WAL mode).

    Thread-safe: writes share one connection behind a lock; reads use pooled connections. Call
    :meth:`close` (or use it as a context manager) to close them.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if self.path in ("", ":memory:") or self.path.startswith("file:"):
            raise ValueError(
                f"InboxStore needs a file path, got {self.path!r}; the writer and readers share "
                "the database through WAL, which an in-memory database cannot do."
            )
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self._write_conn = _connect(self.path)
        self._write_conn.execute("PRAGMA journal_mode = WAL")
        self._write_conn.execute("PRAGMA synchronous = NORMAL")
        self._write_conn.executescript(_SCHEMA)
        migrate(self._write_conn)
        self._readers: list[sqlite3.Connection] = []
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._projects: dict[int, Project] = {}
        self._write_lock = threading.Lock()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Finish pending writes, stop the writer thread and close every connection."""
        if self._closed:
            return
        self._closed = True
        with self._write_lock:
            self._write_conn.close()
        with self._readers_lock:
            for conn in self._all_readers:
                conn.close()
            self._readers.clear()
            self._all_readers.clear()

    def __enter__(self) -> InboxStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------

    def write_many(self, jobs: list[WriteJob]) -> list[WriteResult]:
        """Run write jobs in one transaction (group commit) and return (result, error) per job.

        When a job fails, the batch runs again with a savepoint per job, so one failing request
        does not take the others down; every result is returned only after COMMIT, so an
        acknowledgement always means "on disk".
        """
        with self._write_lock:
            if self._closed:
                raise RuntimeError(f"The inbox store {self.path!r} is closed; open a new one.")
            conn = self._write_conn
            count = len(jobs)
            results: list[WriteResult] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                if count == 1:  # nothing to isolate: the transaction is the savepoint
                    try:
                        results.append((jobs[0](conn), None))
                    except sqlite3.Error:
                        raise
                    except Exception as e:
                        conn.execute("ROLLBACK")
                        return [(None, e)]
                else:
                    try:  # jobs rarely fail (records are checked before): no savepoints first
                        results = [(job(conn), None) for job in jobs]
                    except Exception:
                        conn.execute("ROLLBACK")
                        conn.execute("BEGIN IMMEDIATE")
                        results = _isolated(conn, jobs)
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                logger.error("The inbox could not commit %d request(s): %s", count, e)
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                error = StorageError(
                    f"The inbox could not store the request ({e}); nothing of it was stored. "
                    "Check the disk and the database file."
                )
                return [(None, error) for _ in range(count)]
            return results

    def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        ((result, error),) = self.write_many([job])
        if error is not None:
            raise error
        return cast(T, result)

    @staticmethod
    def ingest_job(project_id: int, records: list[Record], received: float) -> WriteJob:
        """A write job storing one request's records; returns the number of rows written."""
        return lambda conn: _insert_records(conn, project_id, records, received)

    def ingest(self, project_id: int, records: list[Record], received: float | None = None) -> int:
        """Store records atomically, now, from any thread."""
        when = time.time() if received is None else received
        return int(self._write(self.ingest_job(project_id, records, when)))

    def write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run one write job in its own transaction (the monitor's firings, triage, retention)."""
        return self._write(job)

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only function on a pooled reader connection."""
        with self._reader() as conn:
            return query(conn)

    # -- projects ----------------------------------------------------------------------------

    def create_project(self, name: str) -> Project:
        """Create a project with a fresh public key (the DSN's user part)."""
        if not name or len(name) > 100:
            raise ValueError(f"Project name {name!r} must be 1 to 100 characters long.")

        def create(conn: sqlite3.Connection) -> Project:
            if conn.execute("SELECT 1 FROM projects WHERE name = ?", (name,)).fetchone():
                raise ValueError(
                    f"A project named {name!r} already exists; choose another name "
                    "or use list_projects() to find its DSN."
                )
            key = secrets.token_hex(16)
            cur = conn.execute(
                "INSERT INTO projects (name, public_key, created) VALUES (?, ?, ?)",
                (name, key, time.time()),
            )
            return Project(id=int(cur.lastrowid or 0), name=name, public_key=key)

        project = self._write(create)
        self._projects[project.id] = project
        return project

    def default_project(self) -> Project:
        """The first project, created as ``default`` when the database has none."""
        projects = self.list_projects()
        if projects:
            return projects[0]

        def create_default(conn: sqlite3.Connection) -> Project:
            row = conn.execute(
                "SELECT id, name, public_key FROM projects ORDER BY id LIMIT 1"
            ).fetchone()
            if row:
                return Project(*row)
            key = secrets.token_hex(16)
            cur = conn.execute(
                "INSERT INTO projects (name, public_key, created) VALUES ('default', ?, ?)",
                (key, time.time()),
            )
            return Project(id=int(cur.lastrowid or 0), name="default", public_key=key)

        return self._write(create_default)

    def list_projects(self) -> list[Project]:
        with self._reader() as conn:
            rows = conn.execute("SELECT id, name, public_key FROM projects ORDER BY id").fetchall()
        return [Project(*row) for row in rows]

    def get_project(self, project_id: int) -> Project | None:
        """Look a project up, cached: ingest checks it on every request."""
        project = self._projects.get(project_id)
        if project is None:
            with self._reader() as conn:
                row = conn.execute(
                    "SELECT id, name, public_key FROM projects WHERE id = ?", (project_id,)
                ).fetchone()
            if row is None:
                return None
            project = self._projects[project_id] = Project(*row)
        return project

    # -- reading -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        with self._readers_lock:
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            if self._closed:
                raise RuntimeError(f"The inbox store {self.path!r} is closed.")
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only = ON")
            with self._readers_lock:
                self._all_readers.append(conn)
        try:
            yield conn
        finally:
            with self._readers_lock:
                if self._closed:
                    conn.close()
                else:
                    self._readers.append(conn)

    def reading(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A read-only connection from the pool, for the monitor queries in their own modules."""
        return self._reader()

    def count_events(self, type: str | None = None, project_id: int | None = None) -> int:
        where, params = _event_filter(project_id, type)
        with self._reader() as conn:
            sql = f"SELECT COUNT(*) FROM events {where}"  # noqa: S608
            row = conn.execute(sql, params).fetchone()
        return int(row[0])

    def events(
        self,
        *,
        project_id: int | None = None,
        type: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        issue_id: int | None = None,
        environment: str | None = None,
        release: str | None = None,
        level: str | None = None,
        query: str | None = None,
    ) -> list[dict[str, Any]]:
        """Stored events as their full JSON plus ``eventID``, ``groupID``, ``type``, ``projectID``
        and ``dateReceived``. ``type`` may list several types separated by commas; ``query`` is
        a Sentry search (see ``_search``)."""
        where, params = _event_filter(
            project_id,
            type,
            issue_id,
            {"environment": environment, "release": release, "level": level},
            query,
        )
        order = "DESC" if newest_first else "ASC"
        columns = "id, project_id, type, event_id, issue_id, received, data, raw"
        sql = f"SELECT {columns} FROM events {where} ORDER BY id {order}"  # noqa: S608
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._reader() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_event_json(row) for row in rows]

    def list_issues(
        self,
        project_id: int,
        *,
        environment: str | None = None,
        release: str | None = None,
        level: str | None = None,
        query: str | None = None,
        limit: int | None = 100,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """Issues of a project in Sentry's shape, most recently seen first; ``status`` keeps
        one triage status (all when None)."""
        clauses = ["i.project_id = ?"]
        params: list[Any] = [project_id]
        if status:
            clauses.append("i.status = ?")
            params.append(status)
        for key, value in (("environment", environment), ("release", release)):
            if value:
                clauses.append(
                    "EXISTS (SELECT 1 FROM issue_tags t WHERE t.issue_id = i.id "
                    "AND t.key = ? AND t.value = ?)"
                )
                params += [key, value]
        if level:
            clauses.append("i.level = ?")
            params.append(level)
        search_clauses, search_params = issue_filter(parse(query))
        clauses += search_clauses
        params += search_params
        sql = f"SELECT {_ISSUE_COLUMNS} FROM issues i WHERE {' AND '.join(clauses)} "  # noqa: S608
        sql += "ORDER BY i.last_seen DESC, i.id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._reader() as conn:
            rows = conn.execute(sql, params).fetchall()
            return [self._issue_json(conn, row) for row in rows]

    def get_issue(self, issue_id: int) -> dict[str, Any] | None:
        with self._reader() as conn:
            row = conn.execute(
                f"SELECT {_ISSUE_COLUMNS} FROM issues i WHERE i.id = ?",  # noqa: S608
                (issue_id,),
            ).fetchone()
            return None if row is None else self._issue_json(conn, row)

    def latest_event(self, issue_id: int) -> dict[str, Any] | None:
        events = self.events(issue_id=issue_id, limit=1, newest_first=True)
        return events[0] if events else None

    def issue_histogram(self, issue_id: int, buckets: int = 24) -> list[tuple[float, int]]:
        """Event counts over the issue's lifetime in equal buckets (bucket start, count)."""
        with self._reader() as conn:
            span = conn.execute(
                "SELECT MIN(timestamp), MAX(timestamp) FROM events WHERE issue_id = ?",
                (issue_id,),
            ).fetchone()
            if span is None or span[0] is None:
                return []
            start, end = float(span[0]), max(float(span[1]), float(span[0]) + 60.0)
            width = (end - start) / buckets
            counts = [0] * buckets
            for (ts,) in conn.execute(
                "SELECT timestamp FROM events WHERE issue_id = ?", (issue_id,)
            ):
                counts[min(int((ts - start) / width), buckets - 1)] += 1
        return [(start + i * width, n) for i, n in enumerate(counts)]

    def facets(self, project_id: int) -> dict[str, list[str]]:
        """Environments, releases and levels seen in a project's issues (for the filters)."""
        with self._reader() as conn:
            result = {
                key: [
                    row[0]
                    for row in conn.execute(
                        "SELECT DISTINCT t.value FROM issue_tags t JOIN issues i "
                        "ON i.id = t.issue_id WHERE i.project_id = ? AND t.key = ? "
                        "ORDER BY t.value",
                        (project_id, key),
                    )
                ]
                for key in ("environment", "release")
            }
            result["level"] = [
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT level FROM issues WHERE project_id = ? ORDER BY level",
                    (project_id,),
                )
            ]
        return result

    def performance(self, project_id: int, slowest_spans: int = 5) -> list[dict[str, Any]]:
        """Per transaction name: count, p50/p95/p99 duration in ms and the slowest spans."""
        durations: dict[str, list[float]] = {}
        with self._reader() as conn:
            for name, duration in conn.execute(
                "SELECT name, duration_ms FROM events WHERE project_id = ? AND type = "
                "'transaction' AND duration_ms IS NOT NULL",
                (project_id,),
            ):
                durations.setdefault(name, []).append(duration)
            result: list[dict[str, Any]] = []
            for name, values in durations.items():
                values.sort()
                spans = conn.execute(
                    "SELECT op, description, duration_ms FROM spans WHERE project_id = ? AND "
                    "transaction_name = ? ORDER BY duration_ms DESC LIMIT ?",
                    (project_id, name, slowest_spans),
                ).fetchall()
                result.append(
                    {
                        "transaction": name,
                        "count": len(values),
                        "p50": percentile(values, 0.50),
                        "p95": percentile(values, 0.95),
                        "p99": percentile(values, 0.99),
                        "slowest_spans": [
                            {"op": op, "description": desc, "duration_ms": ms}
                            for op, desc, ms in spans
                        ],
                    }
                )
        result.sort(key=lambda entry: (-entry["p95"], entry["transaction"]))
        return result

    def check_ins(self, project_id: int, limit: int = 200) -> list[dict[str, Any]]:
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT name, status, duration_ms, environment, received, event_id FROM events "
                "WHERE project_id = ? AND type = 'check_in' ORDER BY id DESC LIMIT ?",
                (project_id, limit),
            ).fetchall()
        return [
            {
                "monitorSlug": name,
                "status": status,
                "duration": duration,
                "environment": environment,
                "dateCreated": iso(received),
                "id": event_id,
            }
            for name, status, duration, environment, received, event_id in rows
        ]

    @staticmethod
    def _issue_json(conn: sqlite3.Connection, row: tuple[Any, ...]) -> dict[str, Any]:
        (
            issue_id,
            project_id,
            type_,
            title,
            culprit,
            level,
            metadata,
            first_seen,
            last_seen,
            count,
            user_count,
            project_name,
            status,
            regressed,
            first_release,
            last_release,
        ) = row
        tags: dict[str, list[str]] = {"environment": [], "release": []}
        for key, value in conn.execute(
            "SELECT key, value FROM issue_tags WHERE issue_id = ? ORDER BY first_seen",
            (issue_id,),
        ):
            tags.setdefault(key, []).append(value)
        return {
            "id": str(issue_id),
            "shortId": f"{(project_name or 'PROJECT').upper()}-{issue_id}",
            "title": title,
            "culprit": culprit,
            "level": level,
            "type": type_,
            "status": status,
            "substatus": "regressed" if regressed else None,
            "isRegressed": bool(regressed),
            "metadata": json.loads(metadata),
            "count": str(count),
            "userCount": user_count,
            "firstSeen": iso(first_seen),
            "lastSeen": iso(last_seen),
            "project": {"id": str(project_id), "name": project_name, "slug": project_name},
            "environments": tags["environment"],
            "releases": tags["release"],
            "firstRelease": first_release,
            "lastRelease": last_release,
        }


_ISSUE_COLUMNS = (
    "i.id, i.project_id, i.type, i.title, i.culprit, i.level, i.metadata, i.first_seen, "
    "i.last_seen, i.count, i.user_count, (SELECT name FROM projects p WHERE p.id = i.project_id), "
    "i.status, i.regressed, i.first_release, i.last_release"
)


def _event_filter(
    project_id: int | None,
    type: str | None,
    issue_id: int | None = None,
    columns: dict[str, str | None] | None = None,
    query: str | None = None,
) -> tuple[str, list[Any]]:
    clauses, params = event_filter(parse(query))
    for column, value in (columns or {}).items():
        if value and column in ("environment", "release", "level"):
            clauses.append(f"{column} = ?")
            params.append(value)
    if project_id is not None:
        clauses.append("project_id = ?")
        params.append(project_id)
    if type:
        types = [t.strip() for t in type.split(",") if t.strip()]
        clauses.append(f"type IN ({', '.join('?' * len(types))})")
        params += types
    if issue_id is not None:
        clauses.append("issue_id = ?")
        params.append(issue_id)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _event_json(row: tuple[Any, ...]) -> dict[str, Any]:
    _, project_id, type_, event_id, issue_id, received, data, raw = row
    event: dict[str, Any] = json.loads(data)
    event.setdefault("type", type_)
    event["eventID"] = event_id
    event["groupID"] = None if issue_id is None else str(issue_id)
    event["projectID"] = str(project_id)
    event["dateReceived"] = iso(received)
    if raw is not None:
        event["raw_size"] = len(raw)
    return event


def _segment_name(conn: sqlite3.Connection, project_id: int, record: Record) -> str:
    """The name of a streamed span's segment, sent in an earlier envelope (the span did not
    carry ``sentry.segment.name``)."""
    row = None
    if record.trace_id and record.ref_id:
        row = conn.execute(
            "SELECT name FROM events WHERE project_id = ? AND event_id = ? AND type = "
            "'transaction'",
            (project_id, span_event_id(record.trace_id, record.ref_id)),
        ).fetchone()
    return str(row[0]) if row else UNLABELED


def _name_early_spans(conn: sqlite3.Connection, project_id: int, record: Record) -> None:
    """A streamed segment that arrives after spans which did not carry its name: they take it
    now, so the slowest spans list them under their transaction."""
    early = (
        "SELECT id FROM events WHERE project_id = ? AND ref_id = ? AND type = 'span' "
        "AND trace_id = ? AND name = ?"
    )
    params = (project_id, record.ref_id, record.trace_id, UNLABELED)
    conn.execute(
        f"UPDATE spans SET transaction_name = ? WHERE event_row IN ({early})",  # noqa: S608
        (record.name, *params),
    )
    conn.execute(f"UPDATE events SET name = ? WHERE id IN ({early})", (record.name, *params))  # noqa: S608


def _metadata_json(metadata: dict[str, str]) -> str:
    """An issue's metadata as JSON, by orjson (in C; a tenth of the row's Python time with the
    standard encoder); a lone surrogate, which orjson refuses, takes the standard path."""
    try:
        return orjson.dumps(metadata).decode()
    except orjson.JSONEncodeError:
        return json.dumps(metadata)


def _insert_records(
    conn: sqlite3.Connection, project_id: int, records: list[Record], received: float
) -> int:
    stored = 0
    for record in records:
        if (
            record.type in _DEDUPLICATED_TYPES
            and conn.execute(
                "SELECT 1 FROM events WHERE project_id = ? AND event_id = ?",
                (project_id, record.event_id),
            ).fetchone()
        ):
            continue  # an SDK retry of an event already stored: Sentry keeps one copy too
        if record.type == "span" and record.name is None:
            record.name = _segment_name(conn, project_id, record)
        issue_id = None
        group = record.group
        if group is not None:
            issue_id, issue_status = conn.execute(
                "INSERT INTO issues (project_id, hash, type, title, culprit, level, metadata, "
                "first_seen, last_seen, count, first_release, last_release) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?) "
                "ON CONFLICT (project_id, hash) DO UPDATE SET count = count + 1, "
                "first_seen = min(first_seen, excluded.first_seen), "
                "last_seen = max(last_seen, excluded.last_seen), title = excluded.title, "
                "culprit = excluded.culprit, level = excluded.level, type = excluded.type, "
                "metadata = excluded.metadata, "
                "first_release = coalesce(first_release, excluded.first_release), "
                "last_release = coalesce(excluded.last_release, last_release) "
                "RETURNING id, status",
                (
                    project_id,
                    group.hash,
                    group.type,
                    group.title,
                    group.culprit,
                    group.level,
                    _metadata_json(group.metadata),
                    record.timestamp,
                    record.timestamp,
                    record.release,
                    record.release,
                ),
            ).fetchone()
            if issue_status == "resolved":
                regress(conn, issue_id, received)
            if record.user_key is not None:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO issue_users (issue_id, user_key) VALUES (?, ?)",
                    (issue_id, record.user_key),
                )
                if cur.rowcount == 1:
                    conn.execute(
                        "UPDATE issues SET user_count = user_count + 1 WHERE id = ?", (issue_id,)
                    )
            tags = [
                (issue_id, key, value, record.timestamp, record.timestamp)
                for key, value in (("environment", record.environment), ("release", record.release))
                if value
            ]
            if tags:
                conn.execute(_TAG_UPSERT[len(tags)], [field for tag in tags for field in tag])
        cur = conn.execute(
            "INSERT INTO events (project_id, type, event_id, issue_id, received, timestamp, "
            "environment, release, level, name, status, duration_ms, data, raw, trace_id, "
            "user_key, ref_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                project_id,
                record.type,
                record.event_id,
                issue_id,
                received,
                record.timestamp,
                record.environment,
                record.release,
                record.level,
                record.name,
                record.status,
                record.duration_ms,
                record.data,
                record.raw,
                record.trace_id,
                record.user_key,
                record.ref_id,
            ),
        )
        if record.type == "transaction" and record.ref_id is not None:
            _name_early_spans(conn, project_id, record)
        if record.spans:
            conn.executemany(
                "INSERT INTO spans (event_row, project_id, transaction_name, op, description, "
                "duration_ms) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (cur.lastrowid, project_id, record.name or "", op, desc, ms)
                    for op, desc, ms in record.spans
                ],
            )
        if record.user_key is not None:  # every user seen, the base of "share of users"
            conn.execute(
                "INSERT OR IGNORE INTO project_users (project_id, user_key) VALUES (?, ?)",
                (project_id, record.user_key),
            )
        stored += 1
    return stored
