"""Grouping events into issues the way Sentry users expect.

An explicit fingerprint wins; otherwise the exception types plus the in-app frames (module and
function, never line numbers, so an edit above the failing line keeps the issue); otherwise the
message template with its parameters left out. Payloads are untrusted: every access checks types.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

LEVELS = ("fatal", "error", "warning", "info", "debug")


@dataclass(frozen=True)
class Group:
    hash: str
    title: str
    culprit: str
    level: str
    type: str  # Sentry's event type: "error" (has an exception) or "default"
    metadata: dict[str, str]


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def clean(text: str) -> str:
    """Replace lone surrogates (legal in JSON, illegal in UTF-8) so SQLite and HTML accept it."""
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


def exceptions(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The exception chain, innermost cause first and the raised exception last (Sentry's order)."""
    container = event.get("exception")
    values = as_list(as_dict(container).get("values")) if isinstance(container, dict) else []
    if isinstance(container, list):
        values = container
    return [v for v in values if isinstance(v, dict)]


def frames(exc: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in as_list(as_dict(exc.get("stacktrace")).get("frames")) if isinstance(f, dict)]


def _frame_location(frame: dict[str, Any]) -> str:
    return as_str(frame.get("module")) or as_str(frame.get("filename")) or "?"


def _message_fields(event: dict[str, Any]) -> dict[str, str]:
    """The message's template and formatted text, from ``logentry`` or ``message`` (a string or,
    in older SDKs, an object)."""
    logentry = as_dict(event.get("logentry"))
    message = event.get("message")
    fields = as_dict(message)
    return {
        "template": as_str(logentry.get("message")) or as_str(fields.get("message")),
        "formatted": as_str(logentry.get("formatted")) or as_str(fields.get("formatted")),
        "plain": as_str(message),
    }


def message_template(event: dict[str, Any]) -> str:
    """The message with its parameters left out: logentry.message is the format string."""
    m = _message_fields(event)
    return m["template"] or m["plain"] or m["formatted"]


def formatted_message(event: dict[str, Any]) -> str:
    m = _message_fields(event)
    if m["formatted"]:
        return m["formatted"]
    entry = as_dict(event.get("logentry")) or as_dict(event.get("message"))
    interpolated = format_params(m["template"], entry.get("params"))
    return interpolated or m["plain"] or m["template"]


_PERCENT = re.compile(r"%(?:\(([^)]*)\))?[-+ #0]*(?:\d+|\*)?(?:\.(?:\d+|\*))?([diouxXeEfFgGcrsa%])")
_CURLY = re.compile(r"\{([^{}]*)\}")


class _Unformattable(Exception):
    pass


def _param(params: Any, key: str | int) -> Any:
    found = (isinstance(key, int) and isinstance(params, list) and key < len(params)) or (
        isinstance(key, str) and isinstance(params, dict) and key in params
    )
    if not found or params[key] is None:
        raise _Unformattable
    return params[key]


def _param_text(value: Any, conversion: str) -> str:
    if conversion == "r":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if conversion in "xXo":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Unformattable
        return format(value, conversion)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def format_params(template: str, params: Any) -> str | None:
    """``logentry.message`` with its ``params`` filled in, as Sentry's ingestion (Relay) does for
    SDKs that send no ``formatted`` text (sentry-cli's ``send-event -m 'Hello %s' -a world``):
    printf style when the template has a ``%``, else ``{}`` style; widths and precisions are
    ignored. None (keep the template) when a placeholder has no parameter, as Relay keeps it."""
    if not template or not isinstance(params, (list, dict)):
        return None
    position = 0

    def percent(match: re.Match[str]) -> str:
        nonlocal position
        name, conversion = match.group(1), match.group(2)
        if conversion == "%" and name is None:
            return "%"
        if name is None:
            position += 1
            return _param_text(_param(params, position - 1), conversion)
        return _param_text(_param(params, name), conversion)

    def curly(match: re.Match[str]) -> str:
        nonlocal position
        field = match.group(1)
        if not field:
            position += 1
            return _param_text(_param(params, position - 1), "s")
        if field.isdigit():
            return _param_text(_param(params, int(field)), "s")
        if field.isidentifier():
            return _param_text(_param(params, field), "s")
        raise _Unformattable

    try:
        if "%" in template:
            return _PERCENT.sub(percent, template)
        if "{" in template:
            return _CURLY.sub(curly, template)
    except _Unformattable:
        return None
    return None


