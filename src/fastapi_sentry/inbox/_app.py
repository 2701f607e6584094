"""The inbox's Starlette application: Sentry's ingest endpoints, Spotlight's stream, a JSON API and
the web pages."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from fastapi_sentry.inbox._alerts import AlertRules, list_firings
from fastapi_sentry.inbox._auth import (
    check_key,
    check_token,
    is_loopback,
    missing_key_error,
    sentry_key,
)
from fastapi_sentry.inbox._envelope import MAX_ENVELOPE_SIZE, make_decoder, parse_envelope
from fastapi_sentry.inbox._errors import (
    ForbiddenError,
    InboxError,
    MalformedRequestError,
    NotFoundError,
    PayloadTooLargeError,
)
from fastapi_sentry.inbox._ingest import Record, records_from_envelope, records_from_store_body
from fastapi_sentry.inbox._pages import (
    feedback_list,
    issue_list,
    log_list,
    metric_list,
    performance_list,
    release_list,
    trace_data,
)
from fastapi_sentry.inbox._store import InboxStore, Project, WriteJob
from fastapi_sentry.inbox._telemetry import attachment_file, attachments
from fastapi_sentry.inbox._triage import triage_routes
from fastapi_sentry.inbox._web import web_routes

logger = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


class JSONResponse(Response):
    """ASCII-escaped JSON: stored strings may hold lone surrogates, which UTF-8 cannot encode."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


def error_response(error: InboxError, status_code: int | None = None) -> JSONResponse:
    # Close the connection: the rest of a refused body is never read, and must not be parsed as
    # the next request either.
    return JSONResponse(
        error.to_json(),
        status_code=status_code or error.status_code,
        headers={"Connection": "close"},
    )


