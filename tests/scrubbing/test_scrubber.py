"""The scrubber's rules, one guarantee per test: keys, values, PII, configuration, safety."""

from __future__ import annotations

import base64
import copy
import json
import logging
import subprocess
import sys
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import pytest

import fastapi_sentry._scrubbing.scrubber as scrubbing
from fastapi_sentry._scrubbing import Scrubber, ScrubbingConfigError, scrub_event
from fastapi_sentry._scrubbing.detectors import KEEP, PII, SECRET, KeyRules, is_card_number, luhn_ok

F = "[Filtered]"


def text(value: str, **options: Any) -> str:
    result = Scrubber(**options).scrub_value(value)
    assert isinstance(result, str)
    return result


# --- keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password", "Password", "PASSWORD", "db_password", "newPassword", "newpassword", "passwd",
        "mysql_pwd", "password2", "X-Api-Key", "x_api_key", "apiKey", "APIKey", "api-key",
        "HTTP_X_API_KEY", "X-Auth-Token", "x-auth-token", "refreshToken", "refresh_token",
        "access_token", "id_token", "authToken", "csrftoken", "XSRF-TOKEN", "client_secret",
        "clientSecret", "webhooksecret", "AWS_SECRET_ACCESS_KEY", "private_key", "privateKey",
        "stripe_key", "anthropic_key", "key", "Authorization", "HTTP_AUTHORIZATION",
        "Proxy-Authorization", "cookie", "Set-Cookie", "sessionid", "session_id", "PHPSESSID",
        "connect.sid", "credentials", "credit_card", "card_number", "cvv", "ssn", "dsn",
        "x-amz-security-token", "X-Hub-Signature", "oauth_token",
        "sentry.message.parameter.password", "b'authorization'",
    ],
)  # fmt: skip
def test_secret_keys_are_recognised_in_every_spelling(key: str) -> None:
    assert KeyRules(send_default_pii=True).classify(key) == SECRET


@pytest.mark.parametrize(
    "key",
    [
        "author", "authored_at", "monkey", "keyboard_layout", "tokenizer", "sessions",
        "token_count", "max_tokens", "token_type", "token_expires_in", "session_count",
        "password_min_length", "auth_method", "oauth_provider", "cache_key", "primary_key",
        "public_key", "idempotency_key", "sort_key", "secretary", "hockey", "turkey",
        "order_id", "user_id", "request_id", "trace_id", "sku", "status", "route", "keys_total",
        "has_password", "is_authenticated", "passenger", "compass",
    ],
)  # fmt: skip
def test_benign_keys_are_not_masked(key: str) -> None:
    assert KeyRules(send_default_pii=False).classify(key) == KEEP


def test_denylist_is_a_strict_superset_of_sentry_sdks() -> None:
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST

    rules = KeyRules(send_default_pii=False)
    missed = [k for k in DEFAULT_DENYLIST + DEFAULT_PII_DENYLIST if rules.classify(k) == KEEP]
    assert missed == []
    # strictly larger: keys sentry-sdk's exact-match list lets through
    lowered = {k.lower() for k in DEFAULT_DENYLIST}
    ours_only = ["X-Auth-Token", "refreshToken", "client_secret", "X-Api-Key", "stripe_key"]
    assert all(k.lower() not in lowered and rules.classify(k) == SECRET for k in ours_only)


def test_seed_fields_are_all_masked() -> None:
    # every field the seeds' filters and docs name
    seed_fields = ["authorization", "cookie", "x-api-key", "password", "token", "secret", "key",
                   "credit_card", "api_key", "anthropic_key", "ssn", "api_secret"]  # fmt: skip
    event = {"request": {"headers": dict.fromkeys(seed_fields, "v-123456")}}
    headers = Scrubber().scrub_event(event)["request"]["headers"]
    assert headers == dict.fromkeys(seed_fields, F)


