"""The shop API: `uvicorn --factory examples.shop.app:create_app`.

Sentry is wired in one line (`fastapi_sentry.install(app)`); everything else is ordinary FastAPI.
Each endpoint shows one thing Sentry should (or should not) see:

=================================  ===============================================================
GET  /api/hello                    nothing: a trivial endpoint (the benchmark's baseline)
GET  /api/products/{id}            a SQL query and a Redis command, as spans
GET  /api/products/{id}/shipping   a handled error, reported with context, then a fallback answer
POST /api/auth/login               an unhandled error for accounts with a legacy password hash
POST /api/orders                   business breadcrumbs, an external call, a low-stock message,
                                   a Celery task; a provider outage becomes an external API error
GET  /api/orders/{id}              a 404 for someone else's order: not reported
GET  /api/reports/sales            a slow operation (the exchange-rate provider is slow)
POST /api/webhooks/payments        an error log line becomes an event (the payload is scrubbed)
GET  /health, /static/*            never traced
=================================  ===============================================================
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import fastapi_sentry
from fastapi_sentry import (
    add_health_check,
    capture_exception,
    capture_message,
    operation,
    track_business_event,
)

from . import tasks
from .auth import InvalidTokenError, decode_token, issue_token, verify_password
from .external import ExternalServiceError, Provider
from .models import Order, Product, User, create_tables, seed, sessions
from .settings import ShopSettings

logger = logging.getLogger(__name__)

LOW_STOCK = 3
SHIPPING_RATES = {"DE": 490, "FR": 590, "NL": 490, "US": 1990}
FLAT_SHIPPING_RATE = 2500


class ShippingRateMissingError(LookupError):
    pass


class LoginRequest(BaseModel):
    email: str
    password: str


class OrderRequest(BaseModel):
    product_id: int
    quantity: int = Field(ge=1, le=10)
    card_token: str


# --- dependencies ---------------------------------------------------------------------------


def get_settings(request: Request) -> ShopSettings:
    settings: ShopSettings = request.app.state.settings
    return settings


def get_db(settings: Annotated[ShopSettings, Depends(get_settings)]) -> Iterator[Session]:
    with sessions(settings)() as db:
        yield db


def get_provider(request: Request) -> Provider:
    provider: Provider = request.app.state.provider
    return provider


Db = Annotated[Session, Depends(get_db)]
Settings = Annotated[ShopSettings, Depends(get_settings)]


def current_user(request: Request, db: Db, settings: Settings) -> User:
    """The user of the bearer token. Putting it on `request.state.user` is all Sentry needs."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Bearer token required")
    try:
        claims = decode_token(token, settings.jwt_secret.get_secret_value())
    except InvalidTokenError:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid token") from None
    user = db.get(User, int(claims["sub"]))
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Unknown user")
    request.state.user = user
    return user


CurrentUser = Annotated[User, Depends(current_user)]


# --- the app --------------------------------------------------------------------------------