def _default_components(event: dict[str, Any], chain: list[dict[str, Any]]) -> list[str]:
    if chain:
        parts: list[str] = []
        for exc in chain:
            parts.append("type:" + (as_str(exc.get("type")) or "Error"))
            all_frames = frames(exc)
            in_app = [f for f in all_frames if f.get("in_app") is True]
            chosen = in_app or all_frames  # no in-app frame: the whole stack is all we have
            parts.extend(
                f"frame:{_frame_location(f)}:{as_str(f.get('function')) or '?'}" for f in chosen
            )
            if not all_frames:
                parts.append("value:" + as_str(exc.get("value")))
        return parts
    template = message_template(event)
    if template:
        return ["message:" + template]
    return ["event:" + (as_str(event.get("transaction")) or "<unlabeled event>")]


def _culprit(event: dict[str, Any], chain: list[dict[str, Any]]) -> str:
    explicit = as_str(event.get("culprit")) or as_str(event.get("transaction"))
    if explicit:
        return explicit
    if chain and not _synthetic(chain[-1]):  # Sentry gives a synthetic exception no culprit
        all_frames = frames(chain[-1])
        in_app = [f for f in all_frames if f.get("in_app") is True] or all_frames
        if in_app:
            last = in_app[-1]
            return f"{_frame_location(last)} in {as_str(last.get('function')) or '?'}"
    return ""


def _synthetic(exc: dict[str, Any]) -> bool:
    return as_dict(exc.get("mechanism")).get("synthetic") is True


def _crash_function(exc: dict[str, Any]) -> str:
    """The function of the innermost in-app frame (Sentry's crash location), if it has a name."""
    for frame in reversed(frames(exc)):
        function = as_str(frame.get("function"))
        if frame.get("in_app") is True and function not in ("", "?", "<redacted>", "<unknown>"):
            return function
    return ""


def _title(event: dict[str, Any], chain: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    if chain:
        main = chain[-1]
        exc_type = as_str(main.get("type")) or "Error"
        value = as_str(main.get("value"))
        first_line = value.splitlines()[0] if value else ""
        title = f"{exc_type}: {first_line}" if first_line else exc_type
        if _synthetic(main):
            # A stack trace the SDK made up (the JavaScript SDK's captureMessage): its type says
            # nothing, so Sentry titles the issue by the crash location's function.
            function = _crash_function(main)
            return function or title, {"value": value, "function": function}
        return title, {"type": exc_type, "value": value}
    message = formatted_message(event)
    title = (message.splitlines()[0] if message else "") or "<unlabeled event>"
    return title, {"title": title}


def level_of(event: dict[str, Any]) -> str:
    level = as_str(event.get("level")).lower()
    if level == "warn":
        level = "warning"
    return level if level in LEVELS else "error"


def group_event(event: dict[str, Any]) -> Group:
    """Compute the issue an event belongs to and the issue's display fields."""
    chain = exceptions(event)
    fingerprint = as_list(event.get("fingerprint"))
    if fingerprint:
        components: list[str] = []
        for part in fingerprint:
            text = as_str(part)
            if text.replace(" ", "") == "{{default}}":
                components.extend(_default_components(event, chain))
            else:
                components.append("fingerprint:" + text)
    else:
        components = _default_components(event, chain)
    digest = hashlib.sha1(
        "\n".join(components).encode("utf-8", "surrogatepass"), usedforsecurity=False
    ).hexdigest()
    title, metadata = _title(event, chain)
    return Group(
        hash=digest,
        title=clean(title[:500]),
        culprit=clean(_culprit(event, chain)[:500]),
        level=level_of(event),
        type="error" if chain else "default",
        metadata={k: clean(v[:1000]) for k, v in metadata.items()},
    )


def user_key(event: dict[str, Any]) -> str | None:
    """What identifies a user for userCount (Sentry's order: id, username, email, ip)."""
    user = as_dict(event.get("user"))
    for field in ("id", "username", "email", "ip_address"):
        value = as_str(user.get(field))
        if value:
            return clean(f"{field}:{value}"[:500])
    return None
