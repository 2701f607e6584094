"""Context at init: SENTRY_TAGS, the `app` context and organization fields of the user as tags."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI, Request

import fastapi_sentry
from fastapi_sentry import ConfigError
from fastapi_sentry._settings import load_settings
from fastapi_sentry.inbox import InboxServer
from fastapi_sentry.testing import CapturedEnvelopes
from tests.support.server import serve as serving

DSN = "http://publickey@127.0.0.1:9/1"  # nothing listens: sentry_events keeps it off the wire


def make_app(**options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/boom")
    def boom(request: Request) -> None:
        raise KeyError("order-42")

    @app.get("/ok")
    def ok() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/tagged")
    def tagged() -> None:
        sentry_sdk.set_tag("team", "checkout-oncall")
        raise ValueError("own tag")

    fastapi_sentry.install(app, dsn=DSN, environment="test", traces_sample_rate=1.0, **options)
    return app


async def call(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> int:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return (await client.get(path, headers=headers)).status_code


def jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJlLWhlcmU"


@pytest.mark.parametrize(
    ("tags", "named"),
    [
        ("team=payments,region", "'region'"),
        ("=eu", "'=eu'"),
        ("team payments=x", "'team payments=x'"),
    ],
)
def test_a_bad_tag_entry_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, tags: str, named: str
) -> None:
    monkeypatch.setenv("SENTRY_TAGS", tags)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "SENTRY_TAGS" in str(caught.value)
    assert named in str(caught.value)
    assert "team=payments,region=eu" in str(caught.value)  # the fix


def test_a_bad_user_tag_name_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_USER_TAGS", "organization_id,org id")
    with pytest.raises(ConfigError, match=r"SENTRY_USER_TAGS .*'org id'"):
        load_settings()


def test_tags_from_the_environment_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_TAGS", " team = payments , region=eu ")
    monkeypatch.setenv("APP_NAME", "checkout")
    settings = load_settings()
    assert settings.tag_map == {"team": "payments", "region": "eu"}
    assert settings.app_name == "checkout"


def test_tags_and_app_context_on_every_event_and_transaction(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = make_app(tags=["team=payments", "region=eu"], app_name="checkout", release="1.4.2")
    assert asyncio.run(call(app, "/boom")) == 500
    assert asyncio.run(call(app, "/ok")) == 200
    [error] = sentry_events.errors
    transactions = sentry_events.transactions
    assert {t["transaction"] for t in transactions} == {"/boom", "/ok"}
    for event in [error, *transactions]:
        assert event["tags"]["team"] == "payments"
        assert event["tags"]["region"] == "eu"
        assert event["contexts"]["app"] == {"app_name": "checkout", "app_version": "1.4.2"}


def test_an_events_own_tag_wins(sentry_events: CapturedEnvelopes) -> None:
    app = make_app(tags=["team=payments"])
    assert asyncio.run(call(app, "/tagged")) == 500
    [error] = sentry_events.errors
    assert error["tags"]["team"] == "checkout-oncall"


def test_organization_and_role_from_a_custom_resolver_become_tags(
    sentry_events: CapturedEnvelopes,
) -> None:
    app = FastAPI()

    @app.get("/boom")
    def boom() -> None:
        raise KeyError("order-42")

    def from_header(connection: Any) -> dict[str, Any]:
        # what an auth dependency already knows: no database query
        return {"id": "7", "organization_id": connection.headers["x-org"], "role": "admin"}

    fastapi_sentry.install(
        app, dsn=DSN, user_resolvers=[from_header], user_tags=["organization_id", "role"]
    )
    assert asyncio.run(call(app, "/boom", {"x-org": "org-31"})) == 500
    [error] = sentry_events.errors
    assert error["user"] == {"id": "7", "organization_id": "org-31", "role": "admin"}
    assert error["tags"]["organization_id"] == "org-31"
    assert error["tags"]["role"] == "admin"


def test_user_fields_are_not_tags_unless_configured(sentry_events: CapturedEnvelopes) -> None:
    app = make_app()
    token = jwt({"sub": "user-1", "org_id": "org-9", "role": "viewer"})
    assert asyncio.run(call(app, "/boom", {"authorization": f"Bearer {token}"})) == 500
    [error] = sentry_events.errors
    assert error["user"] == {"id": "user-1", "organization_id": "org-9", "role": "viewer"}
    assert "organization_id" not in error.get("tags", {})


def test_over_a_real_server_the_inbox_stores_tags_context_and_organization(
    tmp_path: Any,
) -> None:
    with InboxServer(tmp_path / "inbox.db") as inbox:
        app = FastAPI()

        @app.get("/boom")
        def boom() -> None:
            raise KeyError("order-42")

        fastapi_sentry.install(
            app,
            dsn=inbox.dsn,
            environment="test",
            tags=["team=payments", "region=eu"],
            app_name="checkout",
            release="1.4.2",
            user_tags=["organization_id", "role"],
        )
        token = jwt({"sub": "user-1", "org_id": "org-9", "role": "viewer"})
        with serving(app) as url:
            response = httpx.get(f"{url}/boom", headers={"authorization": f"Bearer {token}"})
            assert response.status_code == 500
        [event] = inbox.wait_for(1)
    tags = event["tags"]
    assert tags["team"] == "payments"
    assert tags["region"] == "eu"
    assert tags["organization_id"] == "org-9"
    assert tags["role"] == "viewer"
    assert event["contexts"]["app"] == {"app_name": "checkout", "app_version": "1.4.2"}
    assert event["user"]["organization_id"] == "org-9"


def test_a_debug_build_says_so_in_the_app_context(sentry_events: CapturedEnvelopes) -> None:
    """Seed 003 wants the debug status beside the version: Sentry's `build_type`."""
    app = make_app(app_name="checkout", release="1.4.2", debug=True)
    assert asyncio.run(call(app, "/boom")) == 500
    [error] = sentry_events.errors
    assert error["contexts"]["app"] == {
        "app_name": "checkout",
        "app_version": "1.4.2",
        "build_type": "debug",
    }
