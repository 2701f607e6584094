"""sentry-sdk's Strawberry integration, completed: see the package docstring for what it adds."""

from __future__ import annotations

from collections.abc import Iterator

import sentry_sdk
from sentry_sdk.integrations.strawberry import SentryAsyncExtension, SentrySyncExtension
from sentry_sdk.integrations.strawberry import StrawberryIntegration as _SdkIntegration
from sentry_sdk.utils import capture_internal_exceptions
from strawberry import Schema
from strawberry.extensions import SchemaExtension

from fastapi_sentry._graphql import note_operation
from fastapi_sentry._pipeline import add_global_processor


class OperationExtension(SchemaExtension):
    """Notes the operation once Strawberry knows it (parsed and valid), before it runs."""

    def on_execute(self) -> Iterator[None]:
        if sentry_sdk.get_client().get_integration(StrawberryIntegration) is not None:
            with capture_internal_exceptions():
                context = self.execution_context
                note_operation(context.operation_name, context.operation_type.value)
        yield


class StrawberryIntegration(_SdkIntegration):
    """The SDK's integration (same identifier, so it takes the auto-enabled one's place), plus
    the operation on events and transactions, also for a schema built before `sentry_sdk.init`
    (the SDK adds its extension only to schemas created after it, and apps usually build their
    schema at import time, before `install()` runs), and the SDK's extension matching each
    execution: its async one breaks `execute_sync`, its sync one times async resolvers wrong."""

    @staticmethod
    def setup_once() -> None:
        _SdkIntegration.setup_once()
        add_global_processor("drop_graphql_request_errors")
        get_extensions = Schema.get_extensions

        def get_extensions_with_sentry(self: Schema, sync: bool = False) -> list[SchemaExtension]:
            extensions = get_extensions(self, sync)
            if sentry_sdk.get_client().get_integration(StrawberryIntegration) is None:
                return extensions
            # the SDK's extension for this execution, sync or async, whatever the schema holds
            others = [e for e in extensions if not isinstance(e, SentryAsyncExtension)]
            sdk = SentrySyncExtension() if sync else SentryAsyncExtension()
            return [OperationExtension(), sdk, *others]

        Schema.get_extensions = get_extensions_with_sentry  # type: ignore[method-assign]
