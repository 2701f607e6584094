"""Server-rendered pages: issue list, issue detail, performance, crons, logs, metrics, feedback.

Everything comes from untrusted events, so templates autoescape and every page is served with a
Content-Security-Policy that allows no script at all: the pages need none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fastapi_sentry.inbox._alerts import AlertRules, list_firings
from fastapi_sentry.inbox._alerts._history import shown_target
from fastapi_sentry.inbox._alerts._rules import duration_text
from fastapi_sentry.inbox._auth import TOKEN_COOKIE, check_token
from fastapi_sentry.inbox._csrf import form_token
from fastapi_sentry.inbox._errors import InboxError, NotFoundError
from fastapi_sentry.inbox._grouping import as_dict, as_list, as_str, exceptions, formatted_message
from fastapi_sentry.inbox._ingest import trace_id_of
from fastapi_sentry.inbox._monitor_schema import STATUSES
from fastapi_sentry.inbox._pages import (
    feedback_page,
    issue_extras,
    issue_stream,
    logs_page,
    metrics_page,
    performance_page,
    releases_page,
    trace_page,
)
from fastapi_sentry.inbox._store import InboxStore, Project, iso

# Pages whose content lives in _pages (shared with the JSON API), by route name.
_MONITOR_PAGES = {
    "issues": issue_stream,
    "releases": releases_page,
    "performance": performance_page,
    "logs": logs_page,
    "metrics": metrics_page,
    "feedback": feedback_page,
}

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _show(value: Any) -> str:
    """How a JSON value reads on the page: strings as they are, everything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _ts(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return iso(float(value))
    return as_str(value)


_env.filters["show"] = _show
_env.filters["ts"] = _ts
_env.filters["duration"] = duration_text


def _html(template: str, status_code: int = 200, **context: Any) -> Response:
    text = _env.get_template(template).render(**context)
    return Response(
        text.encode("utf-8", "replace"),
        status_code=status_code,
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"},
    )


def error_page(error: InboxError) -> Response:
    return _html("error.html", error.status_code, error=error, title="Error")


def _pairs(value: Any) -> list[tuple[str, Any]]:
    """Tags and similar arrive as a dict or as a list of [key, value] pairs."""
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items()]
    pairs = []
    for entry in as_list(value):
        if isinstance(entry, (list, tuple)) and len(entry) == 2:
            pairs.append((as_str(entry[0]) or _show(entry[0]), entry[1]))
    return pairs


def event_view(event: dict[str, Any]) -> dict[str, Any]:
    """Shape an untrusted event for the issue template; missing or odd fields become empty."""
    chain = []
    for exc in reversed(exceptions(event)):  # the raised exception first, its causes after
        frames = []
        for frame in as_list(as_dict(exc.get("stacktrace")).get("frames")):
            frame = as_dict(frame)
            frames.append(
                {
                    "module": as_str(frame.get("module")) or as_str(frame.get("filename")),
                    "function": as_str(frame.get("function")) or "?",
                    "lineno": as_str(frame.get("lineno")),
                    "filename": as_str(frame.get("filename")) or as_str(frame.get("abs_path")),
                    "in_app": frame.get("in_app") is True,
                    "pre": [as_str(line) for line in as_list(frame.get("pre_context"))],
                    "line": as_str(frame.get("context_line")),
                    "post": [as_str(line) for line in as_list(frame.get("post_context"))],
                    "vars": _pairs(frame.get("vars")),
                }
            )
        chain.append(
            {
                "type": as_str(exc.get("type")) or "Error",
                "value": as_str(exc.get("value")),
                "module": as_str(exc.get("module")),
                "frames": frames,
            }
        )
    crumbs_container = event.get("breadcrumbs")
    crumbs = as_list(as_dict(crumbs_container).get("values")) or as_list(crumbs_container)
    contexts = as_dict(event.get("contexts"))
    return {
        "event_id": as_str(event.get("eventID")) or as_str(event.get("event_id")),
        "message": formatted_message(event),
        "timestamp": _ts(event.get("timestamp")),
        "level": as_str(event.get("level")) or "error",
        "platform": as_str(event.get("platform")),
        "environment": as_str(event.get("environment")),
        "release": as_str(event.get("release")),
        "transaction": as_str(event.get("transaction")),
        "trace_id": trace_id_of(event) or "",
        "exceptions": chain,
        "breadcrumbs": [
            {
                "timestamp": _ts(as_dict(c).get("timestamp")),
                "category": as_str(as_dict(c).get("category")),
                "type": as_str(as_dict(c).get("type")) or "default",
                "level": as_str(as_dict(c).get("level")) or "info",
                "message": as_str(as_dict(c).get("message")),
                "data": _pairs(as_dict(c).get("data")),
            }
            for c in crumbs
            if isinstance(c, dict)
        ],
        "tags": _pairs(event.get("tags")),
        "contexts": [(name, _pairs(value)) for name, value in contexts.items()],
        "request": _pairs(event.get("request")),
        "user": _pairs(event.get("user")),
        "extra": _pairs(event.get("extra")),
    }


