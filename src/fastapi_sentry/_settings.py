"""Settings: environment (and `.env`) → validated, typed values; the one place defaults live.

Every variable keeps the `SENTRY_` prefix. A few fall back to the names the seeds' services already
set (`ENVIRONMENT`, `APP_VERSION`, `VERSION`, `HOSTNAME`, `DEBUG`), so an existing deployment needs
no new variables. Loading never imports sentry_sdk: a disabled service must not pay for it.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fastapi_sentry._errors import ConfigError

#: Sample rates used when a rate is left unset, by environment name.
DEFAULT_SAMPLE_RATES: dict[str, float] = {
    "development": 1.0,
    "dev": 1.0,
    "local": 1.0,
    "test": 1.0,
    "staging": 0.5,
    "stage": 0.5,
    "production": 0.1,
}
#: Rate for an environment not named above: the cautious production figure.
FALLBACK_SAMPLE_RATE = 0.1

#: Paths whose requests are never traced (prefix match on whole path segments).
DEFAULT_UNTRACED_PATHS: tuple[str, ...] = (
    "/health",
    "/healthz",
    "/livez",
    "/readyz",
    "/ready",
    "/ping",
    "/metrics",
    "/static",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/favicon.ico",
    "/sentry/status",
)

#: HTTP statuses whose HTTPException is reported: server errors only.
DEFAULT_FAILED_STATUS_CODES: frozenset[int] = frozenset(range(500, 600))

DSN_HELP = (
    "It looks like https://<public-key>@<host>/<project-id>; copy it from the project's "
    "Client Keys page, or leave SENTRY_DSN empty to disable Sentry."
)

_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def _split_list(value: Any) -> Any:
    """Accept `a,b,c` (and JSON lists) from the environment for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            try:
                return json.loads(text)
            except ValueError:
                raise ValueError("is not a valid JSON list; use a comma-separated list") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]
