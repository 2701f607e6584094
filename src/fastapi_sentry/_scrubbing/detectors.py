"""What counts as a secret or as personal data: key rules and value detectors.

Kept apart from the walker in `_scrubbing` so the rules can be read, tested and tuned on their own.
Nothing here imports sentry_sdk: the disabled mode must not pay for it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Iterable
from functools import lru_cache

KEEP = 0
SECRET = 1
PII = 2

# Words that make a key secret wherever they appear in it, once case, "-", "_", "." and camelCase
# are folded. Whole words only: "author", "monkey", "keyboard" and "tokenizer" are different words
# and survive.
SECRET_WORDS = frozenset(
    {
        "accesskey",
        "accesstoken",
        "aiohttp",  # only ever seen here as aiohttp_session
        "apikey",
        "apikeys",
        "apitoken",
        "auth",
        "authkey",
        "authorisation",
        "authorization",
        "authtoken",
        "bearer",
        "cookie",
        "cookies",
        "cred",
        "credential",
        "credentials",
        "creds",
        "csrf",
        "csrftoken",
        "cvc",
        "cvv",
        "dsn",
        "forwarded",
        "idtoken",
        "jsessionid",
        "jwt",
        "masterkey",
        "oauth",
        "otp",
        "pass",
        "passcode",
        "passphrase",
        "passwd",
        "password",
        "passwords",
        "phpsessid",
        "pin",
        "privatekey",
        "privkey",
        "pw",
        "pwd",
        "refreshtoken",
        "secret",
        "secretkey",
        "secrets",
        "session",
        "sessionid",
        "sessiontoken",
        "sessid",
        "sid",
        "signature",
        "signingkey",
        "ssn",
        "symfony",
        "token",
        "totp",
        "xsrf",
        "xsrftoken",
    }
)
SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("card", "number"),
        ("cc", "number"),
        ("credit", "card"),
        ("private", "key"),
        ("recovery", "code"),
        ("security", "code"),
        ("mfa", "code"),
    }
)
# A key whose last word is "key" is a secret ("stripe_key", "anthropic_key", "X-Api-Key") unless the
# word before it says it is a data-structure key, not a credential.
BENIGN_KEY_QUALIFIERS = frozenset(
    {
        "bucket",
        "cache",
        "column",
        "composite",
        "config",
        "dedup",
        "dedupe",
        "dict",
        "entry",
        "event",
        "field",
        "foreign",
        "group",
        "grouping",
        "hash",
        "hot",
        "i18n",
        "idempotency",
        "index",
        "job",
        "label",
        "lock",
        "lookup",
        "map",
        "message",
        "metric",
        "natural",
        "object",
        "order",
        "partition",
        "primary",
        "public",
        "query",
        "queue",
        "range",
        "rate",
        "redis",
        "registry",
        "routing",
        "row",
        "s3",
        "schema",
        "search",
        "setting",
        "settings",
        "shard",
        "sort",
        "state",
        "storage",
        "surrogate",
        "task",
        "template",
        "translation",
        "unique",
    }
)
# Lower-cased header names lose their camelCase ("newpassword", "webhooksecret"), so a word that
# ends with one of these, or contains "password", is secret too; "tokenizer", "secretary" and
# "monkey" are not.
SECRET_SUFFIXES = (
    "accesskey",
    "apikey",
    "auth",
    "authorisation",
    "authorization",
    "cookie",
    "credentials",
    "csrf",
    "passphrase",
    "signature",
    "xsrf",
    "privatekey",
    "secret",
    "secretkey",
    "secrets",
    "sessionid",
    "signingkey",
    "token",
)
SECRET_INFIXES = ("passwd", "password")
PII_SUFFIXES = ("email", "username")
PII_WORDS = frozenset(
    {
        "birth",
        "birthdate",
        "birthday",
        "dob",
        "email",
        "emails",
        "ip",
        "ipaddress",
        "ips",
        "ipv4",
        "ipv6",
        "login",
        "phone",
        "username",
        "usernames",
    }
)
PII_PAIRS = frozenset({("e", "mail"), ("remote", "addr"), ("remote", "address"), ("user", "name")})
# A key ending in one of these describes a secret without holding it ("token_type", "session_count",
# "password_min_length", "access_token_expires_in"), so the key alone does not mask it; its value is
# still scanned by the value detectors.
METADATA_SUFFIXES = frozenset(
    {
        "age",
        "attempt",
        "attempts",
        "configured",
        "count",
        "counts",
        "disabled",
        "domain",
        "enabled",
        "endpoint",
        "expiration",
        "expired",
        "expires",
        "expiry",
        "failures",
        "field",
        "fields",
        "format",
        "httponly",
        "kind",
        "len",
        "length",
        "lifetime",
        "limit",
        "limits",
        "max",
        "method",
        "methods",
        "min",
        "path",
        "policy",
        "present",
        "provider",
        "providers",
        "required",
        "retries",
        "rotation",
        "samesite",
        "scheme",
        "schemes",
        "secure",
        "set",
        "size",
        "status",
        "strength",
        "ttl",
        "type",
        "types",
        "uri",
        "url",
        "urls",
        "usage",
        "used",
        "valid",
        "verified",
        "version",
    }
)
_TRAILING_FILLERS = frozenset({"at", "in", "on", "ms", "s", "sec", "secs", "seconds"})
_BOOLEAN_PREFIXES = frozenset({"has", "is", "needs", "require", "requires", "use", "uses"})

_CAMEL_1 = re.compile(r"([a-z0-9])([A-Z])")
_CAMEL_2 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def unquote_key(key: str) -> str:
    """Strip repr quoting: serialized frame locals turn b"authorization" into "b'authorization'"."""
    if len(key) >= 3 and key[0] == "b" and key[1] in "'\"" and key[-1] == key[1]:
        return key[2:-1]
    if len(key) >= 2 and key[0] in "'\"" and key[-1] == key[0]:
        return key[1:-1]
    return key


@lru_cache(maxsize=8192)
def key_words(key: str) -> tuple[str, ...]:
    """Fold a key to words: "X-Api-Key", "x_api_key" and "xApiKey" give ("x", "api", "key")."""
    key = unquote_key(key.strip())
    key = _CAMEL_2.sub(r"\1 \2", _CAMEL_1.sub(r"\1 \2", key))
    words = []
    for word in _NON_WORD.split(key.lower()):
        if not word:
            continue
        # "password2", "oauth2", "cvv2" mean the same as without the digit; "s3" and "v2" stay as
        # is.
        stripped = word.rstrip("0123456789")
        words.append(stripped if len(stripped) >= 3 else word)
    return tuple(words)


# Every key the rules above call secret or personal contains one of these fragments (lower-cased);
# the key=value text scan runs only on strings that do. "ip" is left out on purpose: it is in too
# many words, and the values under such keys are IP addresses, which the value detectors find.
KV_TRIGGERS = (
    "pass", "pw", "secret", "token", "auth", "key", "cookie", "sess", "sid", "csrf", "xsrf",
    "cred", "jwt", "bearer", "dsn", "forwarded", "otp", "pin", "cvv", "cvc", "ssn", "signature",
    "symfony", "aiohttp", "card", "cc", "recovery", "security", "mfa",
)  # fmt: skip
PII_TRIGGERS = ("mail", "user", "login", "phone", "addr", "birth", "dob")


def _has_sequence(words: tuple[str, ...], sequences: Iterable[tuple[str, ...]]) -> bool:
    for seq in sequences:
        n = len(seq)
        for i in range(len(words) - n + 1):
            if words[i : i + n] == seq:
                return True
    return False


def _secret_word(word: str) -> bool:
    return (
        word in SECRET_WORDS
        or word.endswith(SECRET_SUFFIXES)
        or any(infix in word for infix in SECRET_INFIXES)
    )


class KeyRules:
    """Classifies a dict key (or a header name) as KEEP, SECRET or PII."""

    def __init__(
        self,
        *,
        send_default_pii: bool,
        extra_keys: Iterable[str] = (),
        safe_keys: Iterable[str] = (),
    ) -> None:
        self.send_default_pii = send_default_pii
        self.extra_sequences = frozenset(w for w in (key_words(k) for k in extra_keys) if w)
        self.safe_keys = frozenset(w for w in (key_words(k) for k in safe_keys) if w)
        self.classify: Callable[[str], int] = lru_cache(maxsize=8192)(self._classify)

    def _classify(self, key: str) -> int:
        words = key_words(key)
        if not words or words in self.safe_keys:
            return KEEP
        if _has_sequence(words, self.extra_sequences):
            return SECRET
        core = words
        while len(core) > 1 and core[-1] in _TRAILING_FILLERS:
            core = core[:-1]
        if len(core) > 1 and (core[-1] in METADATA_SUFFIXES or core[0] in _BOOLEAN_PREFIXES):
            return KEEP
        if any(_secret_word(w) for w in core) or _has_sequence(core, SECRET_PAIRS):
            return SECRET
        last = core[-1]
        if last in ("key", "keys") and (len(core) == 1 or core[-2] not in BENIGN_KEY_QUALIFIERS):
            return SECRET
        if not self.send_default_pii and (
            any(w in PII_WORDS or w.endswith(PII_SUFFIXES) for w in core)
            or _has_sequence(core, PII_PAIRS)
        ):
            return PII
        return KEEP


# --- value detectors ------------------------------------------------------------------------------

PEM_RE = re.compile(
    r"-----BEGIN[A-Z0-9 +%]*PRIVATE(?: |\+|%20)KEY(?:(?: |\+|%20)BLOCK)?-----"
    r".*?(?:-----END[A-Z0-9 +%]*PRIVATE(?: |\+|%20)KEY(?:(?: |\+|%20)BLOCK)?-----|\Z)",
    re.S,
)
# The whole userinfo goes: in a Sentry DSN the "user" part is the key.
URL_USERINFO_RE = re.compile(
    r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.\-]{0,30}://)(?P<secret>[^/\s@'\"<>?#]+)@"
)
AUTH_SCHEME_RE = re.compile(
    r"(?P<keep>(?i:(?:\b|(?<=\\[nrt]))(?P<scheme>bearer|basic|digest)(?:\s+|\+|%20)))"
    r"(?P<secret>[A-Za-z0-9._~+/=\-]{4,})"
)
JWT_RE = re.compile(r"eyJ[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]*")
KEY_FORMAT_RE = re.compile(
    r"(?:(?<![A-Za-z0-9])|(?<=\\[nrt]))(?:"
    r"(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{10,}"  # Stripe secret, restricted, publishable
    r"|whsec_[0-9A-Za-z+/=]{16,}"  # Stripe webhook signing secret
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"  # AWS access key ids
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google API keys
    r"|sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{20,}"  # OpenAI / Anthropic
    r"|glpat-[A-Za-z0-9_\-]{20,}"  # GitLab
    r"|npm_[A-Za-z0-9]{36}"  # npm
    r")"
)
# A secret named in prose: "rejected token tok_8fA3...", "password is hunter2". The word alone
# says little ("the password is required"), so `looks_like_credential` judges the value.
SECRET_PHRASE_RE = re.compile(
    r"(?P<keep>(?i:(?:(?<![a-z0-9])|(?<=\\[nrt]))"
    r"(?:tokens?|passw(?:or)?ds?|pwd|pass(?:phrase|code)|secrets?"
    r"|(?:api|access|secret|private)[ _\-]?keys?)"
    r"[ \t]+(?:(?:is|was|of|=|:)[ \t]+)?[\"'`]?))"
    r"(?P<secret>[^\s\"'`<>,;()\[\]{}]{6,})"
)
# The same words for the first look, which runs on lower-cased text: each word is found with
# str.find (far cheaper than a regex scan of the whole text), and its pattern is tried only there.
SECRET_PHRASE_FIRST_LOOK = tuple(
    (word, re.compile(pattern))
    for word, pattern in (
        ("token", r"tokens?[ \t]"),
        ("pass", r"pass(?:w(?:or)?ds?|phrase|code)[ \t]"),
        ("pwd", r"pwd[ \t]"),
        ("secret", r"secrets?[ \t]"),
        (
            "key",
            r"key(?:(?<=apikey)|(?<=accesskey)|(?<=secretkey)|(?<=privatekey)|(?<=api[ _\-]key)"
            r"|(?<=access[ _\-]key)|(?<=secret[ _\-]key)|(?<=private[ _\-]key))s?[ \t]",
        ),
    )
)
SENTENCE_END = ".,;:!?"
_SYMBOLS = frozenset("!@#$%^&*+/=~_|\\")


def looks_like_credential(value: str) -> bool:
    """A word after "password" or "token" that no prose would use: letters with digits, mixed case
    inside the word, symbols, a long digit run or a long random run. "required", "Invalid",
    "re-entered" and "3600" stay."""
    value = value.rstrip(SENTENCE_END)
    if len(value) < 6:
        return False
    if value.isdigit():
        return len(value) >= 6
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    if has_digit and has_alpha:
        return True
    if any(c in _SYMBOLS for c in value) and (has_alpha or has_digit):
        return True
    if value[1:] != value[1:].lower() and value[1:] != value[1:].upper():
        return True  # "xYzAbCdE", not "Invalid" or "NULL"
    return len(value) >= 24 and value.isalnum()


SLACK_WEBHOOK_RE = re.compile(r"(?P<keep>hooks\.slack\.com/services/)(?P<secret>[A-Za-z0-9/_\-]+)")
# Lookbehinds also accept an escape before the match: reprs of frame locals spell a newline "\\n".
# One scan for every digit-shaped candidate (card numbers, IPv4 addresses); the callback decides.
# It starts with \d so the regex engine can skip to digits fast; the "not glued to a word" check
# happens in the callback (see `digits_stand_alone`).
DIGIT_RUN_RE = re.compile(r"\d(?:[ .\-+]?\d|%20\d){3,22}(?![\w])")
# Every IPv4 address has "d.d" and every written card number "ddd" or "d-d-d": a cheap first look
# that lets about one string in four through to DIGIT_RUN_RE.
DIGIT_HINT_RE = re.compile(r"\d(?:\d\d|\.\d|[ \-+]\d[ \-+]\d)")
EMAIL_RE = re.compile(
    r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}"
)
IPV6_RE = re.compile(
    r"(?:(?<![\w:.])|(?<=\\[nrt]))(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"
)

# key=value / key: value / "key": "value" in free text (query strings, JSON and reprs inside
# strings, log lines). Scanning for the separators and reading the key backwards is several times
# cheaper than a forward regex that has to try every word as a possible key.
SEPARATOR_RE = re.compile(r"[:=]")
REVERSED_KEY_RE = re.compile(r"[ \t]{0,4}(?:[\"']\\?)?(?P<key>[A-Za-z0-9_.\-]{1,64})")
VALUE_RE = re.compile(
    r"[ \t]{0,4}(?:(?P<q>\\?[\"'])(?P<qval>[^\"'\\\n]{1,4000})(?P=q)"
    r"|(?:(?i:bearer|basic|digest|token)[ \t]+)?(?P<val>[^\s\"'&,;{}\[\]()<>]+))"
)
# ('authorization', 'Bearer x') pairs inside reprs of header lists.
KV_TUPLE_RE = re.compile(
    r"\(\s*b?(?P<kq>[\"'])(?P<key>[^\"']{1,64})(?P=kq)\s*,\s*b?(?P<vq>[\"'])(?P<qval>[^\"']{1,4000})(?P=vq)"
)
COOKIE_TEXT_RE = re.compile(
    r"(?i:(?:\b|(?<=\\[nrt]))(?:set-)?cookie)(?P<sep>\s*[:=]\s*)(?P<val>[^\r\n\"']+)"
)

# Card issuer prefixes, so that 13-19 digit ids and millisecond timestamps are not taken for cards.
_CARD_IIN_RE = re.compile(
    r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3(?:0[0-5]|[68])|6(?:011|5|4[4-9]|2)|35(?:2[89]|[3-8])"
)


_CARD_SEPARATORS = str.maketrans("", "", " -+")


def digits_stand_alone(text: str, start: int) -> bool:
    """A digit run counts only if it does not continue a word or a dotted number ("v2.4111...")."""
    if start == 0:
        return True
    before = text[start - 1]
    if before.isalnum() or before in "_.":
        # "\\n4111..." in a repr: the "n" belongs to an escape
        return start >= 2 and text[start - 2] == "\\" and before in "nrt"
    return True


def luhn_ok(digits: str) -> bool:
    total = 0
    parity = len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def is_card_number(candidate: str) -> bool:
    digits = candidate.replace("%20", "").translate(_CARD_SEPARATORS)
    return (
        digits.isdigit()
        and 13 <= len(digits) <= 19
        and _CARD_IIN_RE.match(digits) is not None
        and luhn_ok(digits)
    )


def is_personal_ipv4(candidate: str) -> bool:
    """Loopback and unspecified addresses name the server, not a person: keep them."""
    parts = candidate.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return False
    return parts[0] != "127" and candidate != "0.0.0.0"


def is_personal_ipv6(candidate: str) -> bool:
    if "::" not in candidate and candidate.count(":") != 7:
        return False
    try:
        addr = ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return not (addr.is_loopback or addr.is_unspecified)


def is_basic_credential(token: str) -> bool:
    """ "Basic <base64 of user:password>"; plain prose after the word "basic" is left alone."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in raw


