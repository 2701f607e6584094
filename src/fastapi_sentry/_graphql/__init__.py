"""GraphQL servers (Strawberry, Ariadne) on top of sentry-sdk's own integrations for them.

sentry-sdk already reports a resolver's error once, with the request it came in. What it lacks,
added here: the operation on every event (`graphql.operation_name` / `graphql.operation_type`
tags) and as the transaction's name whichever library serves it; no event for a request the
client got wrong (a syntax, validation or variable error is the client's bug, answered in the
response); and the request body shown by the rules of `data_collection.graphql` (applied in the
event pipeline): the request path, ours or the SDK's on the fallback, attaches JSON bodies, and
a GraphQL body carries the query and its variables.
The library-specific halves are in `strawberry.py` and `ariadne.py`, imported only when the
library is installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TAG_OPERATION_NAME = "graphql.operation_name"
TAG_OPERATION_TYPE = "graphql.operation_type"

#: The transaction source sentry-sdk's Strawberry integration uses for an operation's name.
OPERATION_SOURCE = "component"


def note_operation(name: str | None, kind: str) -> None:
    """The operation being executed: tags for this request's events, and its transaction's name.

    An anonymous operation keeps the route's name: a transaction per query text would scatter
    the performance data.
    """
    import sentry_sdk

    scope = sentry_sdk.get_isolation_scope()
    scope.set_tag(TAG_OPERATION_TYPE, kind)
    if name:
        scope.set_tag(TAG_OPERATION_NAME, name)
        sentry_sdk.get_current_scope().set_transaction_name(name, source=OPERATION_SOURCE)


def is_request_error(exc: BaseException | None) -> bool:
    """A GraphQL error the client caused: raised before execution, wrapping only GraphQL errors.

    graphql-core gives every error raised while executing a field the field's path; syntax,
    validation and variable errors have none, and wrap nothing or another GraphQL error (a
    scalar refusing a variable's value). An exception of the app's own under it is reported.
    """
    from graphql import GraphQLError

    if not isinstance(exc, GraphQLError) or exc.path is not None:
        return False
    cause: BaseException | None = exc.original_error
    while isinstance(cause, GraphQLError):
        cause = cause.original_error
    return cause is None


def drop_request_errors(event: Any, hint: Any) -> Any:
    """Global event processor: no event for a GraphQL request the client got wrong."""
    exc_info = hint.get("exc_info") if isinstance(hint, Mapping) else None
    if exc_info and is_request_error(exc_info[1]):
        return None
    return event


def graphql_collection(options: Mapping[str, Any]) -> tuple[bool, bool]:
    """(document, variables): what `data_collection.graphql` (or, without it, PII) allows."""
    collection = options.get("data_collection")
    if isinstance(collection, Mapping) and collection.get("provided_by_user"):
        graphql = collection.get("graphql") or {}
        return bool(graphql.get("document")), bool(graphql.get("variables"))
    pii = bool(options.get("send_default_pii"))
    return pii, pii


def filter_event_body(event: dict[str, Any]) -> None:
    """`filter_request_body` for an event about to leave, whichever request path attached the
    body (ours, or sentry-sdk's Starlette integration on the fallback path)."""
    request = event.get("request")
    if isinstance(request, dict) and request.get("data"):
        import sentry_sdk

        filter_request_body(request, sentry_sdk.get_client().options)


def filter_request_body(request: dict[str, Any], options: Mapping[str, Any]) -> None:
    """A GraphQL body (one operation or a batch) in `request["data"]`, cut to what may be shown.

    The operation name always stays; the query text and the variables only where
    `data_collection.graphql` allows them (our scrubber still runs over what is kept).
    """
    data = request.get("data")
    operations: list[dict[str, Any]] = []
    for item in data if isinstance(data, list) else [data]:
        if not isinstance(item, dict) or not isinstance(item.get("query"), str):
            return
        operations.append(item)
    if not operations:
        return
    document, variables = graphql_collection(options)
    kept = [
        {
            key: value
            for key, value in item.items()
            if (key != "query" or document) and (key != "variables" or variables)
        }
        for item in operations
    ]
    request["data"] = kept if isinstance(data, list) else kept[0]
    request["api_target"] = "graphql"