_JSON = "application/json"
_MIMETYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,100}/[A-Za-z0-9!#$&^_.+-]{1,100}")
_EVENT_ID = re.compile(r"[0-9a-f]{32}")


def download_response(entry: dict[str, Any], data: bytes) -> Response:
    """An attachment as a download, never rendered by the browser: an uploaded HTML or SVG
    file would otherwise run its script on the inbox's origin."""
    mimetype = entry["mimetype"] if _MIMETYPE.fullmatch(entry["mimetype"]) else ""
    name = str(entry["name"])
    plain = re.sub(r"[^A-Za-z0-9._ -]", "_", name)[:200] or "attachment"
    quoted = quote(name.encode("utf-8", "replace"), safe="")
    return Response(
        data,
        media_type=mimetype or "application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quoted}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


def _int_id(value: str, what: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise NotFoundError(f"There is no {what} {value!r}; {what} ids are integers.", where="path")
    return int(value)


def check_length(length: str | None) -> None:
    """Refuse a body by its Content-Length header before reading any of it."""
    if length is not None:
        if not length.strip().isdigit():
            raise MalformedRequestError(
                f"Content-Length {length!r} is not a number.", where="Content-Length header"
            )
        if int(length) > MAX_ENVELOPE_SIZE:
            raise PayloadTooLargeError(
                f"The body is {int(length)} bytes; the limit is {MAX_ENVELOPE_SIZE} bytes "
                "(20 MiB). Send smaller envelopes.",
                where="Content-Length header",
            )


async def read_chunks(content_encoding: str | None, chunks: AsyncIterable[bytes]) -> bytes:
    """Decompress a body chunk by chunk, refusing it as soon as a size limit is crossed."""
    decoder = make_decoder(content_encoding)
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > MAX_ENVELOPE_SIZE:
            raise PayloadTooLargeError(
                f"The body is over {MAX_ENVELOPE_SIZE} bytes (20 MiB); send smaller envelopes.",
                where="body",
            )
        if chunk:
            decoder.feed(chunk)
    return decoder.finish()


async def _read_body(request: Request) -> bytes:
    """Read and decompress the body, refusing it as soon as a size limit is crossed."""
    check_length(request.headers.get("content-length"))
    return await read_chunks(request.headers.get("content-encoding"), request.stream())


class _WriteBatcher:
    """Group commit inside the event loop: every request parsed in one loop iteration is
    written in one transaction at the start of the next, then each is answered."""

    def __init__(self, store: InboxStore) -> None:
        self.store = store
        self.pending: dict[asyncio.AbstractEventLoop, list[tuple[WriteJob, asyncio.Future[Any]]]]
        self.pending = {}

    async def write(self, job: WriteJob) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        queue = self.pending.setdefault(loop, [])
        queue.append((job, future))
        if len(queue) == 1:
            loop.call_soon(self._flush, loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self.pending.pop(loop, [])
        try:
            results = self.store.write_many([job for job, _ in batch])
        except Exception as e:  # the store is closed: answer every waiting request
            results = [(None, e) for _ in batch]
        for (_, future), (result, error) in zip(batch, results, strict=True):
            if future.cancelled():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)


class InboxApp:
    """The endpoints; :meth:`authenticate` and :meth:`ingest` also serve granian's envelope
    path (:mod:`fastapi_sentry.inbox._rsgi`)."""

    def __init__(self, store: InboxStore, token: str | None) -> None:
        self.store = store
        self.token = token
        self.batcher = _WriteBatcher(store)

    def _project(self, raw_id: str) -> Project:
        project_id = _int_id(raw_id, "project")
        project = self.store.get_project(project_id)
        if project is None:
            raise NotFoundError(
                f"There is no project {project_id}; use the DSN the inbox printed or create "
                "the project first (InboxStore.create_project or the fastapi-sentry CLI).",
                where="path",
            )
        return project

    def _authenticate(self, request: Request) -> Project:
        return self.authenticate(request.path_params["project_id"], sentry_key(request))

    async def _store(self, project: Project, records: list[Record], received: float) -> None:
        if records:
            await self.batcher.write(self.store.ingest_job(project.id, records, received))

    async def envelope(self, request: Request) -> Response:
        project = self._authenticate(request)
        received = time.time()
        return Response(
            await self.ingest(project, await _read_body(request), received), media_type=_JSON
        )

    def authenticate(self, raw_project_id: str, key: str | None) -> Project:
        """The project an envelope is for, once its DSN key is checked."""
        if key is None:
            raise missing_key_error()
        project = self._project(raw_project_id)
        check_key(key, project.public_key, project.id)
        return project

    async def ingest(self, project: Project, body: bytes, received: float) -> bytes:
        """Store an envelope's records; the answer's body: the event id, as Sentry answers."""
        records = records_from_envelope(parse_envelope(body), received)
        await self._store(project, records, received)
        for record in records:
            if record.group is not None or record.type == "transaction":
                # An event id is 32 hex digits: the answer needs no JSON encoder.
                return b'{"id":"%s"}' % record.event_id.encode()
        return b"{}"

    async def store_endpoint(self, request: Request) -> Response:
        project = self._authenticate(request)
        received = time.time()
        records = records_from_store_body(await _read_body(request), received)
        await self._store(project, records, received)
        return JSONResponse({"id": records[0].event_id})

    async def spotlight(self, request: Request) -> Response:
        # Spotlight sends no key; only processes on this machine may use it.
        client = request.client
        if client is None or not is_loopback(client.host):
            raise ForbiddenError(
                "Spotlight's /stream accepts envelopes from this machine only; remote SDKs must "
                "use the DSN.",
                where="client address",
            )
        received = time.time()
        envelope = parse_envelope(await _read_body(request))
        records = records_from_envelope(envelope, received)
        await self._store(self.store.default_project(), records, received)
        return Response(status_code=200)

    # -- JSON API ------------------------------------------------------------------------------

    def _read_guard(self, request: Request) -> None:
        check_token(request, self.token)

    def _limit(self, request: Request, default: int = 100) -> int:
        raw = request.query_params.get("limit", str(default))
        if not raw.isdigit() or not 1 <= int(raw) <= 10000:
            raise MalformedRequestError(
                f"limit={raw!r} must be an integer from 1 to 10000.", where="query parameter limit"
            )
        return int(raw)

    async def api_projects(self, request: Request) -> Response:
        self._read_guard(request)
        return JSONResponse(
            [
                {"id": str(p.id), "name": p.name, "slug": p.name, "publicKey": p.public_key}
                for p in self.store.list_projects()
            ]
        )

    async def api_issues(self, request: Request) -> Response:
        self._read_guard(request)
        project = self._project(request.path_params["project_id"])
        # Sentry's stats (events per bucket) and the share of users come with a statsPeriod.
        params = request.query_params
        stats = bool(params.get("statsPeriod"))
        issues, _, _ = issue_list(self.store, project, params, self._limit(request), stats=stats)
        return JSONResponse(issues)

    async def api_alerts(self, request: Request) -> Response:
        self._read_guard(request)
        project = self._project(request.path_params["project_id"])
        return JSONResponse(list_firings(self.store, project.id, self._limit(request, 200)))

    def _issue(self, request: Request) -> dict[str, Any]:
        issue_id = _int_id(request.path_params["issue_id"], "issue")
        issue = self.store.get_issue(issue_id)
        if issue is None:
            raise NotFoundError(f"There is no issue {issue_id}.", where="path")
        return issue

    async def api_issue(self, request: Request) -> Response:
        self._read_guard(request)
        return JSONResponse(self._issue(request))

    async def api_issue_latest(self, request: Request) -> Response:
        self._read_guard(request)
        issue = self._issue(request)
        return JSONResponse(self.store.latest_event(int(issue["id"])))

    async def api_issue_events(self, request: Request) -> Response:
        self._read_guard(request)
        issue = self._issue(request)
        return JSONResponse(
            self.store.events(
                issue_id=int(issue["id"]), limit=self._limit(request), newest_first=True
            )
        )

    async def api_events(self, request: Request) -> Response:
        self._read_guard(request)
        project = self._project(request.path_params["project_id"])
        return JSONResponse(
            self.store.events(
                project_id=project.id,
                type=request.query_params.get("type"),
                environment=request.query_params.get("environment"),
                release=request.query_params.get("release"),
                level=request.query_params.get("level"),
                query=request.query_params.get("query"),
                limit=self._limit(request),
                newest_first=True,
            )
        )

    # -- monitor API (release health, performance, traces) ---------------------------------

    async def api_releases(self, request: Request) -> Response:
        self._read_guard(request)
        project = self._project(request.path_params["project_id"])
        return JSONResponse(release_list(self.store, project, request.query_params))

    async def api_performance(self, request: Request) -> Response:
        self._read_guard(request)
        project = self._project(request.path_params["project_id"])
        rows, threshold, period = performance_list(self.store, project, request.query_params)
        return JSONResponse({"statsPeriod": period, "threshold": threshold, "data": rows})

    async def api_logs(self, request: Request) -> Response:
        self._read_guard(request)
        project = self._project(request.path_params["project_id"])
        return JSONResponse(
            log_list(self.store, project, request.query_params, self._limit(request, 200))
        )

    async def api_metrics(self, request: Request) -> Response:
        self._read_guard(request)
        project = self._project(request.path_params["project_id"])
        return JSONResponse(
            metric_list(self.store, project, request.query_params, self._limit(request, 200))
        )

    async def api_feedback(self, request: Request) -> Response:
        self._read_guard(request)
        project = self._project(request.path_params["project_id"])
        return JSONResponse(feedback_list(self.store, project, self._limit(request, 200)))

    def _event_id(self, request: Request) -> str:
        raw = str(request.path_params["event_id"])
        event_id = raw.replace("-", "").lower()
        if not _EVENT_ID.fullmatch(event_id):
            raise NotFoundError(f"There is no event {raw!r}; event ids are 32 hex digits.")
        return event_id

    async def api_attachments(self, request: Request) -> Response:
        self._read_guard(request)
        project = self._project(request.path_params["project_id"])
        event_id = self._event_id(request)
        with self.store.reading() as conn:
            return JSONResponse(attachments(conn, project.id, event_id))

    async def api_attachment(self, request: Request) -> Response:
        self._read_guard(request)
        project = self._project(request.path_params["project_id"])
        event_id = self._event_id(request)
        attachment_id = request.path_params["attachment_id"]
        with self.store.reading() as conn:
            found = attachment_file(conn, project.id, event_id, attachment_id)
        if found is None:
            raise NotFoundError(
                f"Event {event_id} has no attachment {attachment_id!r}; list them at "
                f"/api/0/projects/{project.id}/events/{event_id}/attachments/.",
                where="path",
            )
        return download_response(*found)

    async def api_trace(self, request: Request) -> Response:
        self._read_guard(request)
        project = self._project(request.path_params["project_id"])
        return JSONResponse(trace_data(self.store, project, request.path_params["trace_id"]))


def _guarded(endpoint: Endpoint) -> Endpoint:
    """Turn an InboxError into its JSON answer; the request changed nothing (it raised before
    its records were committed)."""

    async def handler(request: Request) -> Response:
        try:
            return await endpoint(request)
        except InboxError as e:
            if e.status_code >= 500:
                logger.error("Inbox request %s failed: %s", request.url.path, e.message)
            else:
                logger.info("Inbox refused %s (%d): %s", request.url.path, e.status_code, e)
            return error_response(e)
        except ClientDisconnect:
            # The sender gave up mid-body: nothing was stored and nobody is left to answer.
            logger.info("Inbox request %s: the client disconnected mid-body", request.url.path)
            return Response(status_code=400, headers={"Connection": "close"})

    return handler


INGEST_PATHS = (
    "/api/{project_id}/envelope/",
    "/api/{project_id}/envelope",
    "/api/{project_id}/store/",
    "/api/{project_id}/store",
    "/stream",
)
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Retry-After, X-Sentry-Rate-Limits",
}


async def _preflight(request: Request) -> Response:
    return Response(
        status_code=200,
        headers={
            **CORS_HEADERS,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": (
                "Content-Type, Content-Encoding, X-Sentry-Auth, Authorization, Baggage, "
                "Sentry-Trace"
            ),
            "Access-Control-Max-Age": "3600",
        },
    )


def _cors(endpoint: Endpoint) -> Endpoint:
    async def with_cors(request: Request) -> Response:
        response: Response = await endpoint(request)
        response.headers.update(CORS_HEADERS)
        return response

    return with_cors


def _with_cors(route: Route) -> Route:
    return Route(route.path, _cors(route.endpoint), methods=["POST"])


_ENVELOPE_PATH = re.compile(r"/api/([0-9]{1,18})/envelope/?")


class _IngestFastPath:
    """Envelope POSTs straight to their endpoint, everything else to Starlette.

    Starlette's middleware layers and its router (tried route by route, some fifty of them) cost
    about as much CPU as parsing the envelope; the envelope endpoint needs none of them. The answer,
    its errors and its CORS headers are the route's own: the same endpoint function runs.
    """

    def __init__(self, inner: ASGIApp, envelope: Endpoint) -> None:
        self.inner = inner
        self.envelope = _cors(_guarded(envelope))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _ENVELOPE_PATH.fullmatch(scope["path"])
            if match is not None:
                scope["path_params"] = {"project_id": match.group(1)}
                response = await self.envelope(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.inner(scope, receive, send)


def ingest_fast_path(app: Starlette, inner: ASGIApp) -> ASGIApp:
    """``inner`` (which serves ``app``, from :func:`create_app`) with envelope POSTs sent
    straight to ``app``'s envelope endpoint."""
    return _IngestFastPath(inner, app.state.envelope_endpoint)


def create_app(
    store: InboxStore, *, token: str | None = None, rules: AlertRules | None = None
) -> Starlette:
    """The inbox as an ASGI app over ``store``; ``token`` protects the web pages and JSON API;
    ``rules`` (evaluated by the server's alert engine) are shown on the Alerts page."""
    app = InboxApp(store, token)
    api = [
        ("/api/{project_id}/envelope/", app.envelope, "POST"),
        ("/api/{project_id}/envelope", app.envelope, "POST"),
        ("/api/{project_id}/store/", app.store_endpoint, "POST"),
        ("/api/{project_id}/store", app.store_endpoint, "POST"),
        ("/stream", app.spotlight, "POST"),
        ("/api/0/projects/", app.api_projects, "GET"),
        ("/api/0/projects/{project_id}/issues/", app.api_issues, "GET"),
        ("/api/0/projects/{project_id}/events/", app.api_events, "GET"),
        ("/api/0/projects/{project_id}/releases/", app.api_releases, "GET"),
        ("/api/0/projects/{project_id}/performance/", app.api_performance, "GET"),
        ("/api/0/projects/{project_id}/traces/{trace_id}/", app.api_trace, "GET"),
        ("/api/0/projects/{project_id}/alerts/", app.api_alerts, "GET"),
        ("/api/0/projects/{project_id}/logs/", app.api_logs, "GET"),
        ("/api/0/projects/{project_id}/metrics/", app.api_metrics, "GET"),
        ("/api/0/projects/{project_id}/user-feedback/", app.api_feedback, "GET"),
        (
            "/api/0/projects/{project_id}/events/{event_id}/attachments/",
            app.api_attachments,
            "GET",
        ),
        (
            "/api/0/projects/{project_id}/events/{event_id}/attachments/{attachment_id}/",
            app.api_attachment,
            "GET",
        ),
        ("/api/0/issues/{issue_id}/", app.api_issue, "GET"),
        ("/api/0/issues/{issue_id}/events/", app.api_issue_events, "GET"),
        ("/api/0/issues/{issue_id}/events/latest/", app.api_issue_latest, "GET"),
    ]
    routes = [Route(path, _guarded(fn), methods=[method]) for path, fn, method in api]
    # Browser SDKs (a frontend beside the FastAPI service) post cross-origin, like to Sentry.
    routes = [_with_cors(route) if route.path in INGEST_PATHS else route for route in routes]
    routes += [Route(path, _preflight, methods=["OPTIONS"]) for path in INGEST_PATHS]
    routes += triage_routes(store, token)
    routes += web_routes(store, token, rules)
    starlette = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    # A redirect answers a POST with nothing stored and nothing said: unknown paths get a 404.
    starlette.router.redirect_slashes = False
    starlette.state.envelope_endpoint = app.envelope
    starlette.state.ingest = app
    return starlette


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as JSON sentences, like every other refusal of the inbox."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        message = (
            f"There is no {request.method} {request.url.path!r} on this inbox; SDKs post to "
            "/api/<project id>/envelope/ and the JSON API lives under /api/0/."
        )
    elif status == 405:
        message = f"{request.url.path!r} does not accept {request.method}."
    else:
        message = f"The request was refused ({status})."
    return error_response(InboxError(message, where="path"), status_code=status)
