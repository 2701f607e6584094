"""A reported validation error (422 listed as failed): field errors readable, values scrubbed.

FastAPI's `RequestValidationError` puts every field error, with the value the client submitted
(`input`: a password, a card number), into its message, and the frames it is raised from hold the
whole body in their locals. The event keeps the field errors as a `validation` context: `loc`,
`msg`, `type` of each, and the submitted values under their dotted location
(`body.card.number`), where the scrubber's key rules and value detectors see them; the message
names locations and error types only, and the frames (FastAPI's own) lose their locals. Events
are grouped by the exception type and the route, not by whatever values were sent.
A Starlette `HTTPException(422)` whose `detail` is such a list of errors is treated the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi_sentry._context import current_request, safe_text
from fastapi_sentry._routes import route_template

CONTEXT = "validation"
#: Field errors kept in the context; the message names the first few.
MAX_ERRORS = 50
_NAMED_IN_MESSAGE = 5


def field_errors(exc: BaseException) -> list[Mapping[str, Any]] | None:
    """The pydantic-style field errors an exception carries, or None for any other exception."""
    errors: Any = None
    try:
        from fastapi.exceptions import RequestValidationError

        if isinstance(exc, RequestValidationError):
            errors = exc.errors()
    except ImportError:  # pragma: no cover - fastapi is a dependency
        pass
    if errors is None:
        from starlette.exceptions import HTTPException

        if isinstance(exc, HTTPException) and exc.status_code == 422:
            errors = exc.detail
    if not isinstance(errors, Sequence) or isinstance(errors, (str, bytes)):
        return None
    found = [e for e in errors if isinstance(e, Mapping) and "loc" in e]
    return found if found and len(found) == len(errors) else None


def _dotted(loc: object) -> str:
    if isinstance(loc, (list, tuple)):
        return ".".join(str(part) for part in loc)
    return str(loc)


def describe_validation_error(event: dict[str, Any], hint: Mapping[str, Any]) -> dict[str, Any]:
    """The event of a validation error rewritten as above; any other event unchanged."""
    exc_info = hint.get("exc_info")
    exc = exc_info[1] if exc_info else None
    if not isinstance(exc, BaseException):
        return event
    errors = field_errors(exc)
    if errors is None:
        return event
    details = []
    submitted: dict[str, Any] = {}
    for error in errors[:MAX_ERRORS]:
        where = safe_text(_dotted(error.get("loc")))
        details.append({"loc": where, "msg": str(error.get("msg", "")), "type": error.get("type")})
        if "input" in error:
            submitted[where] = error["input"]
    contexts = event.get("contexts")
    if not isinstance(contexts, dict):
        contexts = event["contexts"] = {}
    contexts[CONTEXT] = {"errors": details, "input": submitted}

    named = ", ".join(f"{d['loc']} ({d['type']})" for d in details[:_NAMED_IN_MESSAGE])
    more = len(errors) - _NAMED_IN_MESSAGE
    message = f"{len(errors)} validation error{'s' if len(errors) != 1 else ''}: {named}"
    if more > 0:
        message += f" and {more} more"
    name = type(exc).__name__
    exception = event.get("exception")
    values = exception.get("values") if isinstance(exception, dict) else None
    for value in values if isinstance(values, list) else ():
        if not isinstance(value, dict):
            continue
        if value.get("type") == name:
            value["value"] = message
        frames = (value.get("stacktrace") or {}).get("frames") or ()
        for frame in frames:
            if isinstance(frame, dict):
                frame.pop("vars", None)

    state = current_request.get()
    route = route_template(state.asgi_scope) if state is not None else event.get("transaction")
    event["fingerprint"] = [name, str(route or "")]
    return event
