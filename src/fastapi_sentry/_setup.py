"""install(): settings → `sentry_sdk.init` options → app wiring. Safe to call more than once.

When Sentry is off (no DSN, or `SENTRY_ENABLED=false`) nothing here imports sentry_sdk and the
app's request path is left untouched; one INFO line says why.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from fastapi_sentry import _logs
from fastapi_sentry._pipeline import add_global_processor
from fastapi_sentry._settings import SentrySettings, dsn_summary, settings_from
from fastapi_sentry._state import STATE, active_sdk
from fastapi_sentry._users import DEFAULT_USER_RESOLVERS, UserResolver

if TYPE_CHECKING:
    from starlette.applications import Starlette

logger = logging.getLogger(__name__)

_INSTALLED_FLAG = "fastapi_sentry_installed"
SETTINGS_STATE_KEY = "fastapi_sentry_settings"

# (module that must be importable, integration path, keyword arguments)
_OPTIONAL_INTEGRATIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("sqlalchemy", "sentry_sdk.integrations.sqlalchemy.SqlalchemyIntegration", {}),
    ("redis", "sentry_sdk.integrations.redis.RedisIntegration", {}),
    ("httpx", "sentry_sdk.integrations.httpx.HttpxIntegration", {}),
    (
        "celery",
        "sentry_sdk.integrations.celery.CeleryIntegration",
        # one error on final failure, not one per retry; beat tasks become cron check-ins
        {"monitor_beat_tasks": True, "propagate_traces": True, "exclude_beat_tasks": None},
    ),
    # the SDK's GraphQL integrations, completed (see _graphql); a FastAPI app executes async
    (
        "strawberry",
        "fastapi_sentry._graphql.strawberry.StrawberryIntegration",
        {"async_execution": True},
    ),
    ("ariadne", "fastapi_sentry._graphql.ariadne.AriadneIntegration", {}),
)


def off_reason(settings: SentrySettings) -> str:
    if not settings.enabled:
        return "SENTRY_ENABLED is false"
    return "SENTRY_DSN is not set"


def _optional_integrations() -> list[Any]:
    from sentry_sdk.integrations import DidNotEnable

    found = []
    for module, path, kwargs in _OPTIONAL_INTEGRATIONS:
        if importlib.util.find_spec(module) is None:
            continue
        module_path, _, name = path.rpartition(".")
        try:
            integration_class = getattr(importlib.import_module(module_path), name)
            found.append(integration_class(**kwargs))
        except (DidNotEnable, ImportError) as exc:
            logger.debug("Sentry integration %s skipped: %s", name, exc)
    return found


def lean_path_problem() -> str | None:
    """None when the lean request path can run on the installed sentry-sdk, else why not."""
    from fastapi_sentry._fastpath import _sdk_seam

    return _sdk_seam.PROBLEM


def build_init_options(settings: SentrySettings, *, lean: bool = True) -> dict[str, Any]:
    """The keyword arguments for `sentry_sdk.init`; the one place they are decided.

    `lean`: our request path replaces sentry-sdk's Starlette/FastAPI integrations (see
    `_fastpath`); without it those integrations run, configured the same way.
    """
    from sentry_sdk.integrations.fastapi import FastApiIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.integrations.starlette import StarletteIntegration

    from fastapi_sentry._filters import make_traces_sampler
    from fastapi_sentry._pipeline import EventPipeline

    breadcrumb_level = logging.getLevelName(settings.breadcrumb_level)
    integrations: list[Any] = [
        LoggingIntegration(
            level=breadcrumb_level, event_level=logging.ERROR, sentry_logs_level=breadcrumb_level
        ),
        *_optional_integrations(),
    ]
    options: dict[str, Any] = {
        "dsn": settings.dsn_value,
        "environment": settings.environment,
        "release": settings.effective_release,
        "server_name": settings.server_name,
        "debug": settings.debug,
        "sample_rate": settings.error_sample_rate,
        **_privacy_options(settings.send_default_pii),
        "max_breadcrumbs": settings.max_breadcrumbs,
        "attach_stacktrace": settings.attach_stacktrace,
        "enable_logs": settings.enable_logs,
        "shutdown_timeout": settings.shutdown_timeout,
        "transport_queue_size": settings.transport_queue_size,
        "integrations": integrations,
        "_experiments": compression_options(),
        **in_app_options(settings),
    }
    if lean:
        from fastapi_sentry._fastpath.delivery import DeliveryConfig, delivery_transport
        from fastapi_sentry._fastpath.enrich import add_request_attributes
        from fastapi_sentry._fastpath.sessions import note_sent_event

        pipeline = EventPipeline(
            settings, on_error_kept=note_sent_event, on_log=add_request_attributes
        )
        # our request path (_fastpath) does their work, for less; running both would double it
        options["disabled_integrations"] = [StarletteIntegration, FastApiIntegration]
        options["transport"] = delivery_transport(
            DeliveryConfig(
                spool_dir=settings.spool_dir,
                max_events=settings.spool_max_events,
                max_bytes=int(settings.spool_max_mb * 1024 * 1024),
            )
        )
    else:
        pipeline = EventPipeline(settings)
        failed = set(settings.failed_request_status_codes)
        integrations += [
            StarletteIntegration(transaction_style="url", failed_request_status_codes=failed),
            FastApiIntegration(transaction_style="url", failed_request_status_codes=failed),
        ]
    options.update(pipeline.sdk_options())
    if settings.trace_lifecycle == "stream":  # static: the SDK's default, options left as they were
        options["trace_lifecycle"] = "stream"
        options["before_send_span"] = pipeline.before_send_span
    if settings.enable_tracing:
        options["traces_sampler"] = make_traces_sampler(settings)
        # continuous profiling tied to traces: the SDK deprecates transaction-based profiles
        profile_rate = settings.effective_profiles_sample_rate
        if profile_rate > 0:
            options["profile_session_sample_rate"] = profile_rate
            options["profile_lifecycle"] = "trace"
    return options


#: Frames of these modules are never in-app, wherever they are installed (an editable install or
#: a checkout under the project root included): the framework and libraries every request or task
#: passes through. The app's own frames are in-app by sentry-sdk's rule (under the working
#: directory, outside site-packages) or by SENTRY_IN_APP_INCLUDE.
NEVER_IN_APP: tuple[str, ...] = (
    "fastapi_sentry",
    "sentry_sdk",
    "starlette",
    "fastapi",
    "uvicorn",
    "gunicorn",
    "anyio",
    "h11",
    "httptools",
    "uvloop",
    "websockets",
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "celery",
    "kombu",
    "billiard",
    "strawberry",
    "ariadne",
    "graphql",
)
#: ...except the demo shop, which ships inside this package: when it runs, it is the app.
DEMO_IN_APP = "fastapi_sentry.examples"


def in_app_options(settings: SentrySettings) -> dict[str, list[str]]:
    """sentry-sdk's `in_app_include` wins over `in_app_exclude`: the app's own list goes first."""
    return {
        "in_app_include": [DEMO_IN_APP, *settings.in_app_include],
        "in_app_exclude": [*NEVER_IN_APP, *settings.in_app_exclude],
    }


#: Compression of envelopes: cheap brotli where the SDK can use it, else cheap gzip.
COMPRESSION_LEVEL = 1


def compression_options() -> dict[str, Any]:
    """The `_experiments` keys that set the transport's compression (sentry-sdk has no others).

    Quality 1 instead of the SDK's 4: see benchmarks/bench_inprocess.py for what it saves. The
    one definition lives here, not in `_fastpath.transport`: the fallback sends through the SDK's
    own transport with these options, and it runs where `_fastpath` cannot be imported.
    """
    from sentry_sdk import transport

    algo = "br" if getattr(transport, "brotli", None) is not None else "gzip"
    return {"transport_compression_algo": algo, "transport_compression_level": COMPRESSION_LEVEL}


# Header and cookie names that identify a person (the SDK's own list when PII is off).
_PII_TERMS = ["forwarded", "-ip", "remote-", "via", "-user"]


def _privacy_options(send_default_pii: bool) -> dict[str, Any]:
    """`data_collection` where the SDK has it (it deprecates `send_default_pii`), else the flag.

    Same choices the SDK makes for `send_default_pii`, except that cookies are not collected at
    all with PII off. Our scrubber runs on top either way; the SDK's EventScrubber is not
    needed (it is a subset of ours).
    """
    from sentry_sdk.consts import DEFAULT_OPTIONS

    if "data_collection" not in DEFAULT_OPTIONS:  # pragma: no cover - sentry-sdk before 2.7x
        return {"send_default_pii": send_default_pii}
    terms = [] if send_default_pii else _PII_TERMS
    return {
        "data_collection": {
            "user_info": send_default_pii,
            "cookies": {"mode": "denylist", "terms": terms}
            if send_default_pii
            else {"mode": "off"},
            "http_headers": {"request": {"mode": "denylist", "terms": terms}},
            "url_query_params": {"mode": "denylist", "terms": terms},
            "graphql": {"document": send_default_pii, "variables": send_default_pii},
            "gen_ai": {"inputs": send_default_pii, "outputs": send_default_pii},
            "database_query_data": send_default_pii,
            "queues": send_default_pii,
        }
    }


def init_sdk(settings: SentrySettings, **extra_options: Any) -> bool:
    """Initialise sentry-sdk for these settings, once; True when Sentry is active.

    A second call with the same settings does nothing; with different settings it
    re-initialises (the new client replaces the old one, which is flushed and closed).
    """
    if not settings.is_active:
        return False
    import sentry_sdk

    problem = lean_path_problem()
    key = {"settings": settings.model_dump(mode="json"), "lean": problem is None, **extra_options}
    if STATE.init_key == key and sentry_sdk.get_client().is_active():
        return True
    if problem is not None:
        logger.warning(FALLBACK_WARNING, problem)
    options = build_init_options(settings, lean=problem is None)
    extra_experiments = extra_options.pop("_experiments", None) or {}
    options.update(extra_options)
    options["_experiments"] = {**options["_experiments"], **extra_experiments}
    # said before init: a line about the process, not a breadcrumb on every event (sentry-sdk's
    # `ignore_logger` would keep it out too, but costs an fnmatch per breadcrumb afterwards)
    summary = dsn_summary(settings.dsn_value)
    logger.info(
        "Sentry is on: environment=%s release=%s host=%s project=%s traces=%s",
        settings.environment,
        options["release"],
        summary["host"],
        summary["project_id"],
        settings.effective_traces_sample_rate if settings.enable_tracing else "off",
    )
    sentry_sdk.init(**options)
    _quiet_sdk_logger(settings.debug)
    STATE.init_key = key
    if problem is None:
        _lean_process_setup(options)
    return True


FALLBACK_WARNING = (
    "fastapi-sentry's lean request path is off (%s): sentry-sdk's own Starlette and FastAPI "
    "integrations handle requests instead. Everything works; requests cost what they cost with "
    "bare sentry-sdk. See 'Supported sentry-sdk versions' in the README."
)


def _quiet_sdk_logger(debug: bool) -> None:
    """sentry-sdk keeps its logger at DEBUG and drops every record in a filter unless `debug` is
    on, so each of its debug calls built a `LogRecord` (and looked up its caller) for nothing,
    three per sampled request. With debug off nothing of it is shown anyway; warnings still
    reach the filter, so a later `sentry_sdk.init(debug=True)` still shows them."""
    from sentry_sdk.utils import logger as sdk_logger

    sdk_logger.setLevel(logging.DEBUG if debug else logging.WARNING)


def _lean_process_setup(options: dict[str, Any]) -> None:
    """What the SDK's (disabled) Starlette integration set up once per process, done our way."""
    import sentry_sdk

    from fastapi_sentry._fastpath import sampling, serialize, sessions
    from fastapi_sentry._fastpath._sdk_seam import patch_templates

    # `disabled_integrations` is ignored for an integration an earlier client in this process
    # already set up (sentry-sdk keeps them process-wide); removed from the client, its
    # patched code finds no integration and steps aside.
    client = sentry_sdk.get_client()
    for name in ("starlette", "fastapi"):
        client.integrations.pop(name, None)
    add_global_processor("enrich_event")
    serialize.install()
    sampling.install_event_ids()
    sessions.configure(bool(options.get("auto_session_tracking", True)))
    patch_templates()  # `sentry_trace_meta` in Jinja2 templates, as the integration provides


