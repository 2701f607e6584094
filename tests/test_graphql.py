"""GraphQL on FastAPI, with Strawberry and with Ariadne: real schemas served by uvicorn, with
`fastapi_sentry.install`, sending through sentry-sdk's real transport to a receiver.

Each app builds its schema before `install()` runs, as apps do at import time. Stopping the
server flushes (install's lifespan hook), so counting after the `with` block proves absence.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI

import fastapi_sentry
from fastapi_sentry import _graphql
from fastapi_sentry._graphql import TAG_OPERATION_NAME, TAG_OPERATION_TYPE
from fastapi_sentry.testing import CapturedEnvelopes
from tests.support.receiver import Receiver
from tests.support.server import serve

LIBRARIES = ["strawberry", "ariadne"]
PATH = "/graphql"
SECRET = "hunter2-" + "x" * 12


def _strawberry_app() -> FastAPI:
    import strawberry
    from strawberry.fastapi import GraphQLRouter

    @strawberry.type
    class Query:
        @strawberry.field
        def ok(self) -> str:
            return "ok"

        @strawberry.field
        def broken(self, label: str, password: str | None = None) -> str:
            raise ValueError(f"resolver broke {label}")

    @strawberry.type
    class Mutation:
        @strawberry.mutation
        def pay(self, label: str) -> str:
            raise RuntimeError(f"payment broke {label}")

    schema = strawberry.Schema(query=Query, mutation=Mutation)
    app = FastAPI()
    app.include_router(GraphQLRouter(schema), prefix=PATH)
    return app


def _ariadne_app() -> FastAPI:
    from ariadne import MutationType, QueryType, make_executable_schema
    from ariadne.asgi import GraphQL

    type_defs = """
        type Query { ok: String!  broken(label: String!, password: String): String! }
        type Mutation { pay(label: String!): String! }
    """
    query, mutation = QueryType(), MutationType()

    @query.field("ok")
    def resolve_ok(*_: Any) -> str:
        return "ok"

    @query.field("broken")
    def resolve_broken(*_: Any, label: str, password: str | None = None) -> str:
        raise ValueError(f"resolver broke {label}")

    @mutation.field("pay")
    def resolve_pay(*_: Any, label: str) -> str:
        raise RuntimeError(f"payment broke {label}")

    app = FastAPI()
    # how Ariadne's documentation puts it on FastAPI
    app.mount(PATH, GraphQL(make_executable_schema(type_defs, query, mutation)))
    return app


APPS: dict[str, Callable[[], FastAPI]] = {"strawberry": _strawberry_app, "ariadne": _ariadne_app}

BROKEN = (
    "query Broken($label: String!, $password: String) "
    "{ broken(label: $label, password: $password) }"
)


@contextlib.contextmanager
def _served(library: str, receiver: Receiver, **settings: Any) -> Iterator[str]:
    """The library's app with `install()`, served; yields the GraphQL URL. Leaving flushes."""
    app = APPS[library]()
    fastapi_sentry.install(
        app, dsn=receiver.dsn, environment="test", mount_endpoints=False, **settings
    )
    with serve(app) as base_url:
        yield base_url + URLS[library]


@pytest.fixture
def label() -> str:
    """Unique text in a test's errors, so its events are told apart from any other's."""
    return uuid.uuid4().hex[:8]


def _jwt(sub: str) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'sub': sub})}.signature"


#: Where each app answers: Ariadne's mount on the path with a trailing slash.
URLS = {"strawberry": PATH, "ariadne": f"{PATH}/"}