#: Sentry's limit for a tag value (and key), in characters.
TAG_VALUE_MAX = 200
_TAG_KEY = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")
IntCommaList = Annotated[list[int], NoDecode]
_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class SentrySettings(BaseSettings):
    """What `install()` and `install_celery()` need, read from `SENTRY_*` variables and `.env`.

    Construct it directly to override values in code (`SentrySettings(dsn=...)`); use
    `load_settings()` to get one-line `ConfigError`s instead of pydantic's report.
    """

    model_config = SettingsConfigDict(
        env_prefix="SENTRY_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
        validate_default=True,
        hide_input_in_errors=True,
        # `DEBUG=` in a compose file means "not set", not "invalid"
        env_ignore_empty=True,
    )

    dsn: SecretStr | None = Field(
        default=None,
        description="Where events go. Empty or unset: Sentry is disabled (the default).",
    )
    enabled: bool = Field(
        default=True, description="Set to false to turn Sentry off with a DSN set."
    )
    environment: str = Field(
        default="production",
        validation_alias=AliasChoices("SENTRY_ENVIRONMENT", "ENVIRONMENT", "environment"),
        description="Falls back to ENVIRONMENT, then `production`.",
    )
    release: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SENTRY_RELEASE", "APP_VERSION", "VERSION", "release"),
        description="Falls back to APP_VERSION, VERSION, then `git rev-parse --short HEAD`.",
    )
    server_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SENTRY_SERVER_NAME", "HOSTNAME", "server_name"),
        description="Falls back to HOSTNAME.",
    )
    debug: bool = Field(
        default=False,
        validation_alias=AliasChoices("SENTRY_DEBUG", "DEBUG", "debug"),
        description="SDK debug logging; also opens GET /sentry-debug. Falls back to DEBUG.",
    )
    error_sample_rate: float = Field(
        default=1.0, ge=0.0, le=1.0, description="Share of error events sent (0..1)."
    )
    traces_sample_rate: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Share of requests traced; unset: development 1.0, staging 0.5, else 0.1.",
    )
    profiles_sample_rate: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Share of traced requests profiled; unset: same rule as traces.",
    )
    enable_tracing: bool = Field(
        default=True, description="Set to false to send errors only (no transactions, no profiles)."
    )
    trace_lifecycle: Literal["static", "stream"] = Field(
        default="static",
        description=(
            "`static`: a request's spans go as one transaction; `stream`: as span v2 items, "
            "sent as they finish (sentry-sdk's `trace_lifecycle`)."
        ),
    )
    send_default_pii: bool = Field(
        default=False, description="Send user emails, IPs, usernames, cookies. Off by default."
    )
    enable_logs: bool = Field(default=False, description="Send log records as Sentry logs.")
    # --- logging and in-app (issue 12, points 4 and 5) ---
    breadcrumb_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="Lowest level of the app's log records that become breadcrumbs (and Sentry "
        "logs), with or without a logging configuration; what the app prints is unchanged.",
    )
    breadcrumb_loggers: CommaList = Field(
        default_factory=list,
        description="Loggers that reach Sentry down to SENTRY_BREADCRUMB_LEVEL; unset: the "
        "package of the module calling install(); `root`: every logger.",
    )
    in_app_include: CommaList = Field(
        default_factory=list,
        description="Module prefixes whose frames are the app's (in-app), e.g. `myservice`.",
    )
    in_app_exclude: CommaList = Field(
        default_factory=list,
        description="More module prefixes whose frames are never in-app (beside the framework's).",
    )

    @field_validator("breadcrumb_level", mode="before")
    @classmethod
    def _level_name(cls, value: Any) -> Any:
        name = value.strip().upper() if isinstance(value, str) else value
        if name not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"is {value!r}; use DEBUG, INFO, WARNING or ERROR")
        return name

    @field_validator("breadcrumb_loggers", "in_app_include", "in_app_exclude", mode="before")
    @classmethod
    def _names_from_env(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("breadcrumb_loggers", "in_app_include", "in_app_exclude")
    @classmethod
    def _dotted_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _DOTTED_NAME.fullmatch(name):
                raise ValueError(
                    f"holds {name!r}, which is not a module or logger name; list dotted names "
                    "separated by commas, e.g. myservice,myservice.jobs"
                )
        return value

    max_breadcrumbs: int = Field(
        default=100, ge=0, le=1000, description="Breadcrumbs kept per event."
    )
    attach_stacktrace: bool = Field(
        default=True, description="Attach a stack trace to messages, not only to exceptions."
    )
    shutdown_timeout: float = Field(
        default=2.0, ge=0.0, le=60.0, description="Seconds to flush pending events on shutdown."
    )
    transport_queue_size: int = Field(
        default=100, ge=1, le=100_000, description="Events queued for sending before new ones drop."
    )
    failed_request_status_codes: IntCommaList = Field(
        default_factory=lambda: sorted(DEFAULT_FAILED_STATUS_CODES),
        description=(
            "Statuses whose errors are reported, as codes and ranges (`401,500-599`); "
            "list 422 to report validation errors."
        ),
    )
    error_response_ids: bool = Field(
        default=False,
        description=(
            "5xx answers carry the Sentry `event_id` and the `request_id` (JSON body, "
            "or `X-Sentry-Event-ID` header when the app answered JSON itself)."
        ),
    )
    ignored_exceptions: CommaList = Field(
        default_factory=list,
        description="Dotted names of exception types never reported, e.g. `app.errors.Expected`.",
    )
    untraced_paths: CommaList = Field(
        default_factory=lambda: list(DEFAULT_UNTRACED_PATHS),
        description="Path prefixes never traced (health, metrics, static, docs).",
    )
    mount_endpoints: bool = Field(
        default=True, description="Mount /health, /sentry/status and /sentry-debug."
    )
    endpoints_prefix: str = Field(default="", description="Prefix for the mounted endpoints.")
    request_id_header: str = Field(
        default="X-Request-ID", description="Header read and returned as the request id."
    )
    scrub_extra_keys: CommaList = Field(
        default_factory=list, description="More keys whose values are always masked."
    )
    scrub_extra_patterns: CommaList = Field(
        default_factory=list, description="More regular expressions whose matches are masked."
    )
    scrub_safe_keys: CommaList = Field(
        default_factory=list,
        description="Keys never masked by key name (values are still checked).",
    )
    scrub_replacement: str = Field(
        default="[Filtered]", description="Text put in place of secrets."
    )
    tags: CommaList = Field(
        default_factory=list,
        description="Tags on every event and transaction, e.g. `team=payments,region=eu`.",
    )
    app_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SENTRY_APP_NAME", "APP_NAME", "app_name"),
        description="`app_name` of the `app` context (its `app_version` is the release).",
    )
    user_tags: CommaList = Field(
        default_factory=list,
        description="User fields also set as tags, e.g. `organization_id,role`.",
    )
    # delivery (issue 12, point 1) and /metrics (point 2)
    spool_dir: str | None = Field(
        default=None,
        description="Directory keeping undelivered errors and check-ins across restarts.",
    )
    spool_max_events: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="Undelivered errors and check-ins kept for a later send (0: none kept).",
    )
    spool_max_mb: float = Field(
        default=20.0, ge=0.0, le=10_000.0, description="Megabytes those may take, at most."
    )
    metrics_endpoint: bool = Field(
        default=False, description="Mount GET /metrics (Prometheus; needs the `metrics` extra)."
    )

    # --- validators -------------------------------------------------------------------------

    @field_validator("dsn", mode="before")
    @classmethod
    def _blank_dsn_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("dsn")
    @classmethod
    def _check_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = dsn_problem(value.get_secret_value())
            if problem:
                raise ValueError(f"is not a valid DSN: {problem}. {DSN_HELP}")
        return value

    @field_validator("environment", mode="before")
    @classmethod
    def _blank_environment(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return "production"
        return value

    @field_validator("release", "server_name", "spool_dir", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator(
        "ignored_exceptions",
        "untraced_paths",
        "scrub_extra_keys",
        "scrub_extra_patterns",
        "scrub_safe_keys",
        mode="before",
    )
    @classmethod
    def _lists_from_env(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("tags", "user_tags", mode="before")
    @classmethod
    def _more_lists_from_env(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for entry in value:
            key, sep, tag_value = entry.partition("=")
            if not sep or not _TAG_KEY.fullmatch(key.strip()) or not tag_value.strip():
                raise ValueError(
                    f"holds {entry!r}, which is not a tag; write name=value pairs separated by "
                    "commas (team=payments,region=eu), names of letters, digits and _.:-"
                )
            if len(tag_value.strip()) > TAG_VALUE_MAX:
                raise ValueError(
                    f"holds {entry!r}, whose value is over {TAG_VALUE_MAX} characters "
                    "(Sentry's limit for a tag value); shorten it"
                )
        return [entry.partition("=")[0].strip() + "=" + entry.partition("=")[2].strip()
                for entry in value]  # fmt: skip

    @field_validator("user_tags")
    @classmethod
    def _user_tags(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _TAG_KEY.fullmatch(name):
                raise ValueError(
                    f"holds {name!r}, which is not a user field name; list names such as "
                    "organization_id,role"
                )
        return value

    @field_validator("app_name", mode="before")
    @classmethod
    def _blank_app_name(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("failed_request_status_codes", mode="before")
    @classmethod
    def _status_codes(cls, value: Any) -> Any:
        return parse_status_codes(value)

    @field_validator("untraced_paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"holds {path!r}; each path must start with '/'")
        return value

    @field_validator("scrub_extra_patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"holds {pattern!r}, not a valid regular expression ({exc})"
                ) from None
            if compiled.fullmatch("") is not None:  # the scrubber would refuse it later
                raise ValueError(
                    f"holds {pattern!r}, which matches the empty string and would mask every "
                    "position of every string; make it match at least one character"
                )
        return value

    @field_validator("request_id_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9-]+", value):
            raise ValueError(f"is {value!r}; a header name is letters, digits and '-'")
        return value

    @field_validator("endpoints_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not value.startswith("/"):
            raise ValueError(f"is {value!r}; a prefix must start with '/' (or be empty)")
        return value

    # --- derived values ---------------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        """True when events would be sent: a DSN is set and Sentry is not switched off."""
        return self.enabled and self.dsn is not None

    @property
    def dsn_value(self) -> str | None:
        return self.dsn.get_secret_value() if self.dsn is not None else None

    @property
    def effective_release(self) -> str | None:
        return self.release or git_revision()

    @property
    def effective_traces_sample_rate(self) -> float:
        if not self.enable_tracing:
            return 0.0
        if self.traces_sample_rate is not None:
            return self.traces_sample_rate
        return environment_sample_rate(self.environment)

    @property
    def effective_profiles_sample_rate(self) -> float:
        if not self.enable_tracing:
            return 0.0
        if self.profiles_sample_rate is not None:
            return self.profiles_sample_rate
        return environment_sample_rate(self.environment)

    @property
    def tag_map(self) -> dict[str, str]:
        """`tags` as Sentry's tag dict."""
        return dict(entry.split("=", 1) for entry in self.tags)

    @property
    def is_development(self) -> bool:
        return DEFAULT_SAMPLE_RATES.get(self.environment.lower()) == 1.0

    @property
    def debug_endpoint_enabled(self) -> bool:
        return self.debug or self.is_development


_STATUS_HELP = "write codes and ranges separated by commas, such as 401,500-599"


def parse_status_codes(value: Any) -> Any:
    """`401,500-599` (spaces allowed around codes and dashes), a JSON list, or a list of codes
    and range strings → the sorted codes; a ValueError saying which entry is wrong and why."""
    entries = _split_list(value)
    if isinstance(entries, (set, frozenset, range, tuple)):
        entries = list(entries)
    if not isinstance(entries, list):
        return entries  # pydantic says what type it wanted
    codes: set[int] = set()
    for entry in entries:
        if isinstance(entry, bool):
            raise ValueError(f"holds {entry!r}, which is not a status code; {_STATUS_HELP}")
        if isinstance(entry, int):
            low = high = entry
        else:
            text = str(entry).strip()
            start, dash, end = text.partition("-")
            if not _digits(start) or (dash and not _digits(end)):
                raise ValueError(
                    f"holds {text!r}, which is not a status code or a range; {_STATUS_HELP}"
                )
            low = int(start)
            high = int(end) if dash else low
            if low > high:
                raise ValueError(
                    f"holds {text!r}, a range that ends before it starts; write {high}-{low}"
                )
        for code in (low, high):
            if not 100 <= code <= 599:
                raise ValueError(f"holds {code!r}, which is not an HTTP status code (100-599)")
        codes.update(range(low, high + 1))
    return sorted(codes)


def _digits(text: str) -> bool:
    text = text.strip()
    return text.isascii() and text.isdigit()


def environment_sample_rate(environment: str) -> float:
    return DEFAULT_SAMPLE_RATES.get(environment.lower(), FALLBACK_SAMPLE_RATE)


def dsn_problem(dsn: str) -> str | None:
    """Say what is wrong with a DSN without repeating it (it carries a key)."""
    try:
        parts = urlsplit(dsn.strip())
        port = parts.port
    except ValueError:
        return "it cannot be read as a URL (check the port)"
    if parts.scheme not in ("http", "https"):
        return "it must start with https:// or http://"
    if not parts.hostname:
        return "it has no host"
    if not parts.username:
        return "it has no public key before '@'"
    if port == 0:
        return "its port is 0"
    project = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if not project.isdigit():
        return "it must end with a numeric project id"
    return None


def dsn_summary(dsn: str | None) -> dict[str, str | None]:
    """The parts of a DSN that are safe to show: host and project id, never the key."""
    if not dsn:
        return {"host": None, "project_id": None}
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return {"host": host, "project_id": parts.path.rstrip("/").rsplit("/", 1)[-1]}


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """Short commit of the working directory's checkout, or None outside one."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    revision = result.stdout.strip()
    return revision if result.returncode == 0 and revision else None


_MESSAGES: dict[str, str] = {
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a comma-separated list",
}

_SECRET_FIELDS = frozenset({"dsn"})


def _env_name(field: str) -> str:
    """The variable the value came from: `SENTRY_X`, or the fallback (`DEBUG`, ...) that is set."""
    info = SentrySettings.model_fields.get(field)
    alias = getattr(info, "validation_alias", None)
    if isinstance(alias, AliasChoices):
        names = [str(choice) for choice in alias.choices if str(choice).isupper()]
        present = {name.upper() for name in os.environ}
        for name in names:
            if name in present:
                return name
    return f"SENTRY_{field.upper()}"


def _describe(error: Any, overrides: dict[str, Any]) -> str:
    loc = error.get("loc") or ("settings",)
    field = _field_for_alias(str(loc[0]))
    name = _env_name(field) if field in SentrySettings.model_fields else field
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        info = SentrySettings.model_fields.get(field)
        low = high = None
        for meta in getattr(info, "metadata", []):
            low = getattr(meta, "ge", low)
            high = getattr(meta, "le", high)
        problem = f"must be between {low} and {high}"
    elif kind == "value_error":
        problem = str(ctx.get("error", error.get("msg", "is invalid")))
    else:
        problem = _MESSAGES.get(kind, str(error.get("msg", "is invalid")).lower())
    shown = ""
    if field not in _SECRET_FIELDS and kind != "value_error":
        value = overrides.get(field, _environ_value(name))
        if isinstance(value, (str, int, float, bool)):
            shown = f", got {value!r}"
    return f"{name} {problem}{shown}"


def _field_for_alias(name: str) -> str:
    """Errors on aliased fields are reported under the alias (`SENTRY_DEBUG`): map it back."""
    if name in SentrySettings.model_fields:
        return name
    for field, info in SentrySettings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and name in {str(c) for c in alias.choices}:
            return field
    return name


def _environ_value(name: str) -> str | None:
    for key, value in os.environ.items():
        if key.upper() == name:
            return value
    return None


def load_settings(**overrides: Any) -> SentrySettings:
    """Read settings from the environment and `.env`, with keyword overrides on top.

    Raises `ConfigError` with one line naming each bad variable; pydantic's report and the
    DSN's value never appear in it.
    """
    unknown = sorted(set(overrides) - set(SentrySettings.model_fields))
    if unknown:
        raise ConfigError(
            f"unknown setting {unknown[0]!r}; valid names are the SentrySettings fields "
            f"(e.g. dsn, environment, traces_sample_rate)"
        )
    try:
        return SentrySettings(**overrides)
    except ValidationError as exc:
        lines = [_describe(error, overrides) for error in exc.errors(include_url=False)]
        raise ConfigError("Invalid Sentry settings: " + "; ".join(lines)) from None


def settings_from(settings: SentrySettings | None, overrides: dict[str, Any]) -> SentrySettings:
    """The settings `install` works with: given ones (with overrides applied) or loaded ones."""
    if settings is None:
        return load_settings(**overrides)
    if not overrides:
        return settings
    merged = settings.model_dump()
    merged.update(overrides)
    if isinstance(merged.get("dsn"), SecretStr):
        merged["dsn"] = merged["dsn"].get_secret_value()
    return load_settings(**merged)


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE_WORDS


LogLevel = Literal["debug", "info", "warning", "error", "fatal"]
