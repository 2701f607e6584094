"""What every event and transaction of a service carries from start-up: tags and the `app` context.

Set from settings (`SENTRY_TAGS`, `SENTRY_APP_NAME`, the release) rather than on the SDK's global
scope, so a re-initialisation with other settings leaves nothing behind. `SENTRY_USER_TAGS` copies
user fields the resolvers already put on the event (`organization_id`, `role`) into tags, so
events can be searched and alerted on per organization without a database query.
"""

from __future__ import annotations

from typing import Any

from fastapi_sentry._settings import SentrySettings

Event = dict[str, Any]


class InitContext:
    """Adds the start-up tags, the `app` context and the configured user tags to an event.

    An event's own tags win over the start-up ones: code that sets a tag means it.
    """

    def __init__(self, settings: SentrySettings) -> None:
        self.tags = settings.tag_map
        app = {"app_name": settings.app_name, "app_version": settings.effective_release}
        self.app: dict[str, Any] = {key: value for key, value in app.items() if value}
        if settings.debug:  # seed 003: an event from a debug build says so (Sentry's build_type)
            self.app["build_type"] = "debug"
        self.user_tags = tuple(settings.user_tags)

    def apply(self, event: Event) -> Event:
        tags = event.get("tags")
        own = tags if isinstance(tags, dict) else {}
        added = dict(self.tags)
        user = event.get("user")
        if self.user_tags and isinstance(user, dict):
            for field in self.user_tags:
                value = user.get(field)
                if value is not None and value != "" and not isinstance(value, (dict, list)):
                    added[field] = str(value)
        if added:
            event["tags"] = {**added, **own}
        if self.app:
            contexts = event.get("contexts")
            if not isinstance(contexts, dict):
                contexts = event["contexts"] = {}
            existing = contexts.get("app")
            contexts["app"] = {**self.app, **(existing if isinstance(existing, dict) else {})}
        return event
