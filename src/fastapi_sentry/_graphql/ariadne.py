"""sentry-sdk's Ariadne integration, completed: see the package docstring for what it adds."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Any

import sentry_sdk
from graphql import DocumentNode, get_operation_ast
from sentry_sdk.integrations.ariadne import AriadneIntegration as _SdkIntegration
from sentry_sdk.utils import capture_internal_exceptions

from fastapi_sentry._graphql import note_operation
from fastapi_sentry._pipeline import add_global_processor

# `ariadne.graphql` is also the name of a function in `ariadne`; the SDK imports it this way too
_ariadne_graphql: ModuleType = import_module("ariadne.graphql")


class AriadneIntegration(_SdkIntegration):
    """The SDK's integration (same identifier, so it takes the auto-enabled one's place), plus
    the operation on events and as the transaction's name, which the SDK's leaves at the URL."""

    @staticmethod
    def setup_once() -> None:
        _SdkIntegration.setup_once()
        add_global_processor("drop_graphql_request_errors")
        # `graphql()`, `graphql_sync()` and `subscribe()` all parse through this module global
        parse_query = _ariadne_graphql.parse_query

        def parse_query_noting_operation(
            context_value: Any, query_parser: Any, data: Any
        ) -> DocumentNode:
            document: DocumentNode = parse_query(context_value, query_parser, data)
            if sentry_sdk.get_client().get_integration(AriadneIntegration) is not None:
                with capture_internal_exceptions():
                    name = data.get("operationName") if isinstance(data, dict) else None
                    operation = get_operation_ast(document, name)
                    if operation is not None:
                        named = operation.name.value if operation.name else None
                        note_operation(named, operation.operation.value)
            return document

        setattr(_ariadne_graphql, "parse_query", parse_query_noting_operation)  # noqa: B010