def flush(timeout: float) -> None:
    """Send what is queued, waiting at most `timeout` seconds; a no-op when Sentry is off."""
    sentry_sdk = active_sdk()
    if sentry_sdk is not None:
        sessions = sys.modules.get("fastapi_sentry._fastpath.sessions")
        if sessions is not None:
            sessions.flush()
        sentry_sdk.flush(timeout=timeout)


def install(
    app: Starlette,
    settings: SentrySettings | None = None,
    *,
    user_resolvers: Sequence[UserResolver] | None = None,
    **overrides: Any,
) -> SentrySettings:
    """Give a FastAPI/Starlette app Sentry error tracking and performance monitoring.

    Settings come from the environment (`SENTRY_*`, `.env`) unless given; keyword overrides
    take any `SentrySettings` field. `user_resolvers` decide who the user of a request is
    (default: `request.state.user`, Starlette's `scope["user"]`, then a bearer JWT's claims). Raises
    `ConfigError` with a one-line message when a setting is invalid. Returns the settings in
    effect. Calling it again for the same app does nothing.
    """
    settings = settings_from(settings, overrides)
    if getattr(app.state, _INSTALLED_FLAG, False):
        return getattr(app.state, SETTINGS_STATE_KEY)  # type: ignore[no-any-return]
    setattr(app.state, _INSTALLED_FLAG, True)
    setattr(app.state, SETTINGS_STATE_KEY, settings)
    _logs.show_own_lines()

    our_routes = _mount_endpoints(app, settings) if settings.mount_endpoints else None
    if not settings.is_active:
        logger.info("Sentry error tracking is off: %s", off_reason(settings))
        _wire(app, our_routes, None)
        return settings

    init_sdk(settings)
    _lower_app_loggers(settings, sys._getframe(1).f_globals.get("__name__"))
    resolvers = DEFAULT_USER_RESOLVERS if user_resolvers is None else tuple(user_resolvers)
    _wire(app, our_routes, _request_path(settings, resolvers))
    _flush_on_shutdown(app, settings.shutdown_timeout)
    return settings