def key_format_hint(s: str) -> bool:
    # chained `in` tests, not a loop: this runs on every string
    return (
        (
            "_" in s
            and (
                "sk_" in s
                or "rk_" in s
                or "pk_" in s
                or "whsec_" in s
                or "gh" in s
                or "npm_" in s
                or "github_pat_" in s
            )
        )
        or ("-" in s and ("xox" in s or "sk-" in s or "glpat-" in s))
        or "AKIA" in s
        or "ASIA" in s
        or "AIza" in s
        or "ABIA" in s
        or "ACCA" in s
    )


# --- the first look -------------------------------------------------------------------------------
# Running every detector on every string costs microseconds per string in pure Python. The scrubber
# instead searches all of an event's new strings at once, joined by "\x00" (which nothing below
# matches, so no hit spans two strings), and runs the detectors only on the strings that hit. Each
# pattern is a necessary condition of a detector above, written for ASCII text (other strings skip
# the first look) and starting with a character that is rare in ordinary text, so that the regex
# engine can skip to candidates. tests/test_scrubbing_first_look.py checks that a string with no
# hit is one the detectors leave alone.

# The key=value scan: every ":" and "=" becomes "=", upper case becomes lower, the spaces, tabs,
# quotes and backslashes that REVERSED_KEY_RE allows between a key and its separator go, and every
# other character that cannot be part of a key becomes "\x01" ("\x00" stays). Split at "=", each
# piece then ends with the key its separator follows (or a longer run holding it).
KEY_RUN_TABLE = bytes(
    c + 32 if 65 <= c <= 90
    else ord("=") if c in b":="
    else c if c == 0 or c in b"abcdefghijklmnopqrstuvwxyz0123456789_.-"
    else 1
    for c in range(256)
)  # fmt: skip
KEY_RUN_DELETED = b" \t\"'\\"
# Lower-cased text, plain substrings: COOKIE_TEXT_RE's name, and AUTH_SCHEME_RE's schemes, which
# count only before a blank, "+" or "%" ("%20").
FIRST_LOOK_WORDS = ("cookie",)
AUTH_SCHEMES = ("bearer", "basic", "digest")
# DIGIT_RUN_RE as a card: 13 digits with single separators between them. Digits become "0", the
# separators go and everything else becomes "x" ("\x00" stays), so one substring search finds
# every candidate: about 30 times cheaper than a regex that stops at every digit.
CARD_DIGITS = bytes(ord("0") if 48 <= c <= 57 else c if c == 0 else ord("x") for c in range(256))
CARD_SEPARATORS = b" -+%"
CARD_RUN = b"0" * 13