def _chart(histogram: list[tuple[float, int]]) -> dict[str, Any]:
    peak = max((count for _, count in histogram), default=0) or 1
    width = 12
    bars = [
        {
            "x": i * (width + 2),
            "height": round(40 * count / peak, 1),
            "count": count,
            "start": iso(start),
        }
        for i, (start, count) in enumerate(histogram)
    ]
    return {"bars": bars, "width": len(bars) * (width + 2), "bar_width": width}


def web_routes(
    store: InboxStore, token: str | None, rules: AlertRules | None = None
) -> list[Route]:
    def project_from(request: Request) -> tuple[Project, list[Project]]:
        projects = store.list_projects() or [store.default_project()]
        wanted = request.query_params.get("project")
        for project in projects:
            if wanted is not None and str(project.id) == wanted:
                return project, projects
        if wanted is not None:
            raise NotFoundError(f"There is no project {wanted!r}.", where="query parameter project")
        return projects[0], projects

    async def page(request: Request, name: str) -> Response:
        try:
            set_cookie = check_token(request, token)
            response = render(request, name)
        except InboxError as e:
            return error_page(e)
        if set_cookie and token is not None:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    def render(request: Request, name: str) -> Response:
        project, projects = project_from(request)
        common: dict[str, Any] = {"project": project, "projects": projects, "section": name}
        if name in _MONITOR_PAGES:
            shown = _MONITOR_PAGES[name](store, project, request.query_params)
            title = name.capitalize()
            return _html(shown.template, shown.status, title=title, **shown.context, **common)
        if name == "trace":
            shown = trace_page(store, project, request.path_params["trace_id"])
            return _html(shown.template, title="Trace", **shown.context, **common)
        if name == "issue":
            raw_id = request.path_params["issue_id"]
            issue = store.get_issue(int(raw_id)) if raw_id.isdigit() and len(raw_id) < 18 else None
            if issue is None:
                raise NotFoundError(f"There is no issue {raw_id!r}.", where="path")
            event = store.latest_event(int(issue["id"]))
            viewed = event_view(event or {})
            extras = issue_extras(
                store, project, int(issue["id"]), viewed["event_id"], viewed["trace_id"]
            )
            return _html(
                "issue.html",
                issue=issue,
                event=viewed,
                **extras,
                chart=_chart(store.issue_histogram(int(issue["id"]))),
                csrf=form_token(),
                statuses=STATUSES,
                title=issue["title"],
                **common,
            )
        if name == "alerts":
            return _html(
                "alerts.html",
                rules=[(rule, [shown_target(t) for t in rule.notify]) for rule in rules.rules]
                if rules
                else [],
                firings=list_firings(store, project.id),
                title="Alerts",
                **common,
            )
        return _html("crons.html", rows=store.check_ins(project.id), title="Crons", **common)

    def route(path: str, name: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await page(request, name)

        return Route(path, endpoint, methods=["GET"], name=name)

    return [
        route("/", "issues"),
        route("/issues/{issue_id}/", "issue"),
        route("/performance/", "performance"),
        route("/releases/", "releases"),
        route("/traces/{trace_id}/", "trace"),
        route("/crons/", "crons"),
        route("/logs/", "logs"),
        route("/metrics/", "metrics"),
        route("/feedback/", "feedback"),
        route("/alerts/", "alerts"),
    ]
