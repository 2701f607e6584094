"""Remove secrets and personal data from everything sentry-sdk is about to send.

sentry-sdk's own EventScrubber checks a fixed list of keys in a few places. Secrets mostly
travel elsewhere: inside strings (query strings, URLs, exception messages, log lines, SQL), under
keys it does not know ("X-Auth-Token", "refreshToken"), and in stack-frame locals as ASGI header
lists. This module walks the whole payload, checking keys by their words and strings by content.

Pure functions over plain data, no sentry_sdk import: usable in before_send,
before_send_transaction, before_breadcrumb and before_send_log, and testable without a client.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from fastapi_sentry import _detectors as d

__all__ = ["DEFAULT_REPLACEMENT", "Scrubber", "ScrubbingConfigError", "scrub_event"]

logger = logging.getLogger(__name__)

DEFAULT_REPLACEMENT = "[Filtered]"
# Deeper than any real event; a cycle or a pathological structure is masked, not recursed into.
MAX_DEPTH = 64
UNSCRUBBABLE_WARNING = (
    "fastapi-sentry could not scrub part of an event (%s in %r); every string in that part was "
    "masked instead. Please report this with the event's shape (not its values)."
)
INVALID_PATTERN_MESSAGE = (
    "scrub_extra_patterns contains {pattern!r}, which is not a valid regular expression ({error}). "
    "Fix the pattern, or escape literal text with re.escape()."
)
EMPTY_MATCH_MESSAGE = (
    "scrub_extra_patterns contains {pattern!r}, which matches the empty string and would mask "
    "every position of every string. Make it match at least one character."
)

# Top-level event fields that carry no user data; skipping them keeps module names such as
# "flask-session" readable and saves time.
_SKIPPED_TOP_LEVEL = frozenset(
    {
        "_meta",
        "debug_meta",
        "event_id",
        "level",
        "modules",
        "platform",
        "sdk",
        "start_timestamp",
        "timestamp",
        "type",
    }
)
# Results for short strings are remembered: the same source lines, frame locals and header values
# recur within an event and across events. Bounded, and cleared whole when full.
TEXT_CACHE_SIZE = 4096
TEXT_CACHE_MAX_LEN = 512
# printf-style and str.format placeholders in logging templates
_PLACEHOLDER_RE = re.compile(r"%%|%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[sdrifgeEGxXoc]|\{[^{}]*\}")
_USER_PII_FIELDS = frozenset({"email", "username", "name", "geo"})
_warned = False


class ScrubbingConfigError(ValueError):
    """A scrubbing option cannot be used (an invalid extra pattern)."""


def _warn_once(exc: BaseException, where: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        logger.warning(UNSCRUBBABLE_WARNING, type(exc).__name__, where)


def _compile_patterns(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in patterns:
        try:
            rx = re.compile(pattern)
        except (re.error, TypeError) as e:
            raise ScrubbingConfigError(
                INVALID_PATTERN_MESSAGE.format(pattern=pattern, error=e)
            ) from e
        if rx.fullmatch("") is not None:
            raise ScrubbingConfigError(EMPTY_MATCH_MESSAGE.format(pattern=pattern))
        compiled.append(rx)
    return tuple(compiled)


def _as_tuple(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(v) for v in value)  # type: ignore[attr-defined]


class Scrubber:
    """Masks secrets (always) and personal data (unless send_default_pii) in Sentry payloads.

    Keys are matched on their words, so "X-Api-Key", "refreshToken" and "client_secret" are masked
    while "author", "monkey" and "keyboard_layout" are not. Strings are searched for credentials by
    shape. A masked value keeps its key. The input is never modified; unchanged parts are shared.
    """

    def __init__(
        self,
        *,
        send_default_pii: bool = False,
        extra_keys: Iterable[str] = (),
        extra_patterns: Iterable[str] = (),
        safe_keys: Iterable[str] = (),
        replacement: str = DEFAULT_REPLACEMENT,
    ) -> None:
        self.send_default_pii = bool(send_default_pii)
        self.replacement = str(replacement)
        self._patterns = _compile_patterns(extra_patterns)
        self._rules = d.KeyRules(
            send_default_pii=self.send_default_pii, extra_keys=extra_keys, safe_keys=safe_keys
        )
        self._classify = self._rules.classify
        self._cache: dict[str, str] = {}
        triggers = d.KV_TRIGGERS + (() if self.send_default_pii else d.PII_TRIGGERS)
        triggers += tuple(w for seq in self._rules.extra_sequences for w in seq)
        self._triggers = tuple(dict.fromkeys(triggers))
        self._has_trigger = _any_substring(self._triggers)

    @classmethod
    def from_settings(cls, settings: object) -> Scrubber:
        """Build from any object with SentrySettings' scrub_* attributes (missing: defaults)."""
        return cls(
            send_default_pii=bool(getattr(settings, "send_default_pii", False)),
            extra_keys=_as_tuple(getattr(settings, "scrub_extra_keys", ())),
            extra_patterns=_patterns_tuple(getattr(settings, "scrub_extra_patterns", ())),
            safe_keys=_as_tuple(getattr(settings, "scrub_safe_keys", ())),
            replacement=getattr(settings, "scrub_replacement", None) or DEFAULT_REPLACEMENT,
        )

    # --- public entry points; none of them raises -------------------------------------------------

    def scrub_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Scrub an error or transaction event as before_send(_transaction) receives it."""
        if not isinstance(event, dict):
            return event  # type: ignore[unreachable]
        out = dict(event)
        for key, value in event.items():
            if key in _SKIPPED_TOP_LEVEL:
                continue
            try:
                if key == "user" and isinstance(value, dict):
                    out[key] = self._user(value)
                elif key == "logentry" and isinstance(value, dict):
                    out[key] = self._logentry(value)
                else:
                    out[key] = self._field(key, value, 1)
            except Exception as e:  # must never break error reporting
                _warn_once(e, key)
                out[key] = self._blind(value, 0)
        return out

    def scrub_breadcrumb(self, crumb: dict[str, Any]) -> dict[str, Any]:
        """Scrub one breadcrumb as before_breadcrumb receives it."""
        scrubbed: dict[str, Any] = self._guarded(crumb, "breadcrumb")
        return scrubbed

    def scrub_log(self, log: dict[str, Any]) -> dict[str, Any]:
        """Scrub a log record as before_send_log receives it (body plus attributes)."""
        scrubbed: dict[str, Any] = self._guarded(log, "log")
        original = log.get("attributes") if isinstance(log, dict) else None
        attributes = scrubbed.get("attributes") if isinstance(scrubbed, dict) else None
        if isinstance(attributes, dict) and isinstance(original, dict):
            try:
                template = original.get("sentry.message.template")
                if isinstance(template, dict):  # the typed wire form {"value": ..., "type": ...}
                    template = template.get("value")
                masked = self._template_params(template)
                if masked:
                    attributes = dict(attributes)
                    for i in masked:
                        key = f"sentry.message.parameter.{i}"
                        if key in attributes:
                            attributes[key] = self._mask(attributes[key])
                    scrubbed = {**scrubbed, "attributes": attributes}
            except Exception as e:  # must never break error reporting
                _warn_once(e, "log attributes")
                scrubbed = {**scrubbed, "attributes": self._blind(attributes, 0)}
        return scrubbed

    def scrub_value(self, value: Any) -> Any:
        """Scrub any JSON-like value; the building block of the other entry points."""
        return self._guarded(value, "value")

    def clear_cache(self) -> None:
        """Forget remembered string results (the benchmark uses it to measure the cold cost)."""
        self._cache.clear()

    # --- the walk ---------------------------------------------------------------------------------

    def _guarded(self, value: Any, where: str) -> Any:
        try:
            return self._value(value, 0)
        except Exception as e:  # must never break error reporting
            _warn_once(e, where)
            return self._blind(value, 0)

    def _user(self, user: dict[str, Any]) -> dict[str, Any]:
        out = self._dict(user, 1)
        if self.send_default_pii:
            return out
        out = dict(out)
        out.pop("ip_address", None)  # Relay would reject a masked address; sentry-sdk drops it too
        for key in _USER_PII_FIELDS:
            if out.get(key) is not None:
                out[key] = self._mask(out[key])
        return out

    def _logentry(self, entry: dict[str, Any]) -> dict[str, Any]:
        """logging's ("token=%s", [secret]): only the template says what a positional param is."""
        out = self._dict(entry, 1)
        params = out.get("params")
        masked = self._template_params(entry.get("message"))
        if masked and isinstance(params, (list, tuple)):
            params = [self._mask(p) if i in masked else p for i, p in enumerate(params)]
            out = {**out, "params": params}
        return out

    def _template_params(self, template: object) -> set[int]:
        """Indexes of the placeholders a format template puts right after a sensitive key."""
        if not isinstance(template, str) or ("%" not in template and "{" not in template):
            return set()
        count = 0

        def marker(m: re.Match[str]) -> str:
            nonlocal count
            if m[0] == "%%":
                return m[0]
            count += 1
            return f"zzparam{count - 1}zz"

        probe = _PLACEHOLDER_RE.sub(marker, template)
        if not count:
            return set()
        scanned = self._scan(probe)
        return {i for i in range(count) if f"zzparam{i}zz" not in scanned}

    def _field(self, key: object, value: Any, depth: int) -> Any:
        kind = self._classify(key) if type(key) is str else self._classify(_key_text(key))
        if kind:
            return self._mask(value)
        return self._value(value, depth)

    def _value(self, value: Any, depth: int) -> Any:
        t = type(value)
        if t is str:
            return self._text(value) if len(value) > 3 else value
        if t is dict:
            return self._dict(value, depth)
        if t is list:
            return self._list(value, depth)
        if value is None or t is bool or t is float:
            return value
        if t is int:
            return self.replacement if value > 10**12 and d.is_card_number(str(value)) else value
        if t is tuple:
            new = self._list(value, depth)
            return value if new is value else tuple(new)
        if isinstance(value, str):
            return self._text(str(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            text = raw.decode("utf-8", "replace")
            scrubbed = self._text(text)
            return value if scrubbed == text else scrubbed.encode("utf-8")
        if isinstance(value, Mapping):
            return self._dict(dict(value), depth)
        if isinstance(value, (list, tuple, set, frozenset)):
            return self._list(list(value), depth)
        if isinstance(value, (int, float, datetime.date, datetime.time, datetime.timedelta)):
            # breadcrumb timestamps arrive as datetimes; their repr would break sorting
            return value
        # An object sentry-sdk has not serialized yet: it would be sent as its repr, so scrub that.
        return self._text(repr(value))

    def _dict(self, mapping: dict[Any, Any], depth: int) -> dict[Any, Any]:
        if depth > MAX_DEPTH:
            return self._blind(mapping, 0)  # type: ignore[no-any-return]
        out: dict[Any, Any] | None = None
        classify = self._classify
        for key, value in mapping.items():
            kind = classify(key) if type(key) is str else classify(_key_text(key))
            if kind:
                new = self._mask(value)
            elif type(value) is str:
                new = self._text(value) if len(value) > 3 else value
            else:
                new = self._value(value, depth + 1)
            if new is not value:
                if out is None:
                    out = dict(mapping)
                out[key] = new
        return mapping if out is None else out

    def _list(self, items: list[Any] | tuple[Any, ...], depth: int) -> list[Any] | tuple[Any, ...]:
        if depth > MAX_DEPTH:
            return self._blind(items, 0)  # type: ignore[no-any-return]
        pairs = _is_pair_list(items)
        if (
            not pairs
            and len(items) == 2
            and _looks_like_key(items[0])
            and self._classify(_key_text(items[0]))
        ):
            # a lone ("authorization", "Bearer ...") pair, e.g. a loop variable over headers
            return self._list([items], depth)[0]  # type: ignore[no-any-return]
        out: list[Any] | None = None
        for i, item in enumerate(items):
            if pairs:
                name, value = item
                kind = self._classify(_key_text(name))
                new_value = self._mask(value) if kind else self._value(value, depth + 1)
                new_name = self._value(name, depth + 1)
                if new_value is value and new_name is name:
                    new = item
                else:
                    new = type(item)((new_name, new_value))
            else:
                new = self._value(item, depth + 1)
            if new is not item:
                if out is None:
                    out = list(items)
                out[i] = new
        return items if out is None else out

    def _mask(self, value: Any) -> Any:
        """Replace a value under a sensitive key; containers keep their shape for the reader."""
        if value is None or value == self.replacement:
            return value
        if isinstance(value, dict):
            return {k: self._mask(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._mask(v) for v in value]
        return self.replacement

    def _blind(self, value: Any, depth: int) -> Any:
        """Fallback for a part that could not be inspected: keep shape and numbers, mask text."""
        try:
            if value is None or isinstance(value, (bool, float)):
                return value
            if isinstance(value, int):
                return self.replacement if d.is_card_number(str(value)) else value
            if depth > MAX_DEPTH:
                return self.replacement
            if isinstance(value, Mapping):
                return {_safe_str(k): self._blind(v, depth + 1) for k, v in value.items()}
            if isinstance(value, (list, tuple, set, frozenset)):
                return [self._blind(v, depth + 1) for v in value]
        except Exception:
            logger.debug("masking an uninspectable value whole", exc_info=True)
        return self.replacement

    # --- strings ----------------------------------------------------------------------------------

    def _text(self, s: str) -> str:
        cache = self._cache
        done = cache.get(s)
        if done is not None:
            return done
        out = self._scan(s)
        if len(s) <= TEXT_CACHE_MAX_LEN:
            if len(cache) >= TEXT_CACHE_SIZE:
                cache.clear()
            cache[s] = out
        return out

    def _scan(self, s: str) -> str:
        repl = self.replacement
        if ("=" in s or ":" in s) and self._has_trigger(s.lower()):
            s = self._key_values(s)
        if "(" in s and ("'" in s or '"' in s):
            s = self._tuple_pairs(s)
        if "ookie" in s or "OOKIE" in s:
            s = d.COOKIE_TEXT_RE.sub(self._cookie_sub, s)
        if "-----BEGIN" in s:
            s = d.PEM_RE.sub(repl, s)
        if "@" in s:
            if "://" in s:
                s = d.URL_USERINFO_RE.sub(self._keep_sub, s)
            if not self.send_default_pii:
                s = d.EMAIL_RE.sub(repl, s)
        if (
            "earer" in s
            or "EARER" in s
            or "asic" in s
            or "ASIC" in s
            or "igest" in s
            or "IGEST" in s
        ):
            s = d.AUTH_SCHEME_RE.sub(self._auth_sub, s)
        if "eyJ" in s:
            s = d.JWT_RE.sub(repl, s)
        if d.key_format_hint(s):
            s = d.KEY_FORMAT_RE.sub(repl, s)
        if "hooks.slack.com" in s:
            s = d.SLACK_WEBHOOK_RE.sub(self._keep_sub, s)
        if d.DIGIT_HINT_RE.search(s):
            s = d.DIGIT_RUN_RE.sub(self._digits_sub, s)
        if not self.send_default_pii and ("::" in s or s.count(":") >= 7):
            s = d.IPV6_RE.sub(self._ipv6_sub, s)
        for rx in self._patterns:
            s = rx.sub(repl, s)
        return s

    def _key_values(self, s: str) -> str:
        """Mask the value after each sensitive key: "key=value", "key: value", '"key": "v"'."""
        reversed_s: str | None = None
        n = len(s)
        pieces: list[str] = []
        pos = 0  # text before pos is in pieces
        skip_to = 0  # separators inside a value already handled are not keys
        classify = self._classify
        for sep in d.SEPARATOR_RE.finditer(s):
            i = sep.start()
            if i < skip_to or i == 0:
                continue
            if reversed_s is None:
                reversed_s = s[::-1]
            km = d.REVERSED_KEY_RE.match(reversed_s, n - i)
            if km is None:
                continue
            key = km["key"][::-1]
            key_start = n - km.end("key")
            if key_start and s[key_start - 1] == "\\" and key[0] in "nrt":
                key = key[1:]  # "\\nsession=..." in a repr: the "n" belongs to the escape
            if not classify(key):
                continue
            vm = d.VALUE_RE.match(s, i + 1)
            if vm is None:
                continue
            group = "qval" if vm["qval"] is not None else "val"
            start, end = vm.span(group)
            if s.startswith(self.replacement, start) or _PLACEHOLDER_RE.fullmatch(s, start, end):
                # already masked, or a logging template's "token=%s" (its parameter is masked)
                skip_to = end
                continue
            pieces.append(s[pos:start])
            pieces.append(self.replacement)
            pos = skip_to = end
        if not pieces:
            return s
        pieces.append(s[pos:])
        return "".join(pieces)

    def _tuple_pairs(self, s: str) -> str:
        def sub(m: re.Match[str]) -> str:
            if not self._classify(m["key"]) or m["qval"] == self.replacement:
                return m[0]
            start = m.start("qval") - m.start()
            return m[0][:start] + self.replacement + m[0][m.end("qval") - m.start() :]

        return d.KV_TUPLE_RE.sub(sub, s)

    def _cookie_sub(self, m: re.Match[str]) -> str:
        # the whole header value goes, even after the key=value pass masked its first cookie
        if m["val"].strip() == self.replacement:
            return m[0]
        return m[0][: m.start("val") - m.start()] + self.replacement

    def _keep_sub(self, m: re.Match[str]) -> str:
        return m["keep"] + self.replacement + m[0][m.end("secret") - m.start() :]

    def _auth_sub(self, m: re.Match[str]) -> str:
        secret = m["secret"]
        scheme = m["scheme"].lower()
        if scheme == "basic":
            # ("Basic dXNlcjpwdw==A"): the longest prefix that decodes to user:password is it
            for cut in range(min(len(secret), 256), 3, -1):
                if d.is_basic_credential(secret[:cut]):
                    return m["keep"] + self.replacement + secret[cut:]
            sensitive = len(secret) >= 20
        else:
            # Prose ("bearer authentication failed") is short and has no digits; tokens are neither.
            sensitive = len(secret) >= 20 or (len(secret) >= 8 and any(c.isdigit() for c in secret))
        return m["keep"] + self.replacement if sensitive else m[0]

    def _digits_sub(self, m: re.Match[str]) -> str:
        text = m[0]
        if not d.digits_stand_alone(m.string, m.start()):
            return text
        if "." in text:
            if not self.send_default_pii and d.is_personal_ipv4(text):
                return self.replacement
            return text
        return self.replacement if d.is_card_number(text) else text

    def _ipv6_sub(self, m: re.Match[str]) -> str:
        return self.replacement if d.is_personal_ipv6(m[0]) else m[0]


def _any_substring(words: tuple[str, ...]) -> Callable[[str], bool]:
    """`lambda s: "pass" in s or "token" in s or ...`: a chain of `in` tests runs ~3x faster than
    any() over a generator, and this runs on every string with a ":" or "="."""
    if not all(_TRIGGER_WORD.fullmatch(w) for w in words):
        return lambda s: any(w in s for w in words)
    source = "lambda s: " + (" or ".join(f"{w!r} in s" for w in words) or "False")
    # the source holds only repr()s of [a-z0-9] words, checked above
    check: Callable[[str], bool] = eval(source, {"__builtins__": {}})  # noqa: S307
    return check


_TRIGGER_WORD = re.compile(r"[a-z0-9]+")


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("latin-1")
    return ""


def _safe_str(key: object) -> str:
    try:
        return key if isinstance(key, str) else str(key)
    except Exception:
        return "?"


def _is_pair_list(items: list[Any] | tuple[Any, ...]) -> bool:
    """(name, value) pairs are a header or cookie list: ASGI scope["headers"] and reprs."""
    if not items:
        return False
    for item in items:
        if type(item) not in (list, tuple) or len(item) != 2 or not _looks_like_key(item[0]):
            return False
    return True


_KEY_LIKE = re.compile(r"b?['\"]?[A-Za-z_][A-Za-z0-9_.\-]{0,63}['\"]?")


def _looks_like_key(value: object) -> bool:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return isinstance(value, str) and _KEY_LIKE.fullmatch(value) is not None


def _patterns_tuple(value: object) -> tuple[str, ...]:
    # A single pattern may itself contain commas, so a string is one pattern, not a list.
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    return tuple(str(v) for v in value)  # type: ignore[attr-defined]


@lru_cache(maxsize=32)
def _cached_scrubber(
    send_default_pii: bool,
    extra_keys: tuple[str, ...],
    extra_patterns: tuple[str, ...],
    safe_keys: tuple[str, ...],
    replacement: str,
) -> Scrubber:
    return Scrubber(
        send_default_pii=send_default_pii,
        extra_keys=extra_keys,
        extra_patterns=extra_patterns,
        safe_keys=safe_keys,
        replacement=replacement,
    )


def scrub_event(event: dict[str, Any], settings: object | None = None) -> dict[str, Any]:
    """A copy of a Sentry event with secrets and (unless send_default_pii) personal data masked.

    `settings` is any object with SentrySettings' scrub_* attributes; None means the defaults. The
    Scrubber built for a given configuration is cached, so calling this per event is cheap.
    """
    scrubber = _cached_scrubber(
        bool(getattr(settings, "send_default_pii", False)),
        _as_tuple(getattr(settings, "scrub_extra_keys", ())),
        _patterns_tuple(getattr(settings, "scrub_extra_patterns", ())),
        _as_tuple(getattr(settings, "scrub_safe_keys", ())),
        getattr(settings, "scrub_replacement", None) or DEFAULT_REPLACEMENT,
    )
    return scrubber.scrub_event(event)