def _post(url: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    response = httpx.post(url, json=body, headers=headers, timeout=10)
    assert response.status_code in (200, 400), response.text
    return response


def _events_about(receiver: Receiver, text: str) -> list[dict[str, Any]]:
    return [e for e in receiver.envelope_items("event") if text in json.dumps(e.get("exception"))]


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_resolver_error_is_reported_once_with_its_operation_request_and_user(
    library: str, label: str, sentry_receiver: Receiver
) -> None:
    with _served(library, sentry_receiver) as url:
        response = _post(
            url,
            {"query": BROKEN, "variables": {"label": label}, "operationName": "Broken"},
            **{"X-Request-ID": f"req-{label}", "Authorization": f"Bearer {_jwt('user-42')}"},
        )
        assert response.json()["errors"][0]["message"] == f"resolver broke {label}"
        payment = _post(url, {"query": f'mutation Pay {{ pay(label: "{label}") }}'})
        assert payment.json()["errors"][0]["message"] == f"payment broke {label}"

    (event,) = _events_about(sentry_receiver, f"resolver broke {label}")
    assert event["tags"][TAG_OPERATION_NAME] == "Broken"
    assert event["tags"][TAG_OPERATION_TYPE] == "query"
    assert event["tags"]["request_id"] == f"req-{label}"
    assert event["user"]["id"] == "user-42"
    assert event["transaction"] == "Broken"
    chain = event["exception"]["values"]
    assert chain[0]["type"] == "ValueError"
    assert all(value["mechanism"]["type"] == library for value in chain)
    assert chain[-1]["mechanism"]["handled"] is False

    # the operation name came from the document here (no operationName in the request)
    (mutation,) = _events_about(sentry_receiver, f"payment broke {label}")
    assert mutation["tags"][TAG_OPERATION_NAME] == "Pay"
    assert mutation["tags"][TAG_OPERATION_TYPE] == "mutation"
    assert mutation["transaction"] == "Pay"


@pytest.mark.parametrize("library", LIBRARIES)
def test_the_transaction_is_named_after_the_operation(
    library: str, sentry_receiver: Receiver
) -> None:
    with _served(library, sentry_receiver, traces_sample_rate=1.0) as url:
        _post(url, {"query": "query Dashboard { ok }", "operationName": "Dashboard"})
        _post(url, {"query": "{ ok }"})

    transactions = sentry_receiver.envelope_items("transaction")
    (named,) = [t for t in transactions if t["transaction"] == "Dashboard"]
    assert named["transaction_info"]["source"] == "component"
    assert named["tags"][TAG_OPERATION_TYPE] == "query"
    # an anonymous operation keeps the request's own name: one transaction per text would scatter
    (anonymous,) = [t for t in transactions if t is not named]
    assert anonymous["transaction_info"]["source"] != "component"
    assert TAG_OPERATION_NAME not in anonymous.get("tags", {})


@pytest.mark.parametrize("library", LIBRARIES)
def test_requests_the_client_got_wrong_are_not_reported(
    library: str, label: str, sentry_receiver: Receiver
) -> None:
    with _served(library, sentry_receiver) as url:
        for body in (
            {"query": "query Invalid { noSuchField }"},  # validation
            {"query": "query Truncated { ok"},  # syntax
            {"query": BROKEN, "variables": {"label": 42}},  # variable of the wrong type
        ):
            assert "errors" in _post(url, body).json()
        # the marker: once it is in, anything the earlier requests sent is in too
        _post(url, {"query": BROKEN, "variables": {"label": label}})

    events = sentry_receiver.envelope_items("event")
    assert [e["exception"]["values"][0]["value"] for e in events] == [f"resolver broke {label}"]


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("send_default_pii", [False, True])
def test_the_query_variables_follow_the_privacy_settings(
    library: str, send_default_pii: bool, label: str, sentry_receiver: Receiver
) -> None:
    variables = {"label": label, "password": SECRET}
    with _served(library, sentry_receiver, send_default_pii=send_default_pii) as url:
        _post(url, {"query": BROKEN, "variables": variables, "operationName": "Broken"})

    (event,) = _events_about(sentry_receiver, f"resolver broke {label}")
    assert SECRET not in sentry_receiver.raw().decode()
    data = event["request"].get("data") or {}
    if send_default_pii:
        # the query and its variables are shown, scrubbed like the rest of the event
        assert data["variables"] == {"label": label, "password": "[Filtered]"}
        assert data["query"].startswith("query Broken(")
    else:
        assert "variables" not in data
        assert "query" not in data
        assert label not in json.dumps(event["request"])


def test_a_strawberry_schema_runs_sync_and_async_whenever_it_was_built(
    sentry_receiver: Receiver,
) -> None:
    import asyncio

    import strawberry

    @strawberry.type
    class Query:
        @strawberry.field
        def ok(self) -> str:
            return "ok"

    before = strawberry.Schema(query=Query)
    fastapi_sentry.install(FastAPI(), dsn=sentry_receiver.dsn, mount_endpoints=False)
    after = strawberry.Schema(query=Query)  # the SDK gives this one its async extension
    for schema in (before, after):
        assert schema.execute_sync("query Sync { ok }").data == {"ok": "ok"}
        assert asyncio.run(schema.execute("query Async { ok }")).data == {"ok": "ok"}


def test_the_request_error_filter_runs_once_an_event_with_both_libraries_installed(
    sentry_events: CapturedEnvelopes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Strawberry's and Ariadne's integrations both ask for the filter; it runs once, not once
    for each of them."""
    from fastapi_sentry._graphql.ariadne import AriadneIntegration
    from fastapi_sentry._graphql.strawberry import StrawberryIntegration

    checked: list[BaseException | None] = []
    is_request_error = _graphql.is_request_error

    def counting(exc: BaseException | None) -> bool:
        checked.append(exc)
        return is_request_error(exc)

    monkeypatch.setattr(_graphql, "is_request_error", counting)
    fastapi_sentry.install(FastAPI(), dsn="http://public@127.0.0.1:9/1", mount_endpoints=False)
    client = sentry_sdk.get_client()
    assert client.get_integration(StrawberryIntegration) is not None
    assert client.get_integration(AriadneIntegration) is not None

    error = ValueError("counted once")
    try:
        raise error
    except ValueError:
        sentry_sdk.capture_exception()

    assert [e["exception"]["values"][0]["value"] for e in sentry_events.errors] == ["counted once"]
    assert checked == [error], f"the filter ran {len(checked)} times for one event"
