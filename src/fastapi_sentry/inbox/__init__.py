"""A local, Sentry-compatible inbox: point ``SENTRY_DSN`` at it during development and in CI.

It speaks sentry-sdk's ingest protocol (``/api/<project>/envelope/``, ``/store/`` and Spotlight's
``/stream``), stores everything in SQLite (WAL) and shows issues, transactions and check-ins on web
pages and through a JSON API using Sentry's field names.

* :class:`InboxStore` - the database; :class:`Project` - a project and its DSN.
* :func:`create_app` - the Starlette app over a store.
* :class:`InboxServer` - the app under uvicorn in a background thread (tests, pytest plugin).
* :func:`serve` - blocking, for the CLI; ``on_ready`` receives an :class:`InboxInfo` (URL, DSN,
  token) once the socket listens, and the CLI prints it.
* :func:`load_rules` - read and validate an alert rules file (:class:`AlertRules`); a mistake is an
  :class:`AlertRulesError` naming the rule and the field. Both servers take ``alerts=``,
  ``max_events=`` and ``max_age_days=``.
"""

from fastapi_sentry.inbox._alerts import AlertRules, AlertRulesError, load_rules
from fastapi_sentry.inbox._app import create_app
from fastapi_sentry.inbox._envelope import MAX_ENVELOPE_SIZE, MAX_ITEM_SIZE
from fastapi_sentry.inbox._errors import InboxError
from fastapi_sentry.inbox._server import InboxInfo, InboxServer, serve
from fastapi_sentry.inbox._store import InboxStore, Project

__all__ = [
    "MAX_ENVELOPE_SIZE",
    "MAX_ITEM_SIZE",
    "AlertRules",
    "AlertRulesError",
    "InboxError",
    "InboxInfo",
    "InboxServer",
    "InboxStore",
    "Project",
    "create_app",
    "load_rules",
    "serve",
]