def first_look_res(*, send_default_pii: bool) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Fragments that every value detector's match contains (the key=value scan and cards aside),
    each with the literal character it starts with.

    One pattern per leading character: the regex engine skips to a pattern's first literal
    character quickly, but steps through the text one character at a time for an alternation of
    several. The caller tests the character with `in` (memchr) first: often it is not there."""
    patterns = [
        r"\(\s*b?[\"'][^\"'\x00]{1,64}[\"']\s*,\s*b?[\"']",  # KV_TUPLE_RE
        r"@",  # URL_USERINFO_RE, EMAIL_RE
        r"-----BEGIN",  # PEM_RE
        r"J(?<=eyJ)",  # JWT_RE ("J" is rarer than "e")
        # KEY_FORMAT_RE, each anchored on its rarest letter
        r"A(?:KIA|SIA|BIA|CCA|Iza)",
        r"k(?:(?<=[srp]k)_|(?<=sk)-)",
        r"whsec_",
        r"g(?:h[pousr]_|ithub_pat_|lpat-)",
        r"npm_",
        r"xox[abposr]-",
        # SLACK_WEBHOOK_RE, and DIGIT_RUN_RE as an IPv4 address: a.b.c.d holds ".b.c.d", and
        # is_personal_ipv4 keeps 127.x.x.x, which error messages are full of
        r"\.(?:(?<=hooks\.)slack\.com|(?<!127\.)[0-9]{1,3}\.[0-9]{1,3}\.[0-9])"
        if not send_default_pii
        else r"\.(?<=hooks\.)slack\.com",
    ]
    if not send_default_pii:
        patterns.append(r":(?::|(?:[0-9A-Fa-f]{0,4}:){6})")  # IPV6_RE: "::" or 7 colons
    return tuple((p[1] if p[0] == "\\" else p[0], re.compile(p)) for p in patterns)


def c_first_look_patterns(
    *, send_default_pii: bool, triggers: Iterable[str]
) -> tuple[tuple[bytes, bool], ...]:
    """The whole first look as (pattern, caseless) pairs for a C multi-pattern matcher, which finds
    them all in one pass where the Python first look makes a few dozen.

    Each is the same necessary condition as its Python counterpart above, or a wider one: the
    matcher (Hyperscan) has no lookbehind, so `J(?<=eyJ)` becomes `eyJ` and the 127.x.x.x exception
    goes; bounded repeats become unbounded ones (cheaper to compile). The key=value scan becomes a
    trigger fragment followed by key characters and what may sit between a key and its separator.
    """
    patterns: list[tuple[str, bool]] = [
        (r"\(\s*b?[\"'][^\"'\x00]+[\"']\s*,\s*b?[\"']", False),  # KV_TUPLE_RE
        (r"@", False),
        (r"-----BEGIN", False),
        (r"eyJ", False),
        (r"A(?:KIA|SIA|BIA|CCA|Iza)", False),
        (r"[srp]k_|sk-", False),
        (r"whsec_", False),
        (r"gh[pousr]_|github_pat_|glpat-", False),
        (r"npm_", False),
        (r"xox[abposr]-", False),
        (r"hooks\.slack\.com", False),
        (r"cookie", True),  # FIRST_LOOK_WORDS
        # AUTH_SCHEMES before what str.isspace() calls a blank in ASCII, "+" or "%"
        (r"(?:bearer|basic|digest)[\t\n\x0b\x0c\r\x1c-\x1f +%]", True),
        # SECRET_PHRASE_FIRST_LOOK
        (r"tokens?[ \t]", True),
        (r"pass(?:w(?:or)?ds?|phrase|code)[ \t]", True),
        (r"pwd[ \t]", True),
        (r"secrets?[ \t]", True),
        (r"(?:api|access|secret|private)[ _\-]?keys?[ \t]", True),
        # the key=value scan (KEY_RUN_TABLE): a trigger inside a key run, then its separator
        (r"(?:" + "|".join(map(re.escape, triggers)) + r")[a-z0-9_.\- \t\"'\\]*[:=]", True),
        # DIGIT_RUN_RE as a card: 13 digits, at most one separator between two ("%20" is "%"
        # and two digits)
        (r"[0-9](?:[ \-+%]?[0-9]){12}", False),
    ]
    if not send_default_pii:
        # IPv4 as in first_look_res: not after "127" (what is_personal_ipv4 keeps), which
        # error messages are full of
        patterns.append((r"(?:^.{0,2}|[^1].{2}|.[^2].|.{2}[^7])\.[0-9]+\.[0-9]+\.[0-9]", False))
        patterns.append((r":(?::|(?:[0-9A-Fa-f]{0,4}:){6})", False))  # IPV6_RE
    return tuple((p.encode("ascii"), caseless) for p, caseless in patterns)
