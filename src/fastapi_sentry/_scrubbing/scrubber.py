"""Remove secrets and personal data from everything sentry-sdk is about to send.

sentry-sdk's own EventScrubber checks a fixed list of keys in a few places. Secrets mostly
travel elsewhere: inside strings (query strings, URLs, exception messages, log lines, SQL), under
keys it does not know ("X-Auth-Token", "refreshToken"), and in stack-frame locals as ASGI header
lists. This module walks the whole payload, checking keys by their words and strings by content.

Pure functions over plain data, no sentry_sdk import: usable in before_send,
before_send_transaction, before_send_log and before_send_metric (breadcrumbs are scrubbed with
their event), and testable without a client.
"""

from __future__ import annotations

import datetime
import importlib
import itertools
import logging
import operator
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from fastapi_sentry._errors import ConfigError
from fastapi_sentry._scrubbing import detectors as d

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
KEY_CACHE_SIZE = 8192
# printf-style and str.format placeholders in logging templates
_PLACEHOLDER_RE = re.compile(r"%%|%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[sdrifgeEGxXoc]|\{[^{}]*\}")
# Where a container sits: [parent's _Node, key or index in the parent, the container, its copy or
# None]. The walk copies a container only when something in it changes; a string it defers may
# change later, so the path to it is kept and copied then (see `_copy_of`).
_Node = list[Any]


class _Pending(list[tuple[_Node, Any, str]]):
    """Where the walk left each string not seen before: (its container's _Node, key or index, the
    string); and in `leaves`, whole lists of strings (source lines), whose strings are looked up
    and patched together at the end: a few C-level passes instead of a Python loop per item."""

    __slots__ = ("leaves",)

    def __init__(self) -> None:
        super().__init__()
        self.leaves: list[tuple[_Node, list[str] | tuple[str, ...]]] = []


_USER_PII_FIELDS = frozenset({"email", "username", "name", "geo"})
_warned = False


