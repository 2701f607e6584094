"""`fastapi-sentry check`: send a test event with the service's own settings and wait for the
server's answer, so a wrong DSN or a blocked network shows at deploy time, not at the first error.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi_sentry._cli._output import EXIT_OK, EXIT_USAGE, error, say, seconds
from fastapi_sentry._errors import ConfigError
from fastapi_sentry._settings import load_settings

if TYPE_CHECKING:
    from sentry_sdk.envelope import Envelope
    from sentry_sdk.transport import HttpTransport

CHECK_MESSAGE = "fastapi-sentry check: a test event (safe to resolve)"
CHECK_TAG = "fastapi_sentry.check"
DEFAULT_CHECK_TIMEOUT = 10.0

# Seconds the inbox probe after a delivered check may take: it only decides what to print.
_PROBE_TIMEOUT = 2.0


def add_parser(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help="send a test event with the service's settings and wait for the server's answer",
        description=(
            "Load the settings exactly as install() does (SENTRY_* variables and .env), send a "
            "test event through sentry-sdk's HTTP transport and wait for the answer. Exit "
            "codes: 0 accepted, 1 not accepted or no answer in time, 2 invalid settings or "
            "Sentry off."
        ),
    )
    check.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_CHECK_TIMEOUT,
        help=f"seconds to wait for the server's answer (default {DEFAULT_CHECK_TIMEOUT:g})",
    )
    check.set_defaults(run=run)


@dataclass(frozen=True)
class Delivery:
    """What happened to one envelope on the wire."""

    status: int | None  # None: no HTTP answer (network error)
    reason: str
    seconds: float

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class DeliveryLog:
    """Outcomes of sent envelopes by event id, filled from the transport's worker thread."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._started = time.monotonic()
        self._outcomes: dict[str, Delivery] = {}
        self._cond = threading.Condition()

    def start(self) -> None:
        """Measure from now: SDK start-up is not part of the delivery time."""
        self._started = time.monotonic()

    def record(self, envelope: Envelope | None, status: int | None, reason: str) -> None:
        event_id = envelope.headers.get("event_id") if envelope is not None else None
        if not event_id:
            return  # client reports and sessions: not what `check` waits for
        if self._secret:
            reason = reason.replace(self._secret, "***")
        with self._cond:
            self._outcomes.setdefault(
                str(event_id), Delivery(status, reason, time.monotonic() - self._started)
            )
            self._cond.notify_all()

    def wait(self, event_id: str, timeout: float) -> Delivery | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while event_id not in self._outcomes:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._outcomes[event_id]


def _response_reason(response: Any) -> str:
    status = int(response.status)
    if 200 <= status < 300:
        return f"HTTP {status}"
    if status == 429:
        retry = response.headers.get("Retry-After")
        limits = response.headers.get("X-Sentry-Rate-Limits")
        detail = f", retry after {retry} s" if retry else ""
        detail += f", rate limits {limits!r}" if limits else ""
        return f"the server rate-limited it (HTTP 429{detail}); wait or raise the project's quota"
    detail = ""
    body = getattr(response, "data", b"") or b""
    try:
        parsed = json.loads(body)
        detail = str(parsed.get("detail", "")) if isinstance(parsed, dict) else ""
    except ValueError:
        detail = body[:200].decode("utf-8", "replace")
    detail = " ".join(detail.split())[:200]
    hint = {
        401: "the DSN's key was not accepted; copy the DSN again",
        403: "the DSN's key was not accepted; copy the DSN again",
        404: "there is no such project; check the project id at the end of SENTRY_DSN",
        413: "the event is too large for the server",
    }.get(status, "the server could not take it")
    return f"the server answered HTTP {status} ({hint})" + (f": {detail}" if detail else "")


def _network_reason(exc: BaseException) -> str:
    cause = getattr(exc, "reason", None) or exc
    return f"the request failed: {type(cause).__name__}: {cause}"


def _observing_transport(log: DeliveryLog) -> type[HttpTransport]:
    """sentry-sdk's own HTTP transport, reporting each envelope's HTTP answer to `log`.

    Subclassing keeps the real wire format, compression, auth header and rate-limit handling.
    Only `_send_request` and `_request` are overridden: both exist unchanged from sentry-sdk
    2.20 on, unlike the response hooks newer versions split out.
    """
    from sentry_sdk.transport import HttpTransport

    # the transport's worker thread sends one envelope at a time
    answer = threading.local()

    class ObservingTransport(HttpTransport):
        def _request(self, method: str, endpoint_type: Any, body: Any, headers: Any) -> Any:
            response = super()._request(method, endpoint_type, body, headers)
            answer.value = (int(response.status), _response_reason(response))
            return response

        def _send_request(
            self,
            body: bytes,
            headers: dict[str, str],
            endpoint_type: Any,
            envelope: Envelope | None = None,
        ) -> None:
            answer.value = None
            try:
                super()._send_request(body, headers, endpoint_type, envelope)
            except Exception as exc:
                # The base class has recorded the loss; `check` reports the reason itself
                # instead of letting the SDK log it as an internal error.
                log.record(envelope, None, _network_reason(exc))
                return
            if answer.value is not None:
                log.record(envelope, *answer.value)

    return ObservingTransport


