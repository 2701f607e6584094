"""What the monitor pages show: the issue stream, releases, performance and a trace.

Each function reads the query string (the page's URL is its query, as in Datasette) and returns
the template and its context; ``_web`` renders it and the JSON API serves the same data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import QueryParams

from fastapi_sentry.inbox._charts import bucket_counts, sparkline
from fastapi_sentry.inbox._errors import InboxError, NotFoundError
from fastapi_sentry.inbox._ingest import parse_timestamp
from fastapi_sentry.inbox._performance import parse_threshold, transactions
from fastapi_sentry.inbox._period import PERIOD_CHOICES, Period, ago, parse_period
from fastapi_sentry.inbox._releases import environments, releases
from fastapi_sentry.inbox._store import InboxStore, Project
from fastapi_sentry.inbox._telemetry import (
    attachments,
    feedback,
    issue_event_ids,
    logs,
    trace_metrics,
)
from fastapi_sentry.inbox._traces import check_trace_id, trace
from fastapi_sentry.inbox._triage import split_status

SPARKLINE_BUCKETS = 24
STREAM_FILTERS = ("environment", "release", "level", "query")


@dataclass
class Page:
    """A template, what it shows, and the HTTP status (400 keeps the form for a bad query)."""

    template: str
    context: dict[str, Any] = field(default_factory=dict)
    status: int = 200


def _relative(iso_time: str, now: float) -> dict[str, str]:
    return {"exact": iso_time, "ago": ago(now - parse_timestamp(iso_time, now))}


def add_issue_stats(
    store: InboxStore, project: Project, issues: list[dict[str, Any]], period: Period
) -> int:
    """Give each issue Sentry's ``stats`` (events per bucket over the period) and ``userShare``
    (percent of every user the project has seen); return that number of users."""
    now = time.time()
    since = now - period.seconds
    ids = [int(issue["id"]) for issue in issues]
    times: dict[int, list[tuple[float, float]]] = {issue_id: [] for issue_id in ids}
    with store.reading() as conn:
        total_users = int(
            conn.execute(
                "SELECT COUNT(*) FROM project_users WHERE project_id = ?", (project.id,)
            ).fetchone()[0]
        )
        for start in range(0, len(ids), 500):  # SQLite limits the bound values per statement
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for issue_id, ts in conn.execute(
                f"SELECT issue_id, timestamp FROM events WHERE issue_id IN ({marks}) "  # noqa: S608
                "AND timestamp >= ?",
                [*chunk, since],
            ):
                times[issue_id].append((ts, 1.0))
    width = period.seconds / SPARKLINE_BUCKETS
    for issue in issues:
        counts = bucket_counts(times[int(issue["id"])], since, now, SPARKLINE_BUCKETS)
        issue["stats"] = {
            period.label: [[int(since + i * width), int(n)] for i, n in enumerate(counts)]
        }
        issue["userShare"] = (
            round(100.0 * issue["userCount"] / total_users, 1) if total_users else None
        )
    return total_users


def issue_list(
    store: InboxStore, project: Project, params: QueryParams, limit: int, *, stats: bool = True
) -> tuple[list[dict[str, Any]], Period, int]:
    """The issues a search finds, with their stats over ``statsPeriod`` (default 24h) unless
    ``stats`` is false."""
    period = parse_period(params.get("statsPeriod"), "24h")
    filters = {key: params.get(key) or None for key in STREAM_FILTERS}
    # no query at all lists the unresolved issues, as Sentry's stream does
    status, filters["query"] = split_status(params.get("query"))
    issues = store.list_issues(project.id, limit=limit, status=status, **filters)
    total_users = add_issue_stats(store, project, issues, period) if stats else 0
    return issues, period, total_users


def issue_stream(store: InboxStore, project: Project, params: QueryParams) -> Page:
    """The issue list: Sentry's search, a sparkline per issue, users as a share, relative times."""
    filters = {key: params.get(key) or None for key in STREAM_FILTERS}
    if params.get("query") is None:  # the search box shows what the list keeps by default
        filters["query"] = f"is:{split_status(None)[0]}"
    context: dict[str, Any] = {"filters": filters, "periods": PERIOD_CHOICES, "issues": []}
    context["facets"] = store.facets(project.id)
    context["period"] = params.get("statsPeriod") or "24h"
    try:
        issues, period, total_users = issue_list(store, project, params, 500)
    except InboxError as e:
        return Page("issues.html", {**context, "error": e}, e.status_code)
    now = time.time()
    for issue in issues:
        counts = [n for _, n in issue["stats"][period.label]]
        issue["sparkline"] = sparkline(counts, label=f"events in the last {period.label}")
        issue["firstSeenAt"] = _relative(issue["firstSeen"], now)
        issue["lastSeenAt"] = _relative(issue["lastSeen"], now)
    context.update(issues=issues, total_users=total_users, period=period.label)
    return Page("issues.html", context)


