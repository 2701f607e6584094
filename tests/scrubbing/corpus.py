"""Planted-secret corpus for the scrubber: realistic events, what must go and what must stay.

Every case is one event shaped like what before_send receives (sentry-sdk has already serialized it:
frame locals are reprs, ASGI header tuples are lists of "b'...'" strings) with one secret planted in
one location. Every event also carries the same benign values, which must all survive. The scorer
works on any scrub callable, so the same corpus scores our Scrubber, sentry-sdk's EventScrubber and
the seeds' top-level filter (tests/scrubbing/test_corpus.py, benchmarks/bench_scrubbing.py).
"""

from __future__ import annotations

import base64
import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]
ScrubFn = Callable[[Event], Event]

# --- benign values: all of them are in every event and none may be masked -------------------------

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
COMMIT_SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
ORDER_ID = "ORD-2024-118734"
NOT_A_CARD = "4000123412341236"  # a card-shaped order number that fails the Luhn check
MS_TIMESTAMP = "1715682731000"

BENIGN: tuple[str, ...] = (
    TRACE_ID,
    SPAN_ID,
    COMMIT_SHA,
    ORDER_ID,
    NOT_A_CARD,
    MS_TIMESTAMP,
    "SKU-88172-BLK",
    "SKU-10293-RED",
    "/api/v1/orders/{order_id}/items/{item_id}",
    "process_payment_intent",
    "reserve_inventory",
    "handle_checkout",
    "app.services.payments",
    "app/services/payments.py",
    "PaymentDeclinedError",
    "upstream returned status 502",
    "req-7f3a9c12",
    "user-48213",
    "3f1c2d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f",
    "shop-api@1.42.0",
    "eu-west-1",
    "2024-05-14T10:32:11Z",
    "Mozilla/5.0 (X11; Linux x86_64; rv:126.0)",
    "application/json",
    "api.shop.example",
    "127.0.0.1:8000",
    "SELECT id, status FROM orders WHERE id = %s",
    "Reserved 2 units of SKU-88172-BLK for ORD-2024-118734",
    "    intent = stripe.PaymentIntent.create(amount=amount, currency=currency)",
    "https://github.com/acme/shop/commit/9fceb02d0ae598e95dc970b74767f19372d61af8",
    "pub-widget-shop-eu",
    '"author": "Ada Lovelace"',
    '"monkey": "capuchin-7"',
    '"keyboard_layout": "dvorak-intl"',
    '"tokenizer": "cl100k_base"',
    '"sessions": 3',
    '"token_count": 1834',
    '"max_tokens": 4096',
    '"token_type": "bearer"',
    '"auth_method": "oauth2"',
    '"oauth_provider": "github"',
    '"password_min_length": 12',
    '"session_count": 7',
    '"token_expires_in": 3600',
    '"cache_key": "orders:ORD-2024-118734:v3"',
    '"idempotency_key": "idem-5c1e2b77"',
    '"primary_key": 118734',
    '"public_key": "pub-widget-shop-eu"',
    '"currency": "EUR"',
    '"amount": 4999',
    '"http.status_code": 502',
    '"db.system": "postgresql"',
    '"plan": "Basic subscription"',
    '"retry_count": 3',
    '"status": "declined"',
    '"route": "/api/v1/orders/{order_id}"',
    '"id": "user-48213"',
    "Traceback (most recent call last)",
    "Connect call failed ('127.0.0.1', 5432)",
)


