"""Sentry's own ingestion normalizer (Relay's, from the `sentry-relay` package) as the oracle:
every kind of event `install()` produces, and every event the inbox stores, is one Sentry accepts
without a normalization error.

`StoreNormalizer.normalize_event` returns the event as Sentry would store it, with an ``errors``
list for whatever it had to drop or could not read. The only entries accepted are
tests/compat/conftest.py's ``BENIGN``: none today. The inbox's own fields on an event read back
from its API (``INBOX_FIELDS``: ids and the receive time, in Sentry's API spelling) are not part
of the event and are taken off first. Every compat module's inbox is checked the same way at its
end (the `compat_inbox` fixture), so the events of sentry-cli and @sentry/node count too.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import sentry_sdk
from fastapi import FastAPI, Request

import fastapi_sentry
from fastapi_sentry.inbox import InboxServer
from fastapi_sentry.testing import CapturedEnvelopes
from tests.compat.conftest import (
    EVENTS,
    api,
    normalization_errors,
    rows,
    stored_events_relay_refuses,
    wait_for_api,
)
from tests.support.server import serve

MB = 1_000_000
SECRET = "hunter2-s3cret"


def service(dsn: str | None) -> FastAPI:
    """Every kind of request event: an error with secrets, a message, a transaction, an error
    too large to send untrimmed."""
    app = FastAPI()

    @app.get("/orders/{order_id}")
    def order(order_id: int) -> dict[str, int]:
        return {"id": order_id}

    @app.post("/login")
    async def login(request: Request) -> None:
        password = SECRET  # noqa: F841 - a local the scrubber must remove
        body = await request.json()
        raise PermissionError(f"login refused for {body['user']}")

    @app.get("/notice")
    def notice() -> dict[str, bool]:
        sentry_sdk.capture_message("stock is low", level="warning")
        return {"ok": True}

    @app.get("/huge")
    def huge() -> None:
        blob = "x" * (2 * MB)
        raise ValueError(f"failed with a {len(blob)} character local")

    fastapi_sentry.install(
        app, dsn=dsn, environment="compat", release="oracle@1.0", traces_sample_rate=1.0
    )
    return app


def drive(app: FastAPI) -> None:
    with serve(app) as url:
        assert httpx.get(url + "/orders/7", timeout=10).status_code == 200
        headers = {"Authorization": f"Bearer {SECRET}", "Cookie": f"session={SECRET}"}
        login = {"user": "ann", "password": SECRET}
        assert (
            httpx.post(url + "/login", json=login, headers=headers, timeout=10).status_code == 500
        )
        assert httpx.get(url + "/notice", timeout=10).status_code == 200
        assert httpx.get(url + "/huge", timeout=30).status_code == 500
    sentry_sdk.flush(timeout=30)


KINDS = {"PermissionError", "ValueError", "stock is low", "/orders/{order_id}"}


def kind(event: dict[str, Any]) -> str:
    values = (event.get("exception") or {}).get("values") or []
    if values:
        return str(values[-1]["type"])
    return str(event.get("message") or event.get("transaction"))


def test_what_install_sends_passes_relays_normalizer(sentry_events: CapturedEnvelopes) -> None:
    drive(service("http://key@127.0.0.1:9/1"))
    sent = sentry_events.events + sentry_events.transactions
    assert {kind(e) for e in sent} >= KINDS
    for event in sent:
        assert normalization_errors(event) == [], kind(event)
    assert SECRET not in json.dumps(sent)


def test_what_the_inbox_stores_passes_relays_normalizer(compat_inbox: InboxServer) -> None:
    drive(service(compat_inbox.dsn))
    stored = rows(api(compat_inbox, EVENTS, limit="1000"))
    events = [e for e in stored if e["type"] in ("error", "default", "transaction")]
    assert {kind(e) for e in events} >= KINDS
    assert stored_events_relay_refuses(compat_inbox) == {}


def test_a_celery_task_failure_passes_relays_normalizer(compat_inbox: InboxServer) -> None:
    from types import SimpleNamespace

    from celery import Celery, signals

    from fastapi_sentry.celery import TAG_TASK_NAME, install_celery

    app = Celery("oracle", broker="memory://", set_as_current=False)
    try:
        install_celery(app, dsn=compat_inbox.dsn, environment="compat")
        # what `celery worker` does in its main process, before the pool forks
        signals.celeryd_init.send(
            sender="oracle@localhost", instance=SimpleNamespace(app=app), conf=app.conf, options={}
        )

        @app.task(name="oracle.fails", shared=False)
        def fails(label: str) -> None:
            raise LookupError(f"missing {label}")

        assert isinstance(fails.apply(args=("invoice",)).result, LookupError)
        sentry_sdk.flush(timeout=10)
    finally:
        hooks = getattr(app, "_fastapi_sentry_hooks", None)
        if hooks is not None:
            hooks.disconnect()
        app.close()
    (event,) = wait_for_api(
        compat_inbox,
        EVENTS,
        lambda e: "missing invoice" in json.dumps(e.get("exception")),
        "the task failure",
    )
    assert event["tags"][TAG_TASK_NAME] == "oracle.fails"
    assert normalization_errors(event) == []