def _base_url(dsn: str) -> str:
    """The server's root URL from a DSN: scheme, host, port and path prefix, without the key."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    prefix = parts.path.rstrip("/").rsplit("/", 1)[0]
    return f"{parts.scheme}://{host}{prefix}"


def _get_json(url: str) -> Any:
    # No proxies: the inbox is local or on the LAN, and this probe only decides what to print.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=_PROBE_TIMEOUT) as response:
        return json.loads(response.read())


def _inbox_link(dsn: str, event_id: str) -> str | None:
    """The inbox page showing the event, when the DSN points at a fastapi-sentry inbox.

    An inbox with a token cannot be read without it, so it gets its home page and a reminder.
    """
    parts = urlsplit(dsn)
    if parts.scheme != "http":  # the inbox serves plain HTTP only
        return None
    base = _base_url(dsn)
    project_id = parts.path.rstrip("/").rsplit("/", 1)[-1]
    try:
        projects = _get_json(f"{base}/api/0/projects/")
        if not isinstance(projects, list) or not any(
            isinstance(p, dict)
            and p.get("id") == project_id
            and p.get("publicKey") == parts.username
            for p in projects
        ):
            return None
        events = _get_json(f"{base}/api/0/projects/{project_id}/events/?limit=50")
    except urllib.error.HTTPError as exc:
        if exc.code == 401 and b"inbox" in exc.read(2000):
            return f"{base}/?project={project_id} (with the token the inbox printed)"
        return None
    except (OSError, ValueError):  # not an inbox
        return None
    for event in events if isinstance(events, list) else []:
        if isinstance(event, dict) and event.get("eventID") == event_id and event.get("groupID"):
            return f"{base}/issues/{event['groupID']}/?project={project_id}"
    return f"{base}/?project={project_id}"


def _close_client(timeout: float) -> None:
    import sentry_sdk

    # Closing here (not at exit) keeps the SDK's "attempting to send pending events" notice
    # out of the output when the server never answered.
    sentry_sdk.get_client().close(timeout=timeout)


def run(args: argparse.Namespace) -> int:
    from fastapi_sentry._settings import dsn_summary
    from fastapi_sentry._setup import init_sdk, off_reason

    try:
        settings = load_settings()
    except ConfigError as exc:
        return error(str(exc), EXIT_USAGE)
    if not settings.is_active:
        enable = "" if settings.enabled else " and SENTRY_ENABLED=true"
        return error(
            f"Sentry is off ({off_reason(settings)}), so there is nothing to check; set "
            f"SENTRY_DSN to the project's DSN{enable} (in the environment or .env) and run "
            "the check again.",
            EXIT_USAGE,
        )

    import sentry_sdk

    dsn = settings.dsn_value or ""
    summary = dsn_summary(dsn)
    where = f"{summary['host']} (project {summary['project_id']})"
    log = DeliveryLog(urlsplit(dsn).username or "")
    # Same options as install(); the test event alone is exempt from error sampling.
    init_sdk(settings, transport=_observing_transport(log), sample_rate=1.0)
    log.start()
    event_id = sentry_sdk.capture_message(CHECK_MESSAGE, level="info", tags={CHECK_TAG: "true"})
    if event_id is None:
        _close_client(0)
        return error(
            "sentry-sdk dropped the test event before sending it (a before_send hook or an "
            "event processor returned None); nothing was sent to " + where + ".",
        )
    delivery = log.wait(event_id, args.timeout)
    _close_client(0 if delivery is None else min(args.timeout, 2.0))
    if delivery is None:
        return error(
            f"the test event {event_id} was not delivered to {where} within {args.timeout:g} s "
            "(no answer); check the network path to the host, or raise --timeout.",
        )
    if not delivery.accepted:
        return error(f"the test event {event_id} was not accepted by {where}: {delivery.reason}.")

    say(
        f"Sentry settings are valid: environment={settings.environment!r} "
        f"release={settings.effective_release or '(not set)'!r} traces_sample_rate="
        f"{settings.effective_traces_sample_rate:g}.",
        f"Test event delivered to {where}: {delivery.reason} in {delivery.seconds:.2f} s.",
        f"Event ID: {event_id}",
    )
    link = _inbox_link(dsn, event_id)
    if link is not None:
        say(f"See it in the fastapi-sentry inbox: {link}")
    else:
        say(
            f"See it in Sentry: open project {summary['project_id']} and search the issues for "
            f"{event_id} (it is an info-level message tagged {CHECK_TAG}:true)."
        )
    if settings.error_sample_rate < 1.0:
        say(
            f"Note: SENTRY_ERROR_SAMPLE_RATE is {settings.error_sample_rate:g}, so the service "
            "sends only that share of its errors; the check's own event was not sampled."
        )
    return EXIT_OK