def create_app(settings: ShopSettings | None = None, *, with_sentry: bool = True) -> FastAPI:
    """The shop; `with_sentry=False` leaves fastapi-sentry out (the benchmark's baseline)."""
    settings = settings or ShopSettings()
    logging.getLogger(__package__).setLevel(logging.INFO)
    cache = redis.Redis.from_url(settings.redis_url) if settings.redis_url else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        session_factory = sessions(settings)
        create_tables(session_factory.kw["bind"], settings.database_schema)
        seed(session_factory)
        yield
        app.state.provider.close()
        if cache is not None:
            cache.close()

    app = FastAPI(title="shop", lifespan=lifespan)
    app.state.settings = settings
    app.state.provider = Provider(settings)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    if with_sentry:
        # The one line: error tracking, tracing, request ids, users, scrubbing, /health.
        fastapi_sentry.install(app)
        add_health_check(app, "database", lambda: _database_ok(settings))
        if cache is not None:
            add_health_check(app, "redis", cache.ping, critical=False)

    @app.get("/api/hello")
    async def hello() -> dict[str, str]:
        return {"service": "shop", "status": "ok"}

    @app.get("/api/products/{product_id}")
    def get_product(product_id: int, db: Db) -> dict[str, Any]:
        product = db.get(Product, product_id)
        if product is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "No such product")
        views = cache.incr(f"shop:views:{product_id}") if cache is not None else None
        return {
            "id": product.id,
            "name": product.name,
            "price_cents": product.price_cents,
            "in_stock": product.stock > 0,
            "views": views,
        }

    @app.get("/api/products/{product_id}/shipping")
    def shipping_quote(product_id: int, country: str, db: Db) -> dict[str, Any]:
        if db.get(Product, product_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "No such product")
        try:
            rate = _shipping_rate(country)
        except ShippingRateMissingError as exc:
            # The customer still gets a quote; we want to know the rate table has a gap.
            capture_exception(exc, product_id=product_id, country=country)
            rate = FLAT_SHIPPING_RATE
        return {"product_id": product_id, "country": country, "shipping_cents": rate}

    @app.post("/api/auth/login")
    def login(body: LoginRequest, db: Db, settings: Settings) -> dict[str, str]:
        user = db.scalar(select(User).where(User.email == body.email))
        password = body.password
        # A legacy hash raises here, unhandled: Sentry gets it, with this frame's variables
        # (the password among them, which the scrubber masks).
        if user is None or not verify_password(password, user.password_hash):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Wrong email or password")
        token = issue_token(
            {"sub": str(user.id), "email": user.email},
            settings.jwt_secret.get_secret_value(),
            settings.token_ttl_seconds,
        )
        return {"access_token": token, "token_type": "bearer"}

    @app.post("/api/orders", status_code=status.HTTP_201_CREATED, response_model=None)
    def place_order(
        body: OrderRequest,
        user: CurrentUser,
        db: Db,
        provider: Annotated[Provider, Depends(get_provider)],
    ) -> dict[str, Any] | JSONResponse:
        product = db.get(Product, body.product_id, with_for_update=True)
        if product is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "No such product")
        if product.stock < body.quantity:
            raise HTTPException(status.HTTP_409_CONFLICT, "Not enough stock")
        total = product.price_cents * body.quantity
        track_business_event("checkout started", product_id=product.id, total_cents=total)
        try:
            charge = provider.charge(total, body.card_token)
        except ExternalServiceError:
            # already reported by the provider client as an external API error
            return JSONResponse(
                {"detail": "The payment provider is unavailable; try again later."},
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        track_business_event("payment captured", charge_id=charge["id"], total_cents=total)
        product.stock -= body.quantity
        order = Order(
            user_id=user.id,
            product_id=product.id,
            quantity=body.quantity,
            total_cents=total,
            status="paid",
        )
        db.add(order)
        db.commit()
        track_business_event("order placed", order_id=order.id)
        if product.stock <= LOW_STOCK:
            capture_message(
                "Product stock is low", "warning", product_id=product.id, stock=product.stock
            )
        tasks.send_receipt.delay(order.id)
        return {"id": order.id, "total_cents": total, "status": order.status}

    @app.get("/api/orders/{order_id}")
    def get_order(order_id: int, user: CurrentUser, db: Db) -> dict[str, Any]:
        order = db.get(Order, order_id)
        if order is None or order.user_id != user.id:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "No such order")
        return {"id": order.id, "total_cents": order.total_cents, "status": order.status}

    @app.get("/api/reports/sales")
    def sales_report(
        db: Db,
        settings: Settings,
        provider: Annotated[Provider, Depends(get_provider)],
        currency: str = "EUR",
    ) -> dict[str, Any]:
        # Timed, traced, and reported as slow above the threshold.
        with operation("sales report", threshold_ms=settings.slow_report_ms, currency=currency):
            total = db.scalar(select(func.coalesce(func.sum(Order.total_cents), 0))) or 0
            rate = provider.exchange_rate(currency)
        return {"currency": currency, "total": round(total * rate / 100, 2)}

    @app.post("/api/webhooks/payments", status_code=status.HTTP_202_ACCEPTED)
    async def payment_webhook(request: Request) -> dict[str, str]:
        payload = await request.json()
        logger.info("payment webhook received: %s", payload)
        kind = payload.get("type")
        if kind not in ("charge.succeeded", "charge.refunded"):
            logger.error("Unknown payment webhook type %r", kind)
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "Unknown webhook type")
        return {"status": "accepted"}

    return app


def _shipping_rate(country: str) -> int:
    try:
        return SHIPPING_RATES[country.upper()]
    except KeyError:
        raise ShippingRateMissingError(f"no shipping rate for country {country!r}") from None


def _database_ok(settings: ShopSettings) -> bool:
    with sessions(settings)() as db:
        return db.scalar(select(1)) == 1
