"""The before-send pipeline: filters → scrubbing → dedupe → last event id, as one object.

`install()` builds one `EventPipeline` per `sentry_sdk.init` and hands its hooks to the SDK.
The two global event processors (request enrichment and "already reported by a helper") are
added here once per process, because the SDK keeps global processors across re-initialisation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi_sentry._context import current_request, safe_tags
from fastapi_sentry._event_size import fit_event
from fastapi_sentry._filters import ExpectedErrorFilter
from fastapi_sentry._graphql import drop_request_errors, filter_event_body
from fastapi_sentry._init_context import InitContext
from fastapi_sentry._scrubbing import Scrubber
from fastapi_sentry._settings import SentrySettings
from fastapi_sentry._state import STATE, remember_event_id
from fastapi_sentry._validation import describe_validation_error

logger = logging.getLogger(__name__)

#: Attribute set on an exception once a helper reported it, so the framework's own capture of the
#: same exception (re-raised by `operation`) is dropped, even from another thread's context.
CAPTURED_MARK = "__fastapi_sentry_captured__"

Event = dict[str, Any]
Hint = dict[str, Any]


class EventPipeline:
    """What every event passes before it leaves the process.

    `on_error_kept` sees each error event that will be sent (release health notes the request
    as errored); `on_log` adds request attributes to logs (the lean request path's job).
    """

    def __init__(
        self,
        settings: SentrySettings,
        *,
        on_error_kept: Callable[[Event], None] | None = None,
        on_log: Callable[[Event], None] | None = None,
    ) -> None:
        self.scrubber = Scrubber.from_settings(settings)
        self.expected = ExpectedErrorFilter(
            set(settings.failed_request_status_codes), settings.ignored_exceptions
        )
        self.on_error_kept = on_error_kept
        self.on_log = on_log
        self.init_context = InitContext(settings)
        self.max_breadcrumbs = settings.max_breadcrumbs

    def before_send(self, event: Event, hint: Hint) -> Event | None:
        kept = self.expected(event, hint)
        if kept is None:
            return None
        kept = describe_validation_error(kept, hint)
        if self.on_error_kept is not None:
            self.on_error_kept(kept)
        scrubbed = self._finish(kept)
        remember_event_id(scrubbed.get("event_id"))
        return scrubbed

    def before_send_transaction(self, event: Event, hint: Hint) -> Event | None:
        return self._finish(event)

    def _finish(self, event: Event) -> Event:
        """GraphQL body rules, start-up tags and context, tags made safe text, scrubbing, then
        the size limits, which must see the event as it will be sent (and cut only what is
        already scrubbed)."""
        filter_event_body(event)
        event = self.init_context.apply(event)
        safe_tags(event)
        scrubbed = self.scrubber.scrub_event(event)
        return fit_event(scrubbed, max_breadcrumbs=self.max_breadcrumbs)

    def before_send_log(self, log: Event, hint: Hint) -> Event | None:
        if self.on_log is not None:
            self.on_log(log)
        return self.scrubber.scrub_log(log)

    def before_send_metric(self, metric: Event, hint: Hint) -> Event | None:
        return self.scrubber.scrub_metric(metric)

    def before_send_span(self, span: Event, hint: Hint) -> Event:
        """A streamed span (`trace_lifecycle="stream"`): the request's id and user added, then
        its name and attributes scrubbed, the only parts sentry-sdk takes back from this hook.
        Nothing here may raise: on an exception the SDK sends the span as it was, unscrubbed."""
        attributes = span.get("attributes")
        attributes = dict(attributes) if isinstance(attributes, dict) else {}
        state = current_request.get()
        if state is not None:
            try:
                state.enricher.add_span_attributes(attributes, state)
            except Exception:
                logger.debug("Could not add request data to a Sentry span", exc_info=True)
        return {
            **span,
            "name": self.scrubber.scrub_value(span.get("name", "")),
            "attributes": self.scrubber.scrub_value(attributes),
        }

    def sdk_options(self) -> dict[str, Any]:
        return {
            "before_send": self.before_send,
            "before_send_transaction": self.before_send_transaction,
            "before_send_log": self.before_send_log,
            "before_send_metric": self.before_send_metric,
        }


def remember_sent_event(event: Any, hint: Any) -> Any:
    """A `before_send` link that records the event id for `GET /sentry/status`; returns the event.

    Last in the chain, so dropped events are not counted. The SDK keeps its own
    `last_event_id()` on the isolation scope, which is per request, so a status request could
    never see another request's event; this record is process-wide.
    """
    try:
        if isinstance(event, Mapping):
            remember_event_id(event.get("event_id"))
    except Exception:  # a before_send link must hand the event on, whatever happens here
        return event
    return event


def latest_event_id() -> str | None:
    """Id of the last error or message event sent by this process (helpers or `before_send`)."""
    return STATE.last_event_id


def drop_already_captured(event: Any, hint: Any) -> Any:
    """Global event processor: an exception a helper already reported is not reported again.

    The SDK's DedupeIntegration does this with a context variable, which a threadpool endpoint
    (a copied context) does not share with the middleware that captures the re-raised error.
    """
    try:
        exc_info = hint.get("exc_info") if isinstance(hint, Mapping) else None
        exc = exc_info[1] if exc_info else None
        original = getattr(exc, CAPTURED_MARK, None) if exc is not None else None
        if original is not None and original != event.get("event_id"):
            return None
    except Exception:  # when in doubt, send
        return event
    return event


def enrich_event(event: Any, hint: Any) -> Any:
    """Global event processor: the current request's fields, a no-op outside a request."""
    state = current_request.get()
    if state is None:
        return event
    try:
        return state.enricher(event, state)
    except Exception:
        logger.debug("Could not add request data to a Sentry event", exc_info=True)
        return event


_GLOBAL_PROCESSORS: dict[str, Callable[[Any, Any], Any]] = {
    "enrich_event": enrich_event,
    "drop_already_captured": drop_already_captured,
    # Strawberry's and Ariadne's integrations both ask for it: each sets itself up once, so an
    # app with both libraries installed would run it twice per event
    "drop_graphql_request_errors": drop_request_errors,
}


def add_global_processor(name: str) -> None:
    """Add one of ours to the SDK's global event processors, once per process."""
    if name in STATE.global_processors:
        return
    from sentry_sdk.scope import add_global_event_processor

    add_global_event_processor(_GLOBAL_PROCESSORS[name])
    STATE.global_processors.add(name)