def _lower_app_loggers(settings: SentrySettings, caller: str | None) -> None:
    """The app's INFO records become breadcrumbs under default logging (see `_logs`)."""
    names = settings.breadcrumb_loggers or [
        name for name in [_logs.app_package(caller)] if name is not None
    ]
    lowered = _logs.lower_levels(names, logging.getLevelName(settings.breadcrumb_level))
    if lowered:
        logger.debug("Log records of %s reach Sentry from %s", lowered, settings.breadcrumb_level)


def _mount_endpoints(app: Starlette, settings: SentrySettings) -> Any:
    """Our router, mounted; returned so `_wire` can move it behind the app's own routes."""
    from fastapi import FastAPI

    from fastapi_sentry._endpoints import build_router

    if not isinstance(app, FastAPI):
        logger.warning("The health/status endpoints need a FastAPI app; %r is not one", app)
        return None
    app.include_router(build_router(settings), prefix=settings.endpoints_prefix)
    return app.router.routes[-1]


RequestPath = Callable[["Starlette", Any], Any]


def _wire(app: Starlette, our_route: Any, request_path: RequestPath | None) -> None:
    """One wrapper around `build_middleware_stack`, run when the app starts serving.

    It moves our routes behind the app's own (routes are matched in order and `install()` runs
    before the app declares its routes: left first, ours would be tried on every request, and an
    app's own `/health` would be shadowed), then puts the request path outermost inside the app,
    outside `ServerErrorMiddleware`, so the 500 page carries the request id too
    (`app.add_middleware` would put it inside).
    """
    if our_route is None and request_path is None:
        return
    build: Callable[[], Any] = app.build_middleware_stack

    def build_with_sentry() -> Any:
        routes = app.router.routes
        if our_route is not None and our_route in routes:
            routes.remove(our_route)
            routes.append(our_route)
        if request_path is None:
            return build()
        return request_path(app, build)

    app.build_middleware_stack = build_with_sentry  # type: ignore[method-assign]
    app.middleware_stack = None