def test_text_scan_triggers_cover_every_sensitive_word() -> None:
    """The key=value scan of strings is skipped unless a trigger fragment is present, so every word
    the key rules react to must contain one ("ip" excepted: IP values are found by shape)."""
    from fastapi_sentry._scrubbing import detectors as det

    triggers = det.KV_TRIGGERS + det.PII_TRIGGERS
    words = (
        set(det.SECRET_WORDS) | set(det.SECRET_SUFFIXES) | set(det.SECRET_INFIXES) | {"key", "keys"}
        | (set(det.PII_WORDS) - {"ip", "ips", "ipv4", "ipv6"}) | set(det.PII_SUFFIXES)
        | {"".join(pair) for pair in det.SECRET_PAIRS | det.PII_PAIRS}
    )  # fmt: skip
    assert sorted(w for w in words if not any(t in w for t in triggers)) == []
    # and extra keys bring their own words
    assert Scrubber(extra_keys=["tenant_pin", "zorg"]).scrub_value("x zorg=1") == f"x zorg={F}"


def test_pii_keys_depend_on_send_default_pii() -> None:
    for key in ["email", "user_email", "username", "userName", "ip_address", "REMOTE_ADDR",
                "x-real-ip", "client_ip"]:  # fmt: skip
        assert KeyRules(send_default_pii=False).classify(key) == PII, key
        assert KeyRules(send_default_pii=True).classify(key) == KEEP, key
    # x-forwarded-for is in sentry-sdk's always-on list, so it stays masked either way
    assert KeyRules(send_default_pii=True).classify("X-Forwarded-For") == SECRET


def test_masked_value_keeps_its_key_and_containers_keep_their_shape() -> None:
    event = {"extra": {"credentials": {"user": "bob", "pw": "x1"}, "tokens": ["a", "b"]}}
    extra = Scrubber().scrub_event(event)["extra"]
    assert extra["credentials"] == {"user": F, "pw": F}
    assert extra["tokens"] == ["a", "b"]  # plural "tokens" is a word of its own (max_tokens)


# --- values ---------------------------------------------------------------------------------------

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
BASIC = base64.b64encode(b"svc-user:s3cr3t-pw").decode()