def base_event() -> Event:
    """An error event from a FastAPI service as before_send sees it, with benign values only."""
    frames = [
        {
            "filename": "app/services/payments.py",
            "abs_path": "/srv/app/app/services/payments.py",
            "function": "process_payment_intent",
            "module": "app.services.payments",
            "lineno": 88,
            "pre_context": ["async def process_payment_intent(order, amount, currency):"],
            "context_line": (
                "    intent = stripe.PaymentIntent.create(amount=amount, currency=currency)"
            ),
            "post_context": ["    return intent"],
            "in_app": True,
            "vars": {
                "order_id": f"'{ORDER_ID}'",
                "tokenizer": "'cl100k_base'",
                "amount": "4999",
                "currency": "'EUR'",
                "reference": f"'{NOT_A_CARD}'",
                "created_ms": MS_TIMESTAMP,
            },
        },
        {
            "filename": "app/api/orders.py",
            "function": "handle_checkout",
            "module": "app.api.orders",
            "lineno": 41,
            "context_line": "    await reserve_inventory(order)",
            "vars": {
                "sku": "'SKU-10293-RED'",
                "entity_id": "'3f1c2d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f'",
            },
        },
        {"filename": "app/services/stock.py", "function": "reserve_inventory", "lineno": 12},
    ]
    return {
        "event_id": "c5a1b2c3d4e5f60718293a4b5c6d7e8f",
        "level": "error",
        "platform": "python",
        "timestamp": "2024-05-14T10:32:11Z",
        "release": "shop-api@1.42.0",
        "environment": "production",
        "transaction": "/api/v1/orders/{order_id}/items/{item_id}",
        "server_name": "api.shop.example",
        "request": {
            "method": "POST",
            "url": f"https://api.shop.example/api/v1/orders/{ORDER_ID}",
            "query_string": "page=2&sort=created",
            "headers": {
                "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:126.0)",
                "Content-Type": "application/json",
                "X-Request-Id": "req-7f3a9c12",
                "Host": "api.shop.example",
            },
            "cookies": {},
            "data": {
                "order_id": ORDER_ID,
                "items": [{"sku": "SKU-88172-BLK", "qty": 2}, {"sku": "SKU-10293-RED", "qty": 1}],
                "amount": 4999,
                "currency": "EUR",
                "author": "Ada Lovelace",
                "monkey": "capuchin-7",
                "keyboard_layout": "dvorak-intl",
                "plan": "Basic subscription",
                "idempotency_key": "idem-5c1e2b77",
                "public_key": "pub-widget-shop-eu",
            },
            "env": {"SERVER_NAME": "api.shop.example", "SERVER_PORT": "8000"},
        },
        "user": {"id": "user-48213"},
        "exception": {
            "values": [
                {
                    "type": "ConnectionRefusedError",
                    "value": "[Errno 111] Connect call failed ('127.0.0.1', 5432)",
                    "module": "builtins",
                },
                {
                    "type": "PaymentDeclinedError",
                    "value": "upstream returned status 502",
                    "module": "app.services.payments",
                    "stacktrace": {"frames": frames},
                },
            ]
        },
        "breadcrumbs": {
            "values": [
                {
                    "category": "app",
                    "message": "Reserved 2 units of SKU-88172-BLK for ORD-2024-118734",
                    "level": "info",
                    "timestamp": "2024-05-14T10:32:10Z",
                },
                {
                    "type": "http",
                    "category": "httpx",
                    "data": {
                        "http.method": "POST",
                        "url": "https://api.payments.example/v1/intents",
                        "http.status_code": 502,
                    },
                },
            ]
        },
        "contexts": {
            "trace": {"trace_id": TRACE_ID, "span_id": SPAN_ID, "op": "http.server"},
            "runtime": {"name": "CPython", "version": "3.11.9"},
            "llm": {"token_count": 1834, "max_tokens": 4096, "tokenizer": "cl100k_base"},
        },
        "tags": {
            "route": "/api/v1/orders/{order_id}",
            "region": "eu-west-1",
            "auth_method": "oauth2",
            "commit": "https://github.com/acme/shop/commit/" + COMMIT_SHA,
        },
        "extra": {
            "sessions": 3,
            "session_count": 7,
            "token_type": "bearer",
            "token_expires_in": 3600,
            "oauth_provider": "github",
            "password_min_length": 12,
            "cache_key": f"orders:{ORDER_ID}:v3",
            "primary_key": 118734,
            "retry_count": 3,
            "status": "declined",
            "note": "Traceback (most recent call last)",
            "bind": "127.0.0.1:8000",
        },
        "logentry": {"message": "checkout failed for %s", "params": [ORDER_ID]},
        "spans": [
            {
                "op": "db",
                "description": "SELECT id, status FROM orders WHERE id = %s",
                "data": {"db.system": "postgresql"},
                "trace_id": TRACE_ID,
                "span_id": SPAN_ID,
            }
        ],
    }


# --- secret families ------------------------------------------------------------------------------

