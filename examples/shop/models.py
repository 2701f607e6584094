"""Tables, the engine and a seed catalogue (SQLAlchemy 2)."""

from __future__ import annotations

import os
from functools import cache

from sqlalchemy import ForeignKey, String, create_engine, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from .auth import hash_password
from .settings import ShopSettings


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int]
    stock: Mapped[int]


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int]
    total_cents: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default="pending")


def make_engine(settings: ShopSettings) -> Engine:
    options = {}
    if settings.database_schema:
        # every table lives in that schema, without naming it in the models
        options["schema_translate_map"] = {None: settings.database_schema}
    connect_args = (
        {"check_same_thread": False} if settings.database_url.startswith("sqlite") else {}
    )
    return create_engine(
        settings.database_url, execution_options=options, connect_args=connect_args
    )


_sessions: dict[tuple[int, str, str | None], sessionmaker[Session]] = {}


def sessions(settings: ShopSettings) -> sessionmaker[Session]:
    """One engine per process: a Celery prefork child must not reuse its parent's connections."""
    key = (os.getpid(), settings.database_url, settings.database_schema)
    if key not in _sessions:
        _sessions[key] = sessionmaker(make_engine(settings), expire_on_commit=False)
    return _sessions[key]


def create_tables(engine: Engine, schema: str | None) -> None:
    if schema:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    Base.metadata.create_all(engine)


CATALOGUE = [
    ("Espresso beans 1 kg", 2490, 40),
    ("Milk frother", 5900, 3),
    ("Paper filters", 450, 500),
]
#: Seeded users; the second still has a password hash from the old system.
USERS = [
    ("ada@example.com", "Ada Lovelace", "correct horse battery staple"),
    ("grace@example.com", "Grace Hopper", None),
]


@cache
def _hashed(password: str) -> str:
    return hash_password(password)


def seed(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as db:
        if db.scalar(select(Product.id).limit(1)) is not None:
            return
        db.add_all(Product(name=n, price_cents=p, stock=s) for n, p, s in CATALOGUE)
        for email, name, password in USERS:
            digest = _hashed(password) if password else "md5$5f4dcc3b5aa765d61d8327deb882cf99"
            db.add(User(email=email, name=name, password_hash=digest))
