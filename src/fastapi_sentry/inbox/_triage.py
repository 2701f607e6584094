"""Triage: an issue is ``unresolved``, ``resolved`` or ``ignored`` (Sentry's statuses).

Changed on the issue page (a POST form) and with ``PUT /api/0/issues/<id>/`` (``{"status": ...}``,
as Sentry's API); both pass :func:`check_change`. A resolved issue that gets a new event becomes
unresolved and regressed in the store's ingest path (``_monitor_schema.regress``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fastapi_sentry.inbox._csrf import CSRF_FIELD, check_change
from fastapi_sentry.inbox._errors import InboxError, MalformedRequestError, NotFoundError
from fastapi_sentry.inbox._monitor_schema import STATUSES, record_activity
from fastapi_sentry.inbox._store import InboxStore

#: What the issue list shows when the query names no status, as Sentry's issue stream does.
DEFAULT_STATUS = "unresolved"


def split_status(query: str | None) -> tuple[str | None, str | None]:
    """(the status the list keeps, the search): no query at all means ``is:unresolved``.

    An explicit query, even empty, means every status unless it has an ``is:`` token, which the
    search (``_search``) reads like any other.
    """
    if query is None:
        return DEFAULT_STATUS, None
    return None, query


def set_status(store: InboxStore, issue_id: int, status: str) -> dict[str, Any]:
    """Change an issue's status (clearing its regressed mark) and return the issue."""
    if status not in STATUSES:
        raise MalformedRequestError(
            f"status {status!r} is not one of {', '.join(STATUSES)}.", where="field status"
        )
    now = time.time()

    def change(conn: sqlite3.Connection) -> int:
        cur = conn.execute(
            "UPDATE issues SET status = ?, regressed = 0, status_changed = ? WHERE id = ?",
            (status, now, issue_id),
        )
        if cur.rowcount:
            record_activity(conn, issue_id, f"set_{status}", now)
        return cur.rowcount

    if not store.write(change):
        raise NotFoundError(f"There is no issue {issue_id}.", where="path")
    issue = store.get_issue(issue_id)
    if issue is None:  # pragma: no cover - deleted between the two statements
        raise NotFoundError(f"There is no issue {issue_id}.", where="path")
    return issue


def _status_from_json(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError as e:
        raise MalformedRequestError(
            f'The body is not JSON ({e}); send {{"status": "resolved"}}.', where="body"
        ) from e
    status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(status, str):
        raise MalformedRequestError(
            'The body needs a "status": "unresolved", "resolved" or "ignored".',
            where="field status",
        )
    return status


def _issue_id(request: Request) -> int:
    raw = request.path_params["issue_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFoundError(f"There is no issue {raw!r}; issue ids are integers.", where="path")
    return int(raw)


def triage_routes(store: InboxStore, token: str | None) -> list[Route]:
    """``PUT /api/0/issues/<id>/`` and the issue page's ``POST /issues/<id>/status``."""
    from fastapi_sentry.inbox._app import JSONResponse, error_response
    from fastapi_sentry.inbox._web import error_page

    async def api_update(request: Request) -> Response:
        try:
            check_change(request, token)
            issue_id = _issue_id(request)
            status = _status_from_json(await request.body())
            return JSONResponse(set_status(store, issue_id, status))
        except InboxError as e:
            return error_response(e)

    async def form_update(request: Request) -> Response:
        try:
            form = parse_qs((await request.body()).decode("utf-8", "replace"))
            check_change(request, token, form=(form.get(CSRF_FIELD) or [""])[0])
            issue = set_status(store, _issue_id(request), (form.get("status") or [""])[0])
        except InboxError as e:
            return error_page(e)
        project = issue["project"]["id"]
        return RedirectResponse(f"/issues/{issue['id']}/?project={project}", status_code=303)

    return [
        Route("/api/0/issues/{issue_id}/", api_update, methods=["PUT"]),
        Route("/issues/{issue_id}/status", form_update, methods=["POST"]),
    ]