_rng = random.Random(20240514)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _rand(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def luhn_check_digit(body: str) -> str:
    """The digit that makes `body + digit` pass the Luhn check (written out here, independently of
    the scrubber's own luhn_ok, so the corpus cannot inherit a bug from it)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        n = int(ch)
        if i % 2 == 0:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return str((10 - total % 10) % 10)


def _luhn_complete(prefix: str, length: int) -> str:
    body = prefix + "".join(_rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return body + luhn_check_digit(body)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Planted:
    """The secret a checker looks for, and how it appears in a dict value and in prose."""

    secret: str
    value: str
    prose: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Family:
    name: str
    pii: bool
    make: Callable[[int], Planted]


def _keyed(
    keys: tuple[str, ...], make_secret: Callable[[int], str], sep: str = "="
) -> Callable[[int], Planted]:
    def make(i: int) -> Planted:
        secret = make_secret(i)
        key = keys[i % len(keys)]
        return Planted(secret, secret, f"{key}{sep}{secret}", keys)

    return make


NEUTRAL_KEYS = ("detail", "note", "value", "arg", "upstream")


def _shaped(make_value: Callable[[int], tuple[str, str]], prose: str) -> Callable[[int], Planted]:
    """A secret recognisable by its shape alone, planted under keys that say nothing."""

    def make(i: int) -> Planted:
        secret, value = make_value(i)
        return Planted(secret, value, prose.format(value=value), NEUTRAL_KEYS)

    return make


def _jwt(i: int) -> tuple[str, str]:
    head = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    body = _b64url(json.dumps({"sub": f"user-{i}", "iat": 1715682731 + i}).encode())
    token = f"{head}.{body}.{_rand(43, _ALNUM + '-_')}"
    return token, f"Bearer {token}"


def _basic(i: int) -> tuple[str, str]:
    cred = base64.b64encode(f"svc-{i}:{_rand(12)}".encode()).decode()
    return cred, f"Basic {cred}"


def _pem(i: int) -> tuple[str, str]:
    body = _rand(64, _ALNUM + "+/")
    block = (
        f"-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA{body}\n-----END RSA PRIVATE KEY-----"
    )
    return body, block


def _dsn(i: int) -> tuple[str, str]:
    key = _rand(32, "0123456789abcdef")
    return key, f"https://{key}@o{1000 + i}.ingest.sentry.io/{4500 + i}"


def _db_url(i: int) -> tuple[str, str]:
    password = "Pg" + _rand(14)
    return password, f"postgresql://shop:{password}@db-{i}.internal:5432/shop"


def _card(i: int) -> tuple[str, str]:
    number = _luhn_complete(("4", "51", "52", "37", "6011")[i % 5], 15 if i % 5 == 3 else 16)
    return number, number


def _spaced_card(i: int) -> tuple[str, str]:
    number = _luhn_complete("4", 16)
    spaced = " ".join(number[j : j + 4] for j in range(0, 16, 4))
    return spaced, spaced


def _raw(make_secret: Callable[[int], str]) -> Callable[[int], tuple[str, str]]:
    def make(i: int) -> tuple[str, str]:
        s = make_secret(i)
        return s, s

    return make


FAMILIES: tuple[Family, ...] = (
    Family(
        "password",
        False,
        _keyed(
            (
                "password",
                "db_password",
                "newPassword",
                "PASSWORD",
                "passwd",
                "user-password",
                "mysql_pwd",
                "password2",
            ),
            lambda i: f"Tr0ub4dor&{i:03d}x{_rand(4)}",
        ),
    ),
    Family(
        "api_key",
        False,
        _keyed(
            ("X-Api-Key", "api_key", "apiKey", "X-API-KEY", "stripe_key", "anthropic_key", "key"),
            lambda i: f"k{i:03d}{_rand(20)}",
            ": ",
        ),
    ),
    Family(
        "token",
        False,
        _keyed(
            (
                "X-Auth-Token",
                "refreshToken",
                "access_token",
                "authToken",
                "x-amz-security-token",
                "csrf_token",
                "XSRF-TOKEN",
                "id_token",
            ),
            lambda i: f"t{i:03d}{_rand(24)}",
        ),
    ),
    Family(
        "client_secret",
        False,
        _keyed(
            (
                "client_secret",
                "clientSecret",
                "AWS_SECRET_ACCESS_KEY",
                "signing_secret",
                "webhookSecret",
                "private_key",
                "credentials",
            ),
            lambda i: f"c{i:03d}{_rand(30)}",
        ),
    ),
    Family(
        "session",
        False,
        _keyed(
            ("sessionid", "session", "PHPSESSID", "connect.sid", "session_id", "user_session"),
            lambda i: f"s{i:03d}{_rand(26)}",
        ),
    ),
    Family("bearer_jwt", False, _shaped(_jwt, "upstream rejected Authorization: {value}")),
    Family("basic_auth", False, _shaped(_basic, "proxy sent Authorization: {value} and failed")),
    Family(
        "stripe",
        False,
        _shaped(_raw(lambda i: f"sk_live_{_rand(24)}"), "stripe rejected key {value} (revoked)"),
    ),
    Family(
        "github", False, _shaped(_raw(lambda i: f"ghp_{_rand(36)}"), "clone with {value} failed")
    ),
    Family(
        "slack",
        False,
        _shaped(_raw(lambda i: f"xoxb-{1000 + i}-{_rand(24)}"), "slack post using {value} failed"),
    ),
    Family(
        "aws",
        False,
        _shaped(
            _raw(lambda i: "AKIA" + _rand(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")),
            "The AWS Access Key Id {value} does not exist in our records.",
        ),
    ),
    Family(
        "google",
        False,
        _shaped(_raw(lambda i: "AIza" + _rand(35, _ALNUM + "-_")), "maps call with {value} denied"),
    ),
    Family("pem", False, _shaped(_pem, "loaded signing key:\n{value}\n")),
    Family("sentry_dsn", False, _shaped(_dsn, "reporting to {value} failed")),
    Family("db_url", False, _shaped(_db_url, "could not connect to {value}: timeout")),
    Family("card", False, _shaped(_card, "charge failed for card {value}: do_not_honor")),
    Family("card_spaced", False, _shaped(_spaced_card, "card {value} declined")),
    Family(
        "email",
        True,
        _shaped(
            _raw(lambda i: f"jane.doe{i}@mail.example.org"), "sent receipt to {value} at checkout"
        ),
    ),
    Family(
        "ip",
        True,
        _shaped(
            _raw(lambda i: f"{(198, 203)[i % 2]}.{51 + i % 3}.{i // 250}.{i % 250 + 1}"),
            "request from {value} rate limited",
        ),
    ),
    Family(
        "username",
        True,
        _keyed(("username", "user_name", "userName", "login"), lambda i: f"jdoe_{i:03d}{_rand(3)}"),
    ),
)


# --- locations ------------------------------------------------------------------------------------


def _frames(event: Event) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = event["exception"]["values"][1]["stacktrace"]["frames"]
    return frames


def _repr(value: str) -> str:
    return repr(value)


def _plant_headers(ev: Event, key: str, p: Planted) -> None:
    ev["request"]["headers"][key] = p.value


def _plant_cookies(ev: Event, key: str, p: Planted) -> None:
    ev["request"]["cookies"][key] = p.value


def _plant_query(ev: Event, key: str, p: Planted) -> None:
    pair = p.prose if p.keys is not NEUTRAL_KEYS else f"ref={p.value}"
    ev["request"]["query_string"] = (
        f"page=2&{pair.replace(': ', '=').replace(' ', '+')}&sort=created"
    )


def _plant_url(ev: Event, key: str, p: Planted) -> None:
    if p.value.startswith(("https://", "postgresql://")):
        ev["request"]["url"] = p.value
    else:
        pair = p.prose if p.keys is not NEUTRAL_KEYS else f"ref={p.value}"
        ev["request"]["url"] += "?" + pair.replace(": ", "=").replace(" ", "%20")


def _plant_data(ev: Event, key: str, p: Planted) -> None:
    ev["request"]["data"]["payment"] = {"method": "card", key: p.value}


def _plant_raw_body(ev: Event, key: str, p: Planted) -> None:
    ev["request"]["data"] = json.dumps(
        {"order_id": ORDER_ID, key: p.value, "author": "Ada Lovelace"}
    )
    ev["extra"]["body_shape"] = {
        "author": "Ada Lovelace", "monkey": "capuchin-7", "keyboard_layout": "dvorak-intl",
        "plan": "Basic subscription", "idempotency_key": "idem-5c1e2b77", "amount": 4999,
        "currency": "EUR",
        "public_key": "pub-widget-shop-eu",
    }  # fmt: skip


def _plant_env(ev: Event, key: str, p: Planted) -> None:
    env_key = "HTTP_" + key.upper().replace("-", "_").replace(".", "_")
    ev["request"]["env"][env_key] = p.value


def _plant_exception(ev: Event, key: str, p: Planted) -> None:
    ev["exception"]["values"][1]["value"] = f"upstream returned status 502 ({p.prose})"


def _plant_frame_var(ev: Event, key: str, p: Planted) -> None:
    _frames(ev)[0]["vars"][key] = _repr(p.value)


def _plant_asgi_headers(ev: Event, key: str, p: Planted) -> None:
    header = key.lower() if p.keys is not NEUTRAL_KEYS else "authorization"
    if p.keys is NEUTRAL_KEYS and not p.value.startswith(("Bearer", "Basic")):
        header = "x-upstream-detail"
    _frames(ev)[1]["vars"]["scope"] = {
        "type": "'http'",
        "path": "'/api/v1/orders/ORD-2024-118734'",
        "headers": [
            ["b'host'", "b'api.shop.example'"],
            [f"b'{header}'", repr(p.value.encode())],
            ["b'content-type'", "b'application/json'"],
        ],
    }


def _plant_context_line(ev: Event, key: str, p: Planted) -> None:
    literal = json.dumps(p.value)
    _frames(ev)[0]["pre_context"].append(f"    {key.lower().replace('-', '_')} = {literal}")


def _plant_breadcrumb_message(ev: Event, key: str, p: Planted) -> None:
    ev["breadcrumbs"]["values"].append({"category": "app", "message": p.prose, "level": "warning"})


def _plant_breadcrumb_data(ev: Event, key: str, p: Planted) -> None:
    query = p.prose if p.keys is not NEUTRAL_KEYS else f"q={p.value}"
    ev["breadcrumbs"]["values"][1]["data"]["http.query"] = query.replace(": ", "=")


def _plant_extra(ev: Event, key: str, p: Planted) -> None:
    ev["extra"]["upstream_call"] = {"attempt": 2, "request": {"params": {key: p.value}}}


def _plant_context_headers(ev: Event, key: str, p: Planted) -> None:
    # seed 002's middleware copies every request header into a custom context
    ev["contexts"]["request_info"] = {"path": "/api/v1/orders", "headers": {key: p.value}}


def _plant_tags(ev: Event, key: str, p: Planted) -> None:
    ev["tags"][key] = p.value


def _plant_logentry(ev: Event, key: str, p: Planted) -> None:
    ev["logentry"] = {"message": "checkout failed: %s", "params": [p.prose], "formatted": p.prose}


def _plant_span_description(ev: Event, key: str, p: Planted) -> None:
    if p.keys is NEUTRAL_KEYS:
        desc = f"UPDATE integrations SET note = '{p.value}' WHERE id = %s"
    else:
        desc = f"GET https://api.partner.example/v2/items?{p.prose.replace(': ', '=')}"
    ev["spans"].append({"op": "http.client", "description": desc, "data": {}})


def _plant_span_data(ev: Event, key: str, p: Planted) -> None:
    query = p.prose if p.keys is not NEUTRAL_KEYS else f"q={p.value}"
    ev["spans"].append(
        {"op": "http.client", "description": "GET https://api.partner.example/v2/items",
         "data": {"http.query": query.replace(": ", "="), "http.method": "GET"}}
    )  # fmt: skip


def _plant_user(ev: Event, key: str, p: Planted) -> None:
    ev["user"][key if p.keys is not NEUTRAL_KEYS else "note"] = p.value


LOCATIONS: tuple[tuple[str, Callable[[Event, str, Planted], None]], ...] = (
    ("request.headers", _plant_headers),
    ("request.cookies", _plant_cookies),
    ("request.query_string", _plant_query),
    ("request.url", _plant_url),
    ("request.data", _plant_data),
    ("request.data(raw)", _plant_raw_body),
    ("request.env", _plant_env),
    ("exception.value", _plant_exception),
    ("frame.vars", _plant_frame_var),
    ("frame.vars(asgi headers)", _plant_asgi_headers),
    ("frame.context", _plant_context_line),
    ("breadcrumb.message", _plant_breadcrumb_message),
    ("breadcrumb.data", _plant_breadcrumb_data),
    ("extra", _plant_extra),
    ("contexts", _plant_context_headers),
    ("tags", _plant_tags),
    ("logentry", _plant_logentry),
    ("span.description", _plant_span_description),
    ("span.data", _plant_span_data),
    ("user", _plant_user),
)


@dataclass(frozen=True)
class Case:
    name: str
    event: Event
    secret: str
    pii: bool


def build_corpus() -> list[Case]:
    """One case per (family, location): 20 families x 20 locations."""
    _rng.seed(20240514)
    cases = []
    n = 0
    for family in FAMILIES:
        for location, plant in LOCATIONS:
            n += 1
            planted = family.make(n)
            key = planted.keys[n % len(planted.keys)]
            event = base_event()
            plant(event, key, planted)
            cases.append(Case(f"{family.name}@{location}", event, planted.secret, family.pii))
    return cases


# --- scoring --------------------------------------------------------------------------------------


def dump(event: object) -> str:
    """The event as JSON, as it goes on the wire; sentry's AnnotatedValue counts as its value."""
    return json.dumps(event, default=lambda o: getattr(o, "value", repr(o)))


def leaked(secret: str, text: str) -> bool:
    """Whole secret present, or any 16-character piece of it (a half-masked secret is a leak)."""
    forms = {secret, json.dumps(secret)[1:-1], secret.replace(" ", "+"), secret.replace(" ", "%20")}
    if any(form in text for form in forms):
        return True
    return len(secret) > 16 and any(secret[i : i + 16] in text for i in range(len(secret) - 15))


@dataclass
class Score:
    secrets: int = 0
    leaks: list[str] = field(default_factory=list)
    benign_values: int = len(BENIGN)
    benign_lost: dict[str, list[str]] = field(default_factory=dict)

    @property
    def caught(self) -> int:
        return self.secrets - len(self.leaks)


def score(scrub: ScrubFn, cases: list[Case] | None = None, *, include_pii: bool = True) -> Score:
    """Run `scrub` on a fresh copy of every case; count secrets left and benign values lost."""
    result = Score()
    for case in cases if cases is not None else build_corpus():
        if case.pii and not include_pii:
            continue
        result.secrets += 1
        text = dump(scrub(copy.deepcopy(case.event)))
        if leaked(case.secret, text):
            result.leaks.append(case.name)
        for value in BENIGN:
            if value not in text:
                result.benign_lost.setdefault(value, []).append(case.name)
    return result


# --- the scrubbers compared -----------------------------------------------------------------------


def sentry_event_scrubber(*, recursive: bool) -> ScrubFn:
    from sentry_sdk.scrubber import EventScrubber

    scrubber = EventScrubber(recursive=recursive, send_default_pii=False)

    def scrub(event: Event) -> Event:
        scrubber.scrub_event(event)  # type: ignore[arg-type]
        return event

    return scrub


def seed_002_filter(event: Event) -> Event:
    """The top-level filter the seeds ship (seed 002's filter_sensitive_data), for comparison."""
    request = event.get("request", {})
    headers = request.get("headers", {})
    for header in ("authorization", "cookie", "x-api-key"):
        if header in headers:
            headers[header] = "[Filtered]"
    data = request.get("data")
    if isinstance(data, dict):
        for name in ("password", "token", "secret", "key", "credit_card"):
            if name in data:
                data[name] = "[Filtered]"
    return event


# --- events for the benchmark ---------------------------------------------------------------------


def sized_event(*, frames: int, breadcrumbs: int, body_bytes: int, spans: int = 0) -> Event:
    """A realistic error event of a given size, with a few secrets in it, for timing."""
    rng = random.Random(frames * 1000 + breadcrumbs)
    event = base_event()
    template = _frames(event)[0]
    stack = []
    for i in range(frames):
        frame = copy.deepcopy(template)
        frame["function"] = f"handler_{i}"
        frame["lineno"] = 10 + i
        frame["pre_context"] = [
            f"    value_{i}_{j} = compute(step={j}, order=order)" for j in range(5)
        ]
        frame["post_context"] = [f"    log.debug('step %s done', {j})" for j in range(5)]
        frame["vars"] = {
            "self": f"<app.services.Service object at 0x7f{rng.randrange(16**10):010x}>",
            "order_id": f"'{ORDER_ID}'",
            "items": "[{'sku': 'SKU-88172-BLK', 'qty': 2}, {'sku': 'SKU-10293-RED', 'qty': 1}]",
            "attempt": str(i % 3),
            "url": "'https://api.payments.example/v1/intents'",
            "headers": "{'content-type': 'application/json', 'authorization': 'Bearer sk_live_"
            + "x" * 24
            + "'}",
            "timeout": "5.0",
            "result": "None",
        }
        stack.append(frame)
    event["exception"]["values"][1]["stacktrace"]["frames"] = stack
    crumbs = []
    for i in range(breadcrumbs):
        if i % 3 == 0:
            crumbs.append(
                {"type": "http", "category": "httpx",
                 "data": {"http.method": "GET", "url": f"https://api.partner.example/v2/items/{i}",
                          "http.query": f"page={i}&per_page=50", "http.status_code": 200}}
            )  # fmt: skip
        elif i % 3 == 1:
            query = f"SELECT id, sku, qty FROM order_lines WHERE order_id = {i}"
            crumbs.append({"category": "query", "message": query})
        else:
            crumbs.append(
                {"category": "app", "level": "info", "message": f"processed item {i} of {ORDER_ID}"}
            )
    event["breadcrumbs"]["values"] = crumbs
    items = []
    size = 0
    while size < body_bytes:
        item = {
            "sku": f"SKU-{rng.randrange(10**5):05d}-BLK",
            "qty": rng.randrange(1, 9),
            "price": rng.randrange(100, 99999),
            "note": "gift wrap, leave at the door",
        }
        items.append(item)
        size += len(json.dumps(item))
    event["request"]["data"] = {"order_id": ORDER_ID, "items": items, "password": "hunter2-bench"}
    event["spans"] = [
        {"op": "db", "description": f"SELECT * FROM stock WHERE sku = 'SKU-{i:05d}'", "data": {}}
        for i in range(spans)
    ]
    return event


def benchmark_events() -> dict[str, Event]:
    return {
        "small": sized_event(frames=3, breadcrumbs=5, body_bytes=300),
        "typical": sized_event(frames=30, breadcrumbs=50, body_bytes=5000),
        "large": sized_event(frames=100, breadcrumbs=100, body_bytes=10000, spans=200),
    }


def install_transaction() -> Event:
    """A sampled transaction as install() hands it to before_send_transaction (traces 1.0, the
    trivial endpoint of benchmarks/bench_inprocess.py): its ids, sampling figures and timestamps
    are new on every request."""
    dsc = {
        "trace_id": TRACE_ID,
        "sample_rand": "0.642984",
        "environment": "production",
        "release": "cbe73fc",
        "public_key": "abc",
        "transaction": "/api/hello",
        "sample_rate": "1.0",
        "sampled": "true",
    }
    trace = {
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "parent_span_id": None,
        "op": "http.server",
        "description": None,
        "origin": "auto.http.starlette",
        "status": "ok",
        "dynamic_sampling_context": dsc,
        "data": {
            "thread.id": "140088902605696",
            "thread.name": "MainThread",
            "profiler_id": "30082a091a5d4e9bae76c0ab33b95703",
            "http.response.status_code": 200,
        },
    }
    return {
        "type": "transaction",
        "transaction": "/api/hello",
        "transaction_info": {"source": "route"},
        "contexts": {
            "response": {"status_code": 200},
            "trace": trace,
            "profile": {"profiler_id": "30082a091a5d4e9bae76c0ab33b95703"},
            "runtime": {"name": "CPython", "version": "3.11.7", "build": "3.11.7 (main) [GCC]"},
        },
        "tags": {
            "asgi.type": "http",
            "http.status_code": "200",
            "request_id": "8332e4a7cf832ccaa121000000000001",
            "endpoint": "GET /api/hello",
        },
        "timestamp": "2026-12-03T16:40:50.387607Z",
        "start_timestamp": "2026-12-03T16:40:50.387337Z",
        "spans": [],
        "measurements": {},
        "event_id": "80798b8fa3fb4c15a7f0d615cc3b3572",
        "extra": {"sys.argv": ["/srv/app/main.py"]},
        "request": {
            "method": "GET",
            "headers": {"host": "127.0.0.1", "user-agent": "bench"},
            "url": "http://127.0.0.1/api/hello",
        },
        "release": "cbe73fc",
        "environment": "production",
        "server_name": "vm",
        "sdk": {"name": "sentry.python", "version": "2.75.0", "integrations": ["argv", "logging"]},
        "platform": "python",
    }
