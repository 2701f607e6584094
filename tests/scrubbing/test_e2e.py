"""End to end: the bytes sentry-sdk's real HTTP transport sends hold none of the planted secrets.

A FastAPI app with `install()` runs under uvicorn on 127.0.0.1 and is called over a real socket by
httpx. The failing request carries secrets in its headers, cookies, query string and body; the
handler keeps more in local variables (the ASGI scope with its (bytes, bytes) header tuples, a
database URL), a breadcrumb, a log record and the exception message. The receiver on 127.0.0.1
decompresses what the SDK sent; the secrets must be absent, the debugging facts present.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI, Request
from pydantic import BaseModel

import fastapi_sentry
from tests.scrubbing.corpus import luhn_check_digit
from tests.support.receiver import Receiver
from tests.support.server import serve


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


JWT = ".".join(
    [
        _b64url({"alg": "HS256", "typ": "JWT"}),
        _b64url({"sub": "user-48213"}),
        "c2lnbmF0dXJlX2UyZV8xMjM0NTY",
    ]
)
SECRETS = {
    "jwt": JWT,
    "api_key_header": "k-e2e-7f3a9c12b4d5e6f7",
    "session_cookie": "sess-e2e-Zq81Xw72Lm",
    "query_token": "qt-e2e-55aa77bb99cc",
    "body_password": "pw-e2e-Tr0ub4dor-3",
    "card": "453957876362148" + luhn_check_digit("453957876362148"),
    "email": "ann.e2e@mail.example.org",
    "db_password": "dbpw-e2e-9Kx2Lq7",
    "stripe_key": "sk_live_e2eX9a8B7c6D5e4F3g2H1i0J",
    "breadcrumb_key": "crumb-e2e-0a9b8c7d6e",
    "log_token": "logtok-e2e-1f2e3d4c5b",
    "metric_password": "mpw-e2e-Qz7Lk2Vb9",
}
REQUEST_ID = "req-e2e-7f3a9c12"
USER_ID = "user-48213"


class Checkout(BaseModel):
    sku: str
    password: str
    card: str
    contact: str


def make_app(dsn: str) -> FastAPI:
    app = FastAPI()
    # before the routes: sentry-sdk's FastAPI integration attaches the request body only to routes
    # declared after sentry_sdk.init
    fastapi_sentry.install(
        app,
        dsn=dsn,
        environment="test",
        enable_tracing=True,
        traces_sample_rate=1.0,
        enable_logs=True,
    )

    @app.post("/orders/{order_id}/checkout")
    async def checkout(order_id: str, body: Checkout, request: Request) -> dict[str, str]:
        request.state.user = {"id": USER_ID, "email": SECRETS["email"], "username": "ann"}
        scope = request.scope  # the ASGI headers, as (bytes, bytes) tuples, become a frame local
        database_url = f"postgresql://shop:{SECRETS['db_password']}@db.internal:5432/shop"
        sentry_sdk.add_breadcrumb(
            category="partner", message=f"calling partner with api_key={SECRETS['breadcrumb_key']}"
        )
        logging.getLogger("shop.partner").warning(
            "partner login with token=%s for %s", SECRETS["log_token"], SECRETS["email"]
        )
        # sentry-sdk sends metrics by default; their attributes are whatever the caller passed
        sentry_sdk.metrics.count(
            "checkout.failed",
            1,
            attributes={
                "card": body.card,
                "customer": SECRETS["email"],
                "detail": f"retry with password {SECRETS['metric_password']}",
                "sku": body.sku,
            },
        )
        assert scope["headers"]
        assert database_url
        raise RuntimeError(
            f"charge for card {body.card} failed with key {SECRETS['stripe_key']} ({order_id})"
        )

    return app


@pytest.fixture
def server_url(sentry_receiver: Receiver) -> Iterator[str]:
    with serve(make_app(sentry_receiver.dsn)) as url:
        yield url


def test_what_goes_over_the_wire_holds_no_planted_secret(
    server_url: str, sentry_receiver: Receiver
) -> None:
    with httpx.Client(base_url=server_url, timeout=10) as client:
        response = client.post(
            "/orders/ORD-2024-118734/checkout",
            params={"token": SECRETS["query_token"], "page": "2"},
            headers={
                "Authorization": f"Bearer {SECRETS['jwt']}",
                "X-Api-Key": SECRETS["api_key_header"],
                "X-Request-ID": REQUEST_ID,
                "Cookie": f"theme=dark; session={SECRETS['session_cookie']}",
            },
            json={
                "sku": "SKU-88172-BLK",
                "password": SECRETS["body_password"],
                "card": SECRETS["card"],
                "contact": SECRETS["email"],
            },
        )
    assert response.status_code == 500
    sentry_sdk.flush(timeout=10)
    events = sentry_receiver.wait_for_items("event", 1, timeout=15)
    sentry_receiver.wait_for_items("transaction", 1, timeout=15)
    sentry_receiver.wait_for_items("log", 1, timeout=15)
    (metrics,) = sentry_receiver.wait_for_items("trace_metric", 1, timeout=15)

    wire = b"\n".join(sentry_receiver.bodies)
    leaked = {name: value for name, value in SECRETS.items() if value.encode() in wire}
    assert leaked == {}

    # the error is still worth reading
    event = events[0]
    assert event["transaction"] == "/orders/{order_id}/checkout"
    assert event["tags"]["request_id"] == REQUEST_ID
    assert event["user"]["id"] == USER_ID
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert "[Filtered]" in event["exception"]["values"][-1]["value"]
    assert "ORD-2024-118734" in event["exception"]["values"][-1]["value"]
    assert event["request"]["query_string"] == "token=[Filtered]&page=2"
    assert event["request"]["data"] == {
        "sku": "SKU-88172-BLK",
        "password": "[Filtered]",
        "card": "[Filtered]",
        "contact": "[Filtered]",
    }
    assert event["request"]["headers"]["x-request-id"] == REQUEST_ID
    # and the places the secrets travelled really were there to scrub
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    handler = next(f for f in frames if f.get("function") == "checkout")
    assert {"scope", "database_url", "body"} <= set(handler["vars"])
    assert "SKU-88172-BLK" in handler["vars"]["body"]  # the model's repr: secrets out, the rest in
    assert b"partner login with token=" in wire
    assert b"calling partner with api_key=" in wire
    (metric,) = [m for m in metrics["items"] if m["name"] == "checkout.failed"]
    assert metric["attributes"]["sku"]["value"] == "SKU-88172-BLK"
    assert metric["attributes"]["detail"]["value"].startswith("retry with password ")