@pytest.mark.parametrize(
    ("raw", "secret"),
    [
        (f"Authorization: Bearer {JWT}", JWT),
        (f"token {JWT} expired", JWT),
        ("Authorization: Bearer 0a1b2c3d4e5f6a7b", "0a1b2c3d4e5f6a7b"),
        (f"Basic {BASIC}", BASIC),
        ("GET /v1/items?page=2&access_token=abc123xyz&sort=asc", "abc123xyz"),
        ("https://api.example/cb?code=x&client_secret=cs_987zz", "cs_987zz"),
        ("postgresql://shop:Pg-s3cret@db:5432/shop", "Pg-s3cret"),
        ("https://0123456789abcdef0123456789abcdef@o1.ingest.sentry.io/42",
         "0123456789abcdef0123456789abcdef"),
        ("key sk_live_4eC39HqLyjWDarjtT1zdp7dc rejected", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ("rk_test_51HxYzAbCdEfGhIjKlMn", "rk_test_51HxYzAbCdEfGhIjKlMn"),
        ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
        ("xoxb-1234-5678-AbCdEfGhIjKlMnOp", "xoxb-1234-5678-AbCdEfGhIjKlMnOp"),
        ("AKIAIOSFODNN7EXAMPLE is not valid", "AKIAIOSFODNN7EXAMPLE"),
        ("AIzaSyA-1234567890abcdefghijklmnopqrstu", "AIzaSyA-1234567890abcdefghijklmnopqrstu"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END PRIVATE KEY-----",
         "MIIEvQIBADANBgkqhkiG9w0B"),
        ("-----BEGIN EC PRIVATE KEY-----\\nMHcCAQEEIBkg4LVWM9nu (cut", "MHcCAQEEIBkg4LVWM9nu"),
        ('{"password": "correct horse battery"}', "correct horse battery"),
        ("b'{\"refreshToken\": \"rt-99x\"}'", "rt-99x"),
        ("{'X-Api-Key': 'k-77abc'}", "k-77abc"),
        ("[(b'authorization', b'Token 9f8e7d6c'), (b'host', b'x')]", "9f8e7d6c"),
        ("SELECT * FROM users WHERE password = 'sqlpw1'", "sqlpw1"),
        ("login --password=hunter22 --verbose", "hunter22"),
        ("Cookie: theme=dark; sid=s%3Aabc.def", "s%3Aabc.def"),
        ("cookie: theme=dark; ajs_anonymous=c0ffee-42", "c0ffee-42"),  # a name that says nothing
        ("Set-Cookie: prefs=u-99x7; Path=/; HttpOnly", "u-99x7"),
        ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111"),
        ("card 5555-5555-5555-4444", "5555-5555-5555-4444"),
        ("amex 378282246310005", "378282246310005"),
        ("hooks.slack.com/services/T000/B000/XXXXXXXX", "T000/B000/XXXXXXXX"),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwx", "sk-ant-api03-abcdefghijklmnopqrstuvwx"),
    ],
)  # fmt: skip
def test_secrets_inside_strings_are_masked(raw: str, secret: str) -> None:
    out = text(raw, send_default_pii=True)
    assert secret not in out
    assert F in out


@pytest.mark.parametrize(
    "raw",
    [
        "4bf92f3577b34da6a3ce929d0e0e4736",  # trace id
        "00f067aa0ba902b7",  # span id
        "9fceb02d0ae598e95dc970b74767f19372d61af8",  # commit sha
        "3f1c2d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f",
        "order 4000123412341236 (not Luhn)",
        "created 1715682731000",  # millisecond timestamp, Luhn or not
        "1715682731000123",
        "/api/v1/orders/{order_id}/items/{item_id}",
        "connect to 127.0.0.1:5432 refused",
        "listening on [::1]:8000",
        "shop-api@1.42.0",
        "plan: Basic subscription",
        "bearer authentication failed",
        "token_type=bearer",
        "std::vector<int>",
        "12:30:45",
        "author=Ada Lovelace",
        "    intent = stripe.PaymentIntent.create(amount=amount, currency=currency)",
        "pub-widget-shop-eu",
    ],
)
def test_benign_strings_survive(raw: str) -> None:
    assert text(raw) == raw


def test_only_luhn_valid_card_numbers_are_masked() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    assert is_card_number("4111 1111 1111 1111")
    assert not is_card_number("4111 1111 1111 1112")
    assert text("card 4111111111111112") == "card 4111111111111112"
    assert text("card 4111111111111111") == f"card {F}"
    # also as an int, e.g. a local variable before serialization
    assert Scrubber().scrub_value({"n": 4111111111111111, "m": 4111111111111112}) == {
        "n": F,
        "m": 4111111111111112,
    }


# --- personal data --------------------------------------------------------------------------------


def pii_event() -> dict[str, Any]:
    return {
        "user": {"id": "u-42", "email": "ann@example.com", "username": "ann",
                 "ip_address": "203.0.113.9", "plan": "pro"},
        "request": {"env": {"REMOTE_ADDR": "203.0.113.9", "SERVER_NAME": "api"},
                    "headers": {"X-Real-Ip": "203.0.113.9", "X-Forwarded-For": "203.0.113.9"},
                    "data": {"contact": "write to ann@example.com or call", "qty": 2}},
        "exception": {"values": [{"type": "E",
                                  "value": "blocked 2001:db8::8a2e:370:7334 and 198.51.100.7"}]},
    }  # fmt: skip


def test_personal_data_is_removed_without_send_default_pii() -> None:
    out = Scrubber().scrub_event(pii_event())
    dumped = json.dumps(out)
    for value in ["ann@example.com", "203.0.113.9", "2001:db8::8a2e:370:7334", "198.51.100.7"]:
        assert value not in dumped
    assert out["user"] == {"id": "u-42", "email": F, "username": F, "plan": "pro"}
    assert out["request"]["env"] == {"REMOTE_ADDR": F, "SERVER_NAME": "api"}
    assert out["request"]["data"] == {"contact": f"write to {F} or call", "qty": 2}


def test_personal_data_is_kept_with_send_default_pii() -> None:
    event = pii_event()
    out = Scrubber(send_default_pii=True).scrub_event(event)
    assert out["user"] == event["user"]
    assert out["request"]["env"] == event["request"]["env"]
    assert out["exception"] == event["exception"]
    assert out["request"]["headers"] == {"X-Real-Ip": "203.0.113.9", "X-Forwarded-For": F}


# --- where secrets travel -------------------------------------------------------------------------


def test_asgi_header_lists_are_headers_raw_and_serialized() -> None:
    raw = {"scope": {"headers": [(b"authorization", b"Bearer abc123"), (b"host", b"api")]}}
    out = Scrubber().scrub_value(raw)
    assert out["scope"]["headers"] == [(b"authorization", F), (b"host", b"api")]
    serialized = {"headers": [["b'x-auth-token'", "b'zz-top-1'"], ["b'accept'", "b'*/*'"]]}
    assert Scrubber().scrub_value(serialized)["headers"] == [
        ["b'x-auth-token'", F],
        ["b'accept'", "b'*/*'"],
    ]


def test_bytes_and_tuples_keep_their_types() -> None:
    value = {"body": b'{"password": "pw-123"}', "pair": ("ok", "token=abc123")}
    out = Scrubber().scrub_value(value)
    assert out["body"] == b'{"password": "' + F.encode() + b'"}'
    assert out["pair"] == ("ok", f"token={F}")


def test_transaction_spans_and_breadcrumbs() -> None:
    transaction = {
        "type": "transaction",
        "transaction": "/orders/{order_id}",
        "spans": [
            {"op": "http.client", "description": "GET https://x.example/v1?api_key=k-1&page=2",
             "data": {"http.query": "api_key=k-1&page=2", "http.fragment": ""}},
            {"op": "db", "description": "SELECT 1", "data": {"db.params": {"password": "p"}}},
        ],
    }  # fmt: skip
    out = Scrubber().scrub_event(transaction)
    assert out["transaction"] == "/orders/{order_id}"
    assert out["spans"][0]["description"] == f"GET https://x.example/v1?api_key={F}&page=2"
    assert out["spans"][0]["data"]["http.query"] == f"api_key={F}&page=2"
    assert out["spans"][1]["data"]["db.params"] == {"password": F}
    crumb = {"category": "httpx", "data": {"url": "https://u:p4ss@h/x", "http.query": "token=t1"}}
    assert Scrubber().scrub_breadcrumb(crumb)["data"] == {
        "url": f"https://{F}@h/x",
        "http.query": f"token={F}",
    }


def test_logs_body_and_attributes() -> None:
    log = {
        "severity_text": "info",
        "severity_number": 9,
        "body": "login ok for ann@example.com with token=t-7781",
        "attributes": {
            "sentry.message.template": "login ok for %s with token=%s",
            "sentry.message.parameter.0": "ann@example.com",
            "sentry.message.parameter.password": "pw-1",
            "http.route": "/login",
        },
        "time_unix_nano": 1715682731000000000,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": None,
    }
    out = Scrubber().scrub_log(log)
    assert out["body"] == f"login ok for {F} with token={F}"
    assert out["attributes"]["sentry.message.parameter.0"] == F
    assert out["attributes"]["sentry.message.parameter.password"] == F
    assert out["attributes"]["http.route"] == "/login"
    assert out["trace_id"] == log["trace_id"]
    assert out["time_unix_nano"] == log["time_unix_nano"]


def test_positional_log_parameters_are_masked_by_their_template() -> None:
    """logging's ("token=%s", secret): only the template says what the parameter is."""
    log = {
        "body": "partner login with token=lt-881 for ann@example.com",
        "attributes": {
            "sentry.message.template": "partner login with token=%s for %s (%d tries)",
            "sentry.message.parameter.0": "lt-881",
            "sentry.message.parameter.1": "ann",
            "sentry.message.parameter.2": 3,
        },
    }
    attributes = Scrubber(send_default_pii=True).scrub_log(log)["attributes"]
    assert attributes == {
        "sentry.message.template": "partner login with token=%s for %s (%d tries)",
        "sentry.message.parameter.0": F,
        "sentry.message.parameter.1": "ann",
        "sentry.message.parameter.2": 3,
    }
    event = {"logentry": {"message": "retry {} with api_key={}", "params": ["ORD-1", "k-9"]}}
    assert Scrubber().scrub_event(event)["logentry"] == {
        "message": "retry {} with api_key={}",
        "params": ["ORD-1", F],
    }


def test_text_before_an_already_masked_value_is_kept() -> None:
    raw = f"a=1&token={F}&password=x&b=2"
    assert text(raw) == f"a=1&token={F}&password={F}&b=2"


def test_input_is_never_modified() -> None:
    from tests.scrubbing.corpus import build_corpus

    for case in build_corpus()[::7]:
        before = copy.deepcopy(case.event)
        Scrubber().scrub_event(case.event)
        assert case.event == before, case.name


# --- configuration --------------------------------------------------------------------------------


def test_extra_keys_patterns_safe_keys_and_replacement() -> None:
    scrubber = Scrubber(
        extra_keys=["tenant-pin", "OrderSecretCode"],
        extra_patterns=[r"ACME-\d{6}"],
        safe_keys=["session"],
        replacement="<redacted>",
    )
    event = {
        "extra": {
            "tenant_pin": "1234",
            "order_secret_code": "x",
            "note": "voucher ACME-123456 used",
            "session": "kept-by-config",
            "password": "pw",
        }
    }
    assert scrubber.scrub_event(event)["extra"] == {
        "tenant_pin": "<redacted>",
        "order_secret_code": "<redacted>",
        "note": "voucher <redacted> used",
        "session": "kept-by-config",
        "password": "<redacted>",
    }


def test_safe_keys_still_get_their_values_checked() -> None:
    scrubber = Scrubber(safe_keys=["authorization"])
    out = scrubber.scrub_event({"extra": {"authorization": f"Bearer {JWT}"}})
    assert out["extra"]["authorization"] == f"Bearer {F}"


@pytest.mark.parametrize("pattern", ["(unclosed", "a{2,1}", "*"])
def test_invalid_pattern_is_a_clear_value_error(pattern: str) -> None:
    with pytest.raises(ScrubbingConfigError) as info:
        Scrubber(extra_patterns=[pattern])
    assert isinstance(info.value, ValueError)
    assert repr(pattern) in str(info.value)
    assert "re.escape" in str(info.value)


def test_pattern_matching_empty_string_is_rejected() -> None:
    with pytest.raises(ScrubbingConfigError, match=r"'x\*'.*empty string"):
        Scrubber(extra_patterns=["x*"])


def test_from_settings_reads_any_object_and_the_real_settings() -> None:
    from fastapi_sentry._settings import SentrySettings

    ns = SimpleNamespace(
        send_default_pii=True,
        scrub_extra_keys=["tenant_pin"],
        scrub_extra_patterns=[r"ACME-\d+"],
        scrub_safe_keys=[],
        scrub_replacement="***",
    )
    event = {"extra": {"tenant_pin": "1", "m": "ACME-9 to ann@example.com"}}
    assert Scrubber.from_settings(ns).scrub_event(event)["extra"] == {
        "tenant_pin": "***",
        "m": "*** to ann@example.com",
    }
    assert Scrubber.from_settings(object()).replacement == F
    real = SentrySettings(scrub_extra_keys=["tenant_pin"], scrub_replacement="###")
    assert Scrubber.from_settings(real).scrub_event(event)["extra"]["tenant_pin"] == "###"


def test_module_level_scrub_event_caches_per_configuration() -> None:
    event = {"extra": {"password": "pw", "email": "ann@example.com"}}
    assert scrub_event(event)["extra"] == {"password": F, "email": F}
    pii_on = SimpleNamespace(send_default_pii=True)
    assert scrub_event(event, pii_on)["extra"] == {"password": F, "email": "ann@example.com"}
    before = scrubbing._cached_scrubber.cache_info().hits
    scrub_event(event, SimpleNamespace(send_default_pii=True))
    assert scrubbing._cached_scrubber.cache_info().hits == before + 1


# --- never raises ---------------------------------------------------------------------------------


class ExplodingMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.fixture
def fresh_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scrubbing, "_warned", False)