def _request_path(settings: SentrySettings, resolvers: Sequence[UserResolver]) -> RequestPath:
    """The request path for this sentry-sdk: lean when the seam allows it, else the fallback."""
    if lean_path_problem() is not None:
        from fastapi_sentry._fallback import FallbackEnricher, RequestIdMiddleware

        fallback = FallbackEnricher(
            user_resolvers=resolvers, send_default_pii=settings.send_default_pii
        )

        def fallback_path(app: Starlette, build: Callable[[], Any]) -> Any:
            stack = _build_reporting_handlers(app, build, settings, sdk_applies_status_rule=True)
            return RequestIdMiddleware(
                stack,
                enricher=fallback,
                header=settings.request_id_header,
                stream=settings.trace_lifecycle == "stream",
            )

        return fallback_path

    from fastapi_sentry._fastpath.enrich import RequestEnricher
    from fastapi_sentry._fastpath.middleware import RequestContextMiddleware
    from fastapi_sentry._fastpath.sampling import HeadSampler

    enricher = RequestEnricher(user_resolvers=resolvers, send_default_pii=settings.send_default_pii)

    def lean_path(app: Starlette, build: Callable[[], Any]) -> Any:
        stack = _build_reporting_handlers(app, build, settings, sdk_applies_status_rule=False)
        return RequestContextMiddleware(
            stack,
            enricher=enricher,
            sampler=HeadSampler(),
            header=settings.request_id_header,
            max_body_bytes=_max_body_bytes(),
            stream=settings.trace_lifecycle == "stream",
        )

    return lean_path


