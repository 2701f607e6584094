"""What fastapi-sentry keeps per process, with one owner and one `reset()`.

Everything else is per app (`app.state`) or per request (`_context`). Tests and the pytest plugin
call `reset()` between tests instead of reaching into modules.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any


class ProcessState:
    """The few values that must outlive a request or an app."""

    __slots__ = ("global_processors", "init_key", "last_event_id")

    def __init__(self) -> None:
        #: the settings and options `sentry_sdk.init` last ran with; equal ones skip a re-init
        self.init_key: dict[str, Any] | None = None
        #: the last error or message event this process sent (for `GET /sentry/status`)
        self.last_event_id: str | None = None
        #: global event processors already added: the SDK keeps them for the process's life,
        #: across re-initialisation, so this is never reset
        self.global_processors: set[str] = set()


STATE = ProcessState()
_reset_hooks: list[Callable[[], None]] = []


def on_reset(hook: Callable[[], None]) -> None:
    """Have `reset()` also clear state a lazily imported module keeps (release-health counts)."""
    if hook not in _reset_hooks:
        _reset_hooks.append(hook)


def remember_event_id(event_id: str | None) -> None:
    if event_id:
        STATE.last_event_id = event_id


def reset() -> None:
    """Back to "never initialised": the next `install()` initialises sentry-sdk again."""
    STATE.init_key = None
    STATE.last_event_id = None
    for hook in _reset_hooks:
        hook()


def active_sdk() -> ModuleType | None:
    """sentry_sdk when it was imported and has an active client; None means "Sentry is off".

    Never imports sentry_sdk: if nothing imported it, nothing can have initialised it.
    """
    sdk = sys.modules.get("sentry_sdk")
    if sdk is None:
        return None
    try:
        if not sdk.get_client().is_active():
            return None
    except Exception:  # a half-imported or torn-down SDK: behave as disabled
        return None
    return sdk