@pytest.mark.usefixtures("fresh_warning")
def test_uninspectable_parts_are_masked_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    event = {
        "message": "token=abc123",
        "extra": {"ok": "value", "n": 7, "card": 4111111111111111, "bad": ExplodingMapping()},
        "contexts": {"weird": BadRepr()},
        "tags": {"route": "/orders"},
    }
    with caplog.at_level(logging.WARNING, logger="fastapi_sentry._scrubbing.scrubber"):
        out = Scrubber().scrub_event(event)
        Scrubber().scrub_event(event)
    assert out["message"] == f"token={F}"
    # the part that failed: all of its text masked, plain numbers kept, card numbers not
    assert out["extra"] == {"ok": F, "n": 7, "card": F, "bad": F}
    assert out["contexts"] == {"weird": F}
    assert out["tags"] == {"route": "/orders"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "RuntimeError" in warnings[0].getMessage()
    assert "abc123" not in caplog.text


def test_cycles_and_depth_are_bounded() -> None:
    cyclic: dict[str, Any] = {"name": "loop", "password": "pw"}
    cyclic["self"] = cyclic
    out = Scrubber().scrub_event({"extra": cyclic})
    assert out["extra"]["password"] == F
    json.dumps(out, default=str)  # finite: the cycle was cut with a mask
    deep: Any = "token=abc123"
    for _ in range(200):
        deep = [deep]
    assert "abc123" not in json.dumps(Scrubber().scrub_event({"extra": deep}))


def test_non_dict_input_is_returned_unchanged() -> None:
    assert Scrubber().scrub_event(None) is None  # type: ignore[arg-type]
    assert Scrubber().scrub_breadcrumb({"message": 3}) == {"message": 3}


def test_importing_the_scrubber_does_not_import_sentry_sdk() -> None:
    code = (
        "import sys, fastapi_sentry._scrubbing as s; "
        "s.scrub_event({'extra': {'password': 'x'}}); "
        "print('sentry_sdk' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_breadcrumb_timestamps_stay_datetimes() -> None:
    import datetime as dt

    from fastapi_sentry._scrubbing import Scrubber

    stamp = dt.datetime.now(dt.timezone.utc)
    crumb = Scrubber().scrub_breadcrumb({"timestamp": stamp, "message": "loaded basket"})
    assert crumb["timestamp"] is stamp


@pytest.mark.parametrize(
    ("raw", "once"),
    [
        ("Phone: Basic MDow ", "Phone: Basic [Filtered] "),
        ("token=Bearer abc123def456", "token=Bearer [Filtered]"),
        ("x token: [Filtered] y=2 password=zz", "x token: [Filtered] y=2 password=[Filtered]"),
    ],
)
def test_a_masked_value_after_its_scheme_word_is_left_as_it_is(raw: str, once: str) -> None:
    """Found by the idempotence property: a second pass took "Basic" in "Phone: Basic [Filtered]"
    for the phone number and masked it too."""
    scrubber = Scrubber()
    assert scrubber.scrub_value(raw) == once
    assert scrubber.scrub_value(once) == once
    assert Scrubber(replacement="***").scrub_value(once.replace(F, "***")) == once.replace(F, "***")