def release_list(store: InboxStore, project: Project, params: QueryParams) -> list[dict[str, Any]]:
    """Releases with health over ``statsPeriod`` (default 14d) in ``environment`` (default all)."""
    period = parse_period(params.get("statsPeriod"), "14d")
    with store.reading() as conn:
        return releases(conn, project.id, period, environment=params.get("environment") or None)


def releases_page(store: InboxStore, project: Project, params: QueryParams) -> Page:
    rows = release_list(store, project, params)
    with store.reading() as conn:
        known_environments = environments(conn, project.id)
    for row in rows:
        row["adoptionChart"] = sparkline(
            row["healthData"]["adoptionStats"], label="adoption over the period"
        )
    context = {
        "releases": rows,
        "environments": known_environments,
        "environment": params.get("environment") or "",
        "period": params.get("statsPeriod") or "14d",
        "periods": PERIOD_CHOICES,
    }
    return Page("releases.html", context)


def performance_list(
    store: InboxStore, project: Project, params: QueryParams
) -> tuple[list[dict[str, Any]], int, str]:
    """Transactions over ``statsPeriod`` (default 24h) with Apdex at ``threshold`` ms."""
    period = parse_period(params.get("statsPeriod"), "24h")
    threshold = parse_threshold(params.get("threshold"))
    with store.reading() as conn:
        rows = transactions(
            conn,
            project.id,
            period,
            threshold_ms=threshold,
            environment=params.get("environment") or None,
            release=params.get("release") or None,
        )
    return rows, threshold, period.label


def performance_page(store: InboxStore, project: Project, params: QueryParams) -> Page:
    rows, threshold, period = performance_list(store, project, params)
    context = {"rows": rows, "threshold": threshold, "period": period, "periods": PERIOD_CHOICES}
    return Page("performance.html", context)


def trace_data(store: InboxStore, project: Project, raw_trace_id: str) -> dict[str, Any]:
    trace_id = check_trace_id(raw_trace_id)
    with store.reading() as conn:
        found = trace(conn, project.id, trace_id)
    if found is None:
        raise NotFoundError(
            f"Project {project.id} has no event in trace {trace_id}; traces are kept only for "
            "transactions and errors that carry it (set traces_sample_rate in the SDK).",
            where="path",
        )
    return found


TRACE_LOGS = 50


def trace_page(store: InboxStore, project: Project, raw_trace_id: str) -> Page:
    found = trace_data(store, project, raw_trace_id)
    with store.reading() as conn:
        found_logs = logs(conn, project.id, f"trace:{found['traceId']}", TRACE_LOGS)
    return Page("trace.html", {"trace": found, "logs": found_logs})


def log_list(
    store: InboxStore, project: Project, params: QueryParams, limit: int = 200
) -> list[dict[str, Any]]:
    """Logs matching ``query`` (level:, trace:, free text), newest first."""
    with store.reading() as conn:
        return logs(conn, project.id, params.get("query"), limit)


def logs_page(store: InboxStore, project: Project, params: QueryParams) -> Page:
    context: dict[str, Any] = {"query": params.get("query") or "", "logs": []}
    try:
        context["logs"] = log_list(store, project, params)
    except InboxError as e:
        return Page("logs.html", {**context, "error": e}, e.status_code)
    return Page("logs.html", context)


def metric_list(
    store: InboxStore, project: Project, params: QueryParams, limit: int = 200
) -> list[dict[str, Any]]:
    with store.reading() as conn:
        return trace_metrics(conn, project.id, params.get("name") or None, limit)


def metrics_page(store: InboxStore, project: Project, params: QueryParams) -> Page:
    rows = metric_list(store, project, params)
    return Page("metrics.html", {"metrics": rows, "name": params.get("name") or ""})


def feedback_list(store: InboxStore, project: Project, limit: int = 200) -> list[dict[str, Any]]:
    with store.reading() as conn:
        return feedback(conn, project.id, limit=limit)


def feedback_page(store: InboxStore, project: Project, params: QueryParams) -> Page:
    return Page("feedback.html", {"feedback": feedback_list(store, project)})


def issue_extras(
    store: InboxStore, project: Project, issue_id: int, event_id: str, trace_id: str
) -> dict[str, Any]:
    """What the issue page shows besides its event: the event's attachments, the issue's user
    feedback and the logs of the event's trace."""
    with store.reading() as conn:
        return {
            "attachments": attachments(conn, project.id, event_id) if event_id else [],
            "feedback": feedback(conn, project.id, event_ids=issue_event_ids(conn, issue_id)),
            "logs": logs(conn, project.id, f"trace:{trace_id}", TRACE_LOGS) if trace_id else [],
        }