class ScrubbingConfigError(ConfigError):
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
    shape. A masked value keeps its key. The input is never modified; parts whose strings are all
    known and unchanged are shared, not copied.
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
        # the remembered strings whose scrubbed text differs (leaf containers are patched from it)
        self._changed: dict[str, str] = {}
        triggers = d.KV_TRIGGERS + (() if self.send_default_pii else d.PII_TRIGGERS)
        triggers += tuple(w for seq in self._rules.extra_sequences for w in seq)
        self._triggers = tuple(dict.fromkeys(triggers))
        self._has_trigger = _any_substring(self._triggers)
        self._key_has_trigger = _any_substring(self._triggers)
        self._first_look = d.first_look_res(send_default_pii=self.send_default_pii)
        self._c_matcher = _CMatcher.build(
            d.c_first_look_patterns(send_default_pii=self.send_default_pii, triggers=self._triggers)
        )
        self._masked_value = re.compile(
            r"[ \t]{0,4}(?:(?i:bearer|basic|digest|token)[ \t]+)?" + re.escape(self.replacement)
        ).match
        # key text in strings -> whether it holds a trigger fragment; keys recur like dict keys do
        self._key_runs: dict[bytes, bool] = {}
        self._kinds: dict[Any, int] = {}

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
        root: _Node = [None, None, event, out]
        pending = _Pending()
        for key, value in event.items():
            if key in _SKIPPED_TOP_LEVEL:
                continue
            mark, leaves_mark = len(pending), len(pending.leaves)
            try:
                if key in ("user", "logentry") and isinstance(value, dict):
                    out[key] = self._dict(value, 1, pending, root, key)
                else:
                    out[key] = self._field(key, value, 1, pending, root)
                    if out[key] is value and type(value) is str and value not in self._cache:
                        pending.append((root, key, value))  # scanned with the others
            except Exception as e:  # must never break error reporting
                _warn_once(e, key)
                del pending[mark:]  # their paths lead into the part masked here
                del pending.leaves[leaves_mark:]
                out[key] = self._blind(value, 0)
        try:
            # transactions only: their ids are new on every request, and their walks are short;
            # on an error event's long list of new strings the pass cost more than it saved
            if event.get("type") == "transaction" and not _PROTOCOL_KEYS.isdisjoint(
                map(_SECOND, pending)
            ):
                _drop_protocol_values(pending, root)
            self._settle(pending)
        except Exception as e:  # must never break error reporting
            _warn_once(e, "event")
            return {
                k: v if k in _SKIPPED_TOP_LEVEL else self._blind(v, 0) for k, v in event.items()
            }
        # user fields and logging parameters are masked by name, once their text is settled
        for key in ("user", "logentry"):
            original = event.get(key)
            if isinstance(original, dict) and isinstance(out[key], dict):
                try:
                    if key == "user":
                        out[key] = self._user(out[key])
                    else:
                        out[key] = self._logentry(out[key], original)
                except Exception as e:  # must never break error reporting
                    _warn_once(e, key)
                    out[key] = self._blind(original, 0)
        return out

    def scrub_breadcrumb(self, crumb: dict[str, Any]) -> dict[str, Any]:
        """Scrub one breadcrumb alone (the pipeline scrubs breadcrumbs with their event, so a
        breadcrumb that is never sent costs no scrubbing)."""
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

    def scrub_metric(self, metric: dict[str, Any]) -> dict[str, Any]:
        """Scrub a metric as before_send_metric receives it: its attributes are free-form
        values set by the caller (sentry-sdk sends `sentry_sdk.metrics.*` by default)."""
        scrubbed: dict[str, Any] = self._guarded(metric, "metric")
        return scrubbed

    def scrub_value(self, value: Any) -> Any:
        """Scrub any JSON-like value; the building block of the other entry points."""
        return self._guarded(value, "value")

    def clear_cache(self) -> None:
        """Forget remembered string results (the benchmark uses it to measure the cold cost)."""
        self._cache.clear()
        self._changed.clear()

    # --- the walk ---------------------------------------------------------------------------------
    # The walk copies a container only when something in it changes or may change. A string not
    # seen before is not scanned where it is found: the walk records where it sits (in a copy of
    # its container, so the input stays untouched) and `_settle` scans all of them together.

    def _guarded(self, value: Any, where: str) -> Any:
        try:
            return self._settled(value, 0)
        except Exception as e:  # must never break error reporting
            _warn_once(e, where)
            return self._blind(value, 0)

    def _settled(self, value: Any, depth: int, *, as_list: bool = False) -> Any:
        """Walk a part and scan its strings now: the root of a walk, or a part whose container
        cannot be patched later (a tuple, a header pair). `as_list`: a tuple walked as a list."""
        box = [value]
        pending = _Pending()
        walk = self._list if as_list else self._value
        box[0] = walk(value, depth, pending, [None, None, box, box], 0)
        self._settle(pending)
        return box[0]

    def _user(self, out: dict[str, Any]) -> dict[str, Any]:
        if self.send_default_pii:
            return out
        out = dict(out)
        out.pop("ip_address", None)  # Relay would reject a masked address; sentry-sdk drops it too
        for key in _USER_PII_FIELDS:
            if out.get(key) is not None:
                out[key] = self._mask(out[key])
        return out

    def _logentry(self, out: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
        """logging's ("token=%s", [secret]): only the template says what a positional param is."""
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

    def _kind(self, key: Any) -> int:
        kind = self._classify(key) if type(key) is str else self._classify(_key_text(key))
        if len(self._kinds) >= KEY_CACHE_SIZE:
            self._kinds.clear()
        self._kinds[key] = kind
        return kind

    def _field(self, key: object, value: Any, depth: int, pending: _Pending, parent: _Node) -> Any:
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kind(key)
        if kind:
            return self._mask(value)
        if type(value) is str:
            return self._cache.get(value, value)  # a new one is left to the caller to defer
        return self._value(value, depth, pending, parent, key)

    def _value(self, value: Any, depth: int, pending: _Pending, parent: _Node, at: Any) -> Any:
        t = type(value)
        if t is str:
            return self._text(value) if len(value) > 3 else value
        if t is dict:
            return self._dict(value, depth, pending, parent, at)
        if t is list:
            return self._list(value, depth, pending, parent, at)
        if value is None or t is bool or t is float:
            return value
        if t is int:
            return self.replacement if value > _CARD_MIN and d.is_card_number(str(value)) else value
        if t is tuple:
            new = self._settled(value, depth, as_list=True)
            return value if new is value else tuple(new)
        if isinstance(value, str):
            return self._text(str(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            text = raw.decode("utf-8", "replace")
            scrubbed = self._text(text)
            return value if scrubbed == text else scrubbed.encode("utf-8")
        if isinstance(value, Mapping):
            return self._dict(dict(value), depth, pending, parent, at)
        if isinstance(value, (list, tuple, set, frozenset)):
            return self._list(list(value), depth, pending, parent, at)
        if isinstance(value, (int, float, datetime.date, datetime.time, datetime.timedelta)):
            # breadcrumb timestamps arrive as datetimes; their repr would break sorting
            return value
        # An object sentry-sdk has not serialized yet: it would be sent as its repr, so scrub that.
        return self._text(repr(value))

    def _dict(
        self, mapping: dict[Any, Any], depth: int, pending: _Pending, parent: _Node, at: Any
    ) -> dict[Any, Any]:
        if depth > MAX_DEPTH:
            return self._blind(mapping, 0)  # type: ignore[no-any-return]
        node: _Node = [parent, at, mapping, None]
        kinds = self._kinds
        out: dict[Any, Any] | None = None
        known = self._cache.get
        # the hot loop of the scrubber: one dict look-up per key and per string when nothing is new
        for key, value in mapping.items():
            kind = kinds.get(key)
            if kind is None:
                kind = self._kind(key)
            if kind:
                new = self._mask(value)
            else:
                t = type(value)
                if t is str:
                    new = known(value)
                    if new is None:
                        if len(value) > 3:
                            pending.append((node, key, value))
                        continue
                    if new is value or new == value:
                        continue
                elif t is dict:
                    new = self._dict(value, depth + 1, pending, node, key)
                elif t is list:
                    new = self._list(value, depth + 1, pending, node, key)
                elif (t is int and -_CARD_MIN < value < _CARD_MIN) or t is bool or value is None:
                    continue
                else:
                    new = self._value(value, depth + 1, pending, node, key)
            if new is not value:
                if out is None:
                    out = node[3] = dict(mapping)
                out[key] = new
        return mapping if out is None else out

    def _list(
        self,
        items: list[Any] | tuple[Any, ...],
        depth: int,
        pending: _Pending,
        parent: _Node,
        at: Any,
    ) -> list[Any] | tuple[Any, ...]:
        if depth > MAX_DEPTH:
            return self._blind(items, 0)  # type: ignore[no-any-return]
        if not items:
            return items
        if type(items[0]) in (list, tuple) and _is_pair_list(items):
            return self._pairs(items, depth)
        if len(items) == 2 and _looks_like_key(items[0]) and self._classify(_key_text(items[0])):
            # a lone ("authorization", "Bearer ...") pair, e.g. a loop variable over headers
            return self._pairs([items], depth)[0]  # type: ignore[no-any-return]
        # a tuple is patched as a list copy, which _value makes a tuple again once it is settled
        node: _Node = [parent, at, items, None]
        if set(map(type, items)) == _STRINGS_ONLY:
            # source lines, argv: their strings are looked up and settled with the others, in C
            pending.leaves.append((node, items))
            return items
        out: list[Any] | None = None
        new: Any
        known = self._cache.get
        for i, item in enumerate(items):
            t = type(item)
            if t is str:
                new = known(item)
                if new is None:
                    if len(item) > 3:
                        pending.append((node, i, item))
                    continue
                if new is item or new == item:
                    continue
            elif t is dict:
                new = self._dict(item, depth + 1, pending, node, i)
            elif (t is int and -_CARD_MIN < item < _CARD_MIN) or t is bool or item is None:
                continue
            else:
                new = self._value(item, depth + 1, pending, node, i)
            if new is not item:
                if out is None:
                    out = node[3] = list(items)
                out[i] = new
        return items if out is None else out

    def _pairs(self, items: list[Any] | tuple[Any, ...], depth: int) -> list[Any] | tuple[Any, ...]:
        """(name, value) pairs are a header or cookie list: ASGI scope["headers"] and reprs."""
        out: list[Any] | None = None
        for i, item in enumerate(items):
            name, value = item
            kind = self._classify(_key_text(name))
            new_value = self._mask(value) if kind else self._settled(value, depth + 1)
            new_name = self._settled(name, depth + 1)
            if new_value is value and new_name is name:
                continue
            if out is None:
                out = list(items)
            out[i] = type(item)((new_name, new_value))
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

    def _settle(self, pending: _Pending) -> None:
        """Scan the strings the walk deferred and write the changed ones into the copies."""
        leaves = pending.leaves
        if not pending and not leaves:
            return
        strings = set(map(_THIRD, pending))
        if leaves:
            texts: set[str] = set()
            texts.update(*map(_SECOND, leaves))
            # C-level: the new ones long enough to scan (as the walk does with single strings)
            texts.difference_update(self._cache)
            strings.update(itertools.compress(texts, map(_LONGER_THAN_3, map(len, texts))))
        changed = self._scan_new(list(strings)) if strings else {}
        if changed:
            # C-level filtering: only a few of the deferred strings change
            hits = map(changed.__contains__, map(_THIRD, pending))
            for node, key, s in itertools.compress(pending, hits):
                _copy_of(node)[key] = changed[s]
        if leaves and (changed or self._changed):
            known = {**self._changed, **changed} if changed else self._changed
            for node, leaf in leaves:
                if not known.keys().isdisjoint(leaf):
                    copy = _copy_of(node)
                    for i, s in enumerate(leaf):
                        if len(s) > 3 and s in known:
                            copy[i] = known[s]

    def _text(self, s: str) -> str:
        done = self._cache.get(s)
        if done is not None:
            return done
        return self._scan_new([s]).get(s, s)

    def _scan_new(self, strings: list[str]) -> dict[str, str]:
        """Scrub strings not seen before; returns those that changed, remembers the short ones."""
        changed = {}
        scan = self._scan
        for i in self._suspects(strings):
            s = strings[i]
            out = scan(s)
            if out != s:
                changed[s] = out
        cache = self._cache
        if max(map(len, strings)) > TEXT_CACHE_MAX_LEN:
            strings = list(
                itertools.compress(strings, map(TEXT_CACHE_MAX_LEN.__ge__, map(len, strings)))
            )
        if len(cache) + len(strings) > TEXT_CACHE_SIZE:
            cache.clear()
            self._changed.clear()
        cache.update(zip(strings, strings, strict=True))
        kept = {s: out for s, out in changed.items() if s in cache}
        cache.update(kept)
        self._changed.update(kept)
        return changed

    def _suspects(self, strings: list[str]) -> set[int]:
        """Indexes of the strings that hold a first-look fragment (see _detectors); the others
        cannot change, so the detectors never see them. A few C-level searches over all the
        strings joined cost far less than any per-string Python work."""
        joined = "\x00".join(strings)
        suspects: set[int] = set()
        if not joined.isascii() or joined.count("\x00") >= len(strings):
            # Case folding may change lengths, the patterns assume ASCII and "\x00" separates:
            # such strings are scanned whole and stand in as harmless text of the same length.
            odd = [i for i, s in enumerate(strings) if not s.isascii() or "\x00" in s]
            suspects.update(odd)
            plain = list(strings)
            for i in odd:
                plain[i] = "x" * len(strings[i])
            joined = "\x00".join(plain)
        raw = joined.encode("ascii")
        ends = self._c_matcher.ends(raw) if self._c_matcher is not None else None
        if ends is not None:
            suspects.update(_owners(raw, ends))
        else:
            suspects.update(_owners(joined, self._fragments(joined)))
            suspects.update(self._keyed_separators(raw))
            digits = raw.translate(d.CARD_DIGITS, d.CARD_SEPARATORS)
            suspects.update(_owners(digits, _find_all(digits, d.CARD_RUN, [])))
        if self._patterns:
            suspects.update(
                i for i, s in enumerate(strings) if any(rx.search(s) for rx in self._patterns)
            )
        return suspects

    def _fragments(self, joined: str) -> list[int]:
        """Where the value detectors' fragments are in the joined text."""
        positions = [
            m.start()
            for first, rx in self._first_look
            if first in joined
            for m in rx.finditer(joined)
        ]
        lower = joined.lower()
        for word in d.FIRST_LOOK_WORDS:
            _find_all(lower, word, positions)
        for word in d.AUTH_SCHEMES:
            for at in _find_all(lower, word, []):
                after = lower[at + len(word) : at + len(word) + 1]
                if after.isspace() or after in ("+", "%"):
                    positions.append(at)
        for word, rx in d.SECRET_PHRASE_FIRST_LOOK:
            positions.extend(at for at in _find_all(lower, word, []) if rx.match(lower, at))
        return positions

    def _keyed_separators(self, raw: bytes) -> set[int]:
        """The strings with a ":" or "=" after a key that holds a trigger fragment."""
        keyed = raw.translate(d.KEY_RUN_TABLE, d.KEY_RUN_DELETED)
        pieces = keyed.split(b"=")
        pieces.pop()  # the text after the last separator
        known = self._key_runs
        unique = list(set(map(_THIRD, map(bytes.rpartition, pieces, itertools.repeat(b"\x01")))))
        flags = list(map(known.get, unique))  # C-level: a key seen before costs one look-up
        if None in flags:
            if len(known) >= KEY_CACHE_SIZE:
                known.clear()
            for i in itertools.compress(range(len(unique)), map(operator.is_, flags, _NONES)):
                # a run may reach back over "\x00" into the string before: not part of the key
                run = unique[i]
                flags[i] = known[run] = self._key_has_trigger(run.rpartition(b"\x00")[2].decode())
        separators: list[int] = []
        for run in itertools.compress(unique, flags):
            # every "=" the run stands before (or a longer run ending like it: fine); the run may
            # start in an earlier string, the "=" is in the one to scan
            separators.extend(at + len(run) for at in _find_all(keyed, run + b"=", []))
        return _owners(keyed, separators)

    def _scan(self, s: str, *, thorough: bool = False) -> str:
        """Every detector on one string. Each runs only if a cheap test says it may match;
        `thorough` skips those tests (the property tests compare the two: a test that skips a
        detector which would have matched is how "BeaRer <token>" once went out in clear)."""
        repl = self.replacement
        # the detectors for words and schemes ignore case, so their cheap tests must too
        low = s.lower()
        if thorough or (("=" in s or ":" in s) and self._has_trigger(low)):
            s = self._key_values(s)
        if thorough or ("(" in s and ("'" in s or '"' in s)):
            s = self._tuple_pairs(s)
        if thorough or "cookie" in low:
            s = d.COOKIE_TEXT_RE.sub(self._cookie_sub, s)
        if thorough or "-----BEGIN" in s:
            s = d.PEM_RE.sub(repl, s)
        if thorough or "@" in s:
            if thorough or "://" in s:
                s = d.URL_USERINFO_RE.sub(self._keep_sub, s)
            if not self.send_default_pii:
                s = d.EMAIL_RE.sub(repl, s)
        if thorough or "bearer" in low or "basic" in low or "digest" in low:
            s = d.AUTH_SCHEME_RE.sub(self._auth_sub, s)
        if thorough or "eyJ" in s:
            s = d.JWT_RE.sub(repl, s)
        if thorough or d.key_format_hint(s):
            s = d.KEY_FORMAT_RE.sub(repl, s)
        if (
            thorough
            or "token" in low
            or "pass" in low
            or "pwd" in low
            or "secret" in low
            or "key" in low
        ):  # the words of d.SECRET_PHRASE_FIRST_LOOK, chained: cheaper than any()
            s = d.SECRET_PHRASE_RE.sub(self._phrase_sub, s)
        if thorough or "hooks.slack.com" in s:
            s = d.SLACK_WEBHOOK_RE.sub(self._keep_sub, s)
        if thorough or d.DIGIT_HINT_RE.search(s):
            s = d.DIGIT_RUN_RE.sub(self._digits_sub, s)
        if not self.send_default_pii and (thorough or "::" in s or s.count(":") >= 7):
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
            masked = self._masked_value(s, i + 1)
            if masked is not None:
                # "Basic [Filtered]": the scheme word is no value to mask (a second pass is a no-op)
                skip_to = masked.end()
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

    def _phrase_sub(self, m: re.Match[str]) -> str:
        secret = m["secret"]
        if secret.startswith(self.replacement) or not d.looks_like_credential(secret):
            return m[0]
        core = secret.rstrip(d.SENTENCE_END)
        return m["keep"] + self.replacement + secret[len(core) :]

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


class _CMatcher:
    """The first look in one pass of Hyperscan (the optional `fast` extra) instead of a few dozen
    passes in Python. Both are supersets of the detectors, so the output is the same with or
    without it (tests/scrubbing/test_first_look.py holds both to that)."""

    def __init__(self, database: Any) -> None:
        self._database = database
        # the database's scratch space serves one scan at a time; a second thread takes the
        # Python path rather than wait
        self._lock = threading.Lock()

    @classmethod
    @lru_cache(maxsize=8)
    def build(cls, patterns: tuple[tuple[bytes, bool], ...]) -> _CMatcher | None:
        """Compiling takes a good part of a second: once per configuration and process, shared by
        its Scrubbers (the lock makes that safe)."""
        try:
            hs = importlib.import_module("hyperscan")
        except ImportError:
            return None
        try:
            database = hs.Database()
            database.compile(
                expressions=[p for p, _ in patterns],
                ids=list(range(len(patterns))),
                elements=len(patterns),
                flags=[
                    hs.HS_FLAG_DOTALL | (hs.HS_FLAG_CASELESS if caseless else 0)
                    for _, caseless in patterns
                ],
            )
        except Exception:  # a broken install must not break scrubbing: the Python path works
            logger.debug("hyperscan is installed but unusable; scrubbing without it", exc_info=True)
            return None
        return cls(database)

    def ends(self, raw: bytes) -> list[int] | None:
        """The position of the last byte of every match, or None if the Python path must look."""
        if not raw or not self._lock.acquire(blocking=False):
            return None
        try:
            found: list[int] = []
            add = found.append

            def on_match(_id: int, _start: int, end: int, _flags: int, _context: object) -> None:
                add(end - 1)

            self._database.scan(raw, match_event_handler=on_match)
            return found
        except Exception:
            logger.debug(
                "hyperscan failed on a scan; the Python first look took over", exc_info=True
            )
            return None
        finally:
            self._lock.release()


def _copy_of(node: _Node) -> Any:
    """The copy of a container the walk left as it was, made (with the path to it) on the first
    string that changes in it."""
    copy = node[3]
    if copy is None:
        original = node[2]
        copy = node[3] = dict(original) if type(original) is dict else list(original)
        _copy_of(node[0])[node[1]] = copy
    return copy


def _hex_id(length: int) -> Callable[[str], bool]:
    # strip() removes every character only when all of them are lowercase hex
    return lambda s: len(s) == length and not s.strip("0123456789abcdef")


_HEX32 = _hex_id(32)
_HEX16 = _hex_id(16)
# at most 12 digits in a run: no room for a card number
_DECIMAL = re.compile(r"\d(?:\.\d{1,12})?(?:e-\d{2,3})?").fullmatch
_ISO_TIME = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)?"
).fullmatch
_TRACE_FORMATS: dict[str, Callable[[str], object]] = {
    "trace_id": _HEX32,
    "span_id": _HEX16,
    "parent_span_id": _HEX16,
}
_SPAN_FORMATS: dict[str, Callable[[str], object]] = {
    **_TRACE_FORMATS,
    "start_timestamp": _ISO_TIME,
    "timestamp": _ISO_TIME,
}
_DSC_FORMATS: dict[str, Callable[[str], object]] = {
    "trace_id": _HEX32,
    "sample_rand": _DECIMAL,
    "sample_rate": _DECIMAL,
    "sampled": {"true", "false"}.__contains__,
}
_PROTOCOL_KEYS = frozenset({*_SPAN_FORMATS, *_DSC_FORMATS, "request_id"})


def _protocol_format(node: _Node, key: Any, root: _Node) -> Callable[[str], object] | None:
    """The format fixed for the value at `key` of this container, if the container sits at one
    of the protocol's places: contexts.trace, its dynamic_sampling_context, spans[i],
    breadcrumbs.values[i], and our own tags.request_id."""
    parent, at = node[0], node[1]
    if parent is None:
        return None
    if parent is root:
        return _HEX32 if at == "tags" and key == "request_id" else None
    grandparent = parent[0]
    if grandparent is root:
        if type(at) is int and parent[1] == "spans":
            return _SPAN_FORMATS.get(key)
        if at == "trace" and parent[1] == "contexts":
            return _TRACE_FORMATS.get(key)
        return None
    if grandparent is None or grandparent[0] is not root:
        return None
    if at == "dynamic_sampling_context" and parent[1] == "trace" and grandparent[1] == "contexts":
        return _DSC_FORMATS.get(key)
    if type(at) is int and key == "timestamp" and parent[1] == "values":
        return _ISO_TIME if grandparent[1] == "breadcrumbs" else None
    return None


def _drop_protocol_values(pending: _Pending, root: _Node) -> None:
    """Ids, sampling figures and timestamps at the protocol's places, in the exact format the
    protocol gives them, cannot hold a secret: they are left unscanned (and uncached: most are new
    on every event). A span id of digits that passes the card check stays an id, and anything
    else at those places is scanned as everywhere."""
    flags = list(map(_PROTOCOL_KEYS.__contains__, map(_SECOND, pending)))
    for i in itertools.compress(range(len(pending)), flags):
        node, key, s = pending[i]
        fits = _protocol_format(node, key, root)
        flags[i] = fits is not None and bool(fits(s))
    pending[:] = itertools.compress(pending, map(operator.not_, flags))


_STRINGS_ONLY = {str}
_LONGER_THAN_3 = (3).__lt__


def _any_substring(words: tuple[str, ...]) -> Callable[[str], bool]:
    """`lambda s: "pass" in s or "token" in s or ...`: a chain of `in` tests is much faster than
    any() over a generator (`benchmarks/bench_scrubbing.py --breakdown`), and this runs on every
    string with a ":" or "="."""
    if not all(_TRIGGER_WORD.fullmatch(w) for w in words):
        return lambda s: any(w in s for w in words)
    source = "lambda s: " + (" or ".join(f"{w!r} in s" for w in words) or "False")
    # the source holds only repr()s of [a-z0-9] words, checked above
    check: Callable[[str], bool] = eval(source, {"__builtins__": {}})  # noqa: S307
    return check


_TRIGGER_WORD = re.compile(r"[a-z0-9]+")


_SECOND = operator.itemgetter(1)
_THIRD = operator.itemgetter(2)


_NONES = itertools.repeat(None)
# an int below this has fewer than 13 digits: no card number
_CARD_MIN = 10**12


def _find_all(text: Any, part: Any, into: list[int]) -> list[int]:
    at = text.find(part)
    while at >= 0:
        into.append(at)
        at = text.find(part, at + 1)
    return into


def _owners(text: Any, positions: list[int]) -> set[int]:
    """Which of the "\x00"-joined strings each position falls in."""
    owners = set()
    index = start = 0
    for at in sorted(positions):
        index += text.count(b"\x00" if isinstance(text, bytes) else "\x00", start, at)
        start = at
        owners.add(index)
    return owners


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
