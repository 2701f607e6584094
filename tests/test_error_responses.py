"""Every 5xx is reported once (issue 12, point 3), through a real uvicorn and a real receiver.

An app's own exception handlers, the opt-in ids in 5xx answers, the status-code notation, and
validation errors when 422 is listed. Each test counts what the receiver got after the server's
graceful stop (which flushes), so "once" and "never" are counts, not waits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

import fastapi_sentry
from fastapi_sentry import load_settings
from tests.support.receiver import Receiver
from tests.support.server import serve

README = Path(__file__).resolve().parent.parent / "README.md"
PASSWORD = "hunter2-correct-horse"
CARD = "4111 1111 1111 1111"


class DomainError(Exception):
    """What a service raises for a broken business rule; its handler answers a 500 JSON body."""


class RetryLaterError(Exception):
    pass


class MissingThingError(Exception):
    pass


class Payment(BaseModel):
    amount: int
    card_number: int
    password: str = Field(min_length=30)


def make_app() -> FastAPI:
    app = FastAPI()

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse({"error": "domain", "message": str(exc)}, status_code=500)

    @app.exception_handler(RetryLaterError)
    def retry_later(request: Request, exc: RetryLaterError) -> JSONResponse:
        raise exc  # a handler that gives up: the request path reports what escapes

    @app.exception_handler(MissingThingError)
    async def missing(request: Request, exc: MissingThingError) -> JSONResponse:
        return JSONResponse({"error": "not found"}, status_code=404)

    @app.exception_handler(503)
    async def maintenance(request: Request, exc: Exception) -> PlainTextResponse:
        return PlainTextResponse("down for maintenance", status_code=503)

    @app.get("/ledger/{account}")
    async def ledger(account: str) -> None:
        raise DomainError(f"ledger of {account} out of balance")

    @app.get("/retry")
    async def retry() -> None:
        raise RetryLaterError("the bank said later")

    @app.get("/missing")
    async def missing_thing() -> None:
        raise MissingThingError("no such order")

    @app.get("/maintenance")
    async def in_maintenance() -> None:
        raise HTTPException(status_code=503, detail="maintenance")

    @app.get("/upstream")
    async def upstream() -> None:
        raise HTTPException(status_code=502, detail="upstream down")

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("unhandled crash")

    @app.post("/payments")
    async def pay(payment: Payment) -> dict[str, int]:
        return {"amount": payment.amount}

    @app.post("/refunds")
    async def refund(payment: Payment) -> dict[str, int]:
        return {"amount": payment.amount}

    @app.get("/http-422")
    async def http_422() -> None:
        raise HTTPException(  # FastAPI's, a Starlette HTTPException whose detail may be a list
            status_code=422,
            detail=[{"loc": ["query", "token"], "msg": "bad token", "type": "value_error",
                     "input": "tok_" + PASSWORD}],
        )  # fmt: skip

    @app.get("/starlette-422")
    async def starlette_422() -> None:
        raise StarletteHTTPException(status_code=422, detail="token rejected")

    return app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def run(receiver: Receiver, calls: list[tuple[str, str, Any]], **settings: Any) -> list[Any]:
    """Serve a fresh app, make the calls, stop the server (flushing); the responses in order."""
    app = make_app()
    fastapi_sentry.install(app, dsn=receiver.dsn, traces_sample_rate=0.0, **settings)
    responses = []
    # a connection per request: uvicorn closes one whose request raised out of the app
    with serve(app) as url, httpx.Client(base_url=url, headers={"connection": "close"}) as client:
        for method, path, body in calls:
            responses.append(client.request(method, path, json=body))
    return responses


def errors(receiver: Receiver) -> list[dict[str, Any]]:
    return receiver.envelope_items("event")


def exception_of(event: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = event["exception"]["values"][-1]
    return value


# --- an app's own handlers ----------------------------------------------------------------------


def test_a_handler_answering_500_is_reported_once_with_the_original_exception(
    receiver: Receiver,
) -> None:
    (response,) = run(receiver, [("GET", "/ledger/acme", None)])
    assert response.status_code == 500
    assert response.json() == {"error": "domain", "message": "ledger of acme out of balance"}
    (event,) = errors(receiver)
    exception = exception_of(event)
    assert exception["type"] == "DomainError"
    assert exception["value"] == "ledger of acme out of balance"
    frames = [frame["function"] for frame in exception["stacktrace"]["frames"]]
    assert frames[-1] == "ledger"  # the raise in the endpoint, not our wrapper
    assert exception["mechanism"] == {"type": "starlette", "handled": True}
    assert event["tags"]["http.status_code"] == "500"
    assert event["tags"]["endpoint"] == "GET /ledger/{account}"
    assert event["tags"]["request_id"] == response.headers["x-request-id"]


def test_a_handler_that_re_raises_is_reported_once(receiver: Receiver) -> None:
    (response,) = run(receiver, [("GET", "/retry", None)])
    assert response.status_code == 500
    (event,) = errors(receiver)
    assert exception_of(event)["type"] == "RetryLaterError"


def test_status_handlers_report_failed_statuses_and_only_those(receiver: Receiver) -> None:
    missing, maintenance = run(receiver, [("GET", "/missing", None), ("GET", "/maintenance", None)])
    assert (missing.status_code, maintenance.status_code) == (404, 503)
    assert maintenance.text == "down for maintenance"  # the app's answer, untouched when off
    (event,) = errors(receiver)  # the 503 only: a handler answering 404 is the client's
    assert exception_of(event)["type"] == "HTTPException"
    assert event["tags"]["http.status_code"] == "503"


@pytest.mark.parametrize("response_ids", [False, True])
def test_an_apps_catch_all_handler_is_reported_once(receiver: Receiver, response_ids: bool) -> None:
    """`@app.exception_handler(Exception)` belongs to ServerErrorMiddleware, which re-raises."""
    app = FastAPI()

    @app.exception_handler(Exception)
    async def everything(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "internal", "kind": type(exc).__name__}, status_code=500)

    @app.get("/divide")
    async def divide() -> float:
        return 1 / 0

    fastapi_sentry.install(
        app, dsn=receiver.dsn, traces_sample_rate=0.0, error_response_ids=response_ids
    )
    with serve(app) as url:
        response = httpx.get(url + "/divide")
    assert response.json() == {"error": "internal", "kind": "ZeroDivisionError"}
    (event,) = errors(receiver)
    assert exception_of(event)["type"] == "ZeroDivisionError"
    assert exception_of(event)["mechanism"]["handled"] is False
    if response_ids:
        assert response.headers["x-sentry-event-id"] == event["event_id"]
    else:
        assert "x-sentry-event-id" not in response.headers


# --- SENTRY_ERROR_RESPONSE_IDS ------------------------------------------------------------------


def test_ids_in_5xx_answers_are_off_by_default(receiver: Receiver) -> None:
    (crash,) = run(receiver, [("GET", "/crash", None)])
    assert crash.text == "Internal Server Error"
    assert "x-sentry-event-id" not in crash.headers
    assert len(errors(receiver)) == 1


def test_5xx_answers_carry_the_event_and_request_ids_when_asked(receiver: Receiver) -> None:
    crash, ledger, maintenance, upstream, missing = run(
        receiver,
        [
            ("GET", "/crash", None),
            ("GET", "/ledger/acme", None),
            ("GET", "/maintenance", None),
            ("GET", "/upstream", None),
            ("GET", "/missing", None),
        ],
        error_response_ids=True,
    )
    by_id = {event["event_id"]: event for event in errors(receiver)}
    assert len(by_id) == 4 == len(errors(receiver))  # marked, so not reported a second time

    body = crash.json()
    assert crash.status_code == 500
    assert body == {
        "detail": "Internal Server Error",
        "event_id": body["event_id"],
        "request_id": crash.headers["x-request-id"],
    }
    assert exception_of(by_id[body["event_id"]])["type"] == "RuntimeError"
    assert by_id[body["event_id"]]["tags"]["request_id"] == crash.headers["x-request-id"]
    assert crash.headers["x-sentry-event-id"] == body["event_id"]

    # the app's own JSON body is kept; the id comes as a header
    assert ledger.json() == {"error": "domain", "message": "ledger of acme out of balance"}
    assert exception_of(by_id[ledger.headers["x-sentry-event-id"]])["type"] == "DomainError"

    # a text answer becomes JSON, keeping its text as the detail
    answer = maintenance.json()
    assert maintenance.status_code == 503
    assert answer["detail"] == "down for maintenance"
    assert answer["request_id"] == maintenance.headers["x-request-id"]
    assert by_id[answer["event_id"]]["tags"]["http.status_code"] == "503"

    # FastAPI's own {"detail": ...} gains the ids
    assert upstream.json() == {
        "detail": "upstream down",
        "event_id": upstream.headers["x-sentry-event-id"],
        "request_id": upstream.headers["x-request-id"],
    }
    assert exception_of(by_id[upstream.json()["event_id"]])["value"] == "upstream down"

    assert missing.json() == {"error": "not found"}  # not a 5xx: left alone
    assert "x-sentry-event-id" not in missing.headers


# --- the status-code notation --------------------------------------------------------------------


def test_the_readmes_status_code_examples_load() -> None:
    examples = re.findall(r"SENTRY_FAILED_REQUEST_STATUS_CODES=([^\s`|]+)", README.read_text())
    assert "401,500-599" in examples
    for example in examples:
        assert load_settings(failed_request_status_codes=example).failed_request_status_codes


# --- validation errors (422 listed) ---------------------------------------------------------------

BAD_PAYMENT = {"amount": 10, "card_number": CARD, "password": PASSWORD}


def _secrets_in(raw: bytes) -> list[str]:
    text = raw.decode("utf-8", "replace")
    return [s for s in (PASSWORD, CARD, CARD.replace(" ", ""), "hunter2") if s in text]


def test_422_is_not_reported_unless_listed(receiver: Receiver) -> None:
    invalid, crash = run(receiver, [("POST", "/payments", BAD_PAYMENT), ("GET", "/crash", None)])
    assert (invalid.status_code, crash.status_code) == (422, 500)
    assert [exception_of(e)["type"] for e in errors(receiver)] == ["RuntimeError"]


def test_listed_422_reports_field_errors_with_the_submitted_values_scrubbed(
    receiver: Receiver,
) -> None:
    responses = run(
        receiver,
        [
            ("POST", "/payments", BAD_PAYMENT),
            ("POST", "/payments", {**BAD_PAYMENT, "password": "another-" + PASSWORD}),
            ("POST", "/refunds", BAD_PAYMENT),
        ],
        failed_request_status_codes="422,500-599",
    )
    assert [r.status_code for r in responses] == [422, 422, 422]
    assert responses[0].json()["detail"][0]["loc"] == ["body", "card_number"]  # FastAPI's own
    first, second, refund = errors(receiver)
    assert _secrets_in(receiver.raw()) == []

    exception = exception_of(first)
    assert exception["type"] == "RequestValidationError"
    assert exception["value"] == (
        "2 validation errors: body.card_number (int_parsing), body.password (string_too_short)"
    )
    assert first["tags"]["http.status_code"] == "422"
    context = first["contexts"]["validation"]
    assert [(e["loc"], e["type"]) for e in context["errors"]] == [
        ("body.card_number", "int_parsing"),
        ("body.password", "string_too_short"),
    ]
    assert all(e["msg"] for e in context["errors"])
    assert context["input"] == {"body.card_number": "[Filtered]", "body.password": "[Filtered]"}
    # grouped by route, whatever was submitted
    assert (
        first["fingerprint"]
        == second["fingerprint"]
        == [
            "RequestValidationError",
            "POST /payments",
        ]
    )
    assert refund["fingerprint"] == ["RequestValidationError", "POST /refunds"]


def test_listed_422_reports_http_exceptions_with_their_field_errors(receiver: Receiver) -> None:
    responses = run(
        receiver,
        [("GET", "/http-422", None), ("GET", "/starlette-422", None)],
        failed_request_status_codes=[422],
    )
    assert [r.status_code for r in responses] == [422, 422]
    with_errors, plain = errors(receiver)
    assert with_errors["contexts"]["validation"]["errors"] == [
        {"loc": "query.token", "msg": "bad token", "type": "value_error"}
    ]
    assert with_errors["contexts"]["validation"]["input"] == {"query.token": "[Filtered]"}
    assert exception_of(with_errors)["value"] == "1 validation error: query.token (value_error)"
    assert _secrets_in(receiver.raw()) == []
    assert exception_of(plain)["value"] == "token rejected"
    assert "validation" not in plain["contexts"]