def _build_reporting_handlers(
    app: Starlette,
    build: Callable[[], Any],
    settings: SentrySettings,
    *,
    sdk_applies_status_rule: bool,
) -> Any:
    """The app's stack built with handlers that report the failed statuses they answer (see
    `_exception_handlers`); the app's own dict is left as it was."""
    from fastapi_sentry._exception_handlers import reporting_handlers

    handlers = app.exception_handlers
    app.exception_handlers = reporting_handlers(
        handlers,
        frozenset(settings.failed_request_status_codes),
        sdk_applies_status_rule=sdk_applies_status_rule,
        response_ids=settings.error_response_ids,
    )
    try:
        return build()
    finally:
        app.exception_handlers = handlers


def _max_body_bytes() -> int:
    """The most body the SDK would attach (`max_request_body_size`), kept while the app reads;
    0 when no body can reach an event, so the request path does not watch bodies at all."""
    import sentry_sdk

    from fastapi_sentry._fastpath.enrich import bodies_collected

    options = sentry_sdk.get_client().options
    if not bodies_collected(options):
        return 0
    size = options.get("max_request_body_size", "medium")
    return {"never": 0, "small": 1_000, "medium": 10_000, "always": 1 << 62}.get(size, 10_000)


def _flush_on_shutdown(app: Starlette, timeout: float) -> None:
    # Only atexit flushes by default, and many shutdown paths skip it.
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan_with_flush(lifespan_app: Any) -> AsyncIterator[Any]:
        try:
            async with original(lifespan_app) as state:
                yield state
        finally:
            flush(timeout)

    app.router.lifespan_context = lifespan_with_flush
