"""Sentry's search syntax, translated to SQL for the issue list and the events API.

``is:unresolved level:error environment:production release:"shop 1.2" user.email:a@b.c
!endpoint:/health timeout`` — ``key:value`` tokens (a value may be quoted, ``!`` negates one), and
whatever is left is free text matched inside the title and culprit. A token the inbox cannot
answer is refused with a sentence (HTTP 400) rather than silently matching nothing, so a typo
never looks like "no such issue". Values are always bound, never spliced into the SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi_sentry.inbox._errors import MalformedRequestError

STATUSES = ("unresolved", "resolved", "ignored")
LEVELS = ("fatal", "error", "warning", "info", "debug")
USER_FIELDS = ("id", "email", "username", "ip_address")

# A key:value token (value quoted or bare), a quoted phrase, or a bare word.
_TOKEN = re.compile(
    r'\s*(?:(?P<neg>!)?(?P<key>[A-Za-z_][\w.\-]*):(?:"(?P<qvalue>[^"]*)"|(?P<value>[^\s"]*))'
    r'|"(?P<phrase>[^"]*)"|(?P<word>[^\s"]+))'
)


class InvalidQueryError(MalformedRequestError):
    """A search the inbox cannot answer: the message says which token and how to write it."""


@dataclass(frozen=True)
class Token:
    """One ``key:value`` filter; ``negated`` for ``!key:value``."""

    key: str
    value: str
    negated: bool = False


@dataclass(frozen=True)
class Query:
    """A parsed search: filters, plus the free text left over (words joined by spaces)."""

    tokens: tuple[Token, ...]
    text: str


def parse(query: str | None) -> Query:
    """Split a Sentry search string into tokens and free text; raise InvalidQueryError."""
    source = (query or "").strip()
    if source.count('"') % 2:
        raise _refuse(f"The search {source!r} has an unclosed quote; close it or remove it.")
    tokens: list[Token] = []
    words: list[str] = []
    for match in _TOKEN.finditer(source):
        key = match.group("key")
        if key is None:
            words.append(match.group("phrase") or match.group("word") or "")
            continue
        value = match.group("qvalue")
        if value is None:
            value = match.group("value") or ""
            if not value:
                raise _refuse(
                    f"The search token {key + ':'!r} has no value; write it as {key}:value "
                    f'(quote values with spaces: {key}:"two words").'
                )
        if key == "is":  # Sentry's UI says "archived" or "muted" for ignored
            value = _STATUS_ALIASES.get(value.lower(), value.lower())
        token = Token(key=key, value=value, negated=match.group("neg") is not None)
        _check(token)
        tokens.append(token)
    return Query(tokens=tuple(tokens), text=" ".join(w for w in words if w))


_STATUS_ALIASES = {"muted": "ignored", "archived": "ignored"}


def _refuse(message: str) -> InvalidQueryError:
    return InvalidQueryError(message, where="query parameter query")


def _check(token: Token) -> None:
    if token.key == "is" and token.value not in STATUSES:
        raise _refuse(
            f"is:{token.value} is not an issue status; use is:unresolved, is:resolved or "
            "is:ignored."
        )
    if token.key == "level" and token.value not in LEVELS:
        raise _refuse(
            f"level:{token.value} is not a level; use one of {', '.join(LEVELS)} "
            "(for example level:error)."
        )
    if token.key.startswith("user.") and token.key[5:] not in USER_FIELDS:
        fields = ", ".join(f"user.{f}" for f in USER_FIELDS)
        raise _refuse(f"{token.key}: is not a user field; use one of {fields}.")


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _json_path(field: str) -> str:
    # Keys come from the token regex (letters, digits, _ . -), so quoting them is safe.
    return f'$."{field}"'


def _event_match(token: Token, alias: str) -> tuple[str, list[Any]]:
    """A condition on one row of ``events`` (as ``alias``) for a token not kept in a column."""
    data = f"{alias}.data"
    if token.key.startswith("user."):
        path = "$.user." + _json_path(token.key[5:])[2:]
        return f"CAST(json_extract({data}, ?) AS TEXT) = ?", [path, token.value]
    if token.key == "transaction":
        return f"{alias}.name = ?", [token.value]
    # Any other key is a tag; sentry-sdk sends tags as an object, other SDKs as [key, value] pairs.
    return (
        f"(CAST(json_extract({data}, ?) AS TEXT) = ? OR EXISTS (SELECT 1 FROM "  # noqa: S608
        f"json_each({data}, '$.tags') t WHERE t.type = 'array' AND "
        "json_extract(t.value, '$[0]') = ? AND CAST(json_extract(t.value, '$[1]') AS TEXT) = ?))",
        ["$.tags." + _json_path(token.key)[2:], token.value, token.key, token.value],
    )


def _combine(parts: list[tuple[str, list[Any]]]) -> tuple[list[str], list[Any]]:
    clauses = [sql for sql, _ in parts]
    params = [value for _, values in parts for value in values]
    return clauses, params


def _negate(token: Token, sql: str) -> str:
    # IS NOT 1 rather than NOT: an event without the field (NULL) is not excluded by a negation.
    return f"({sql}) IS NOT 1" if token.negated else sql


def issue_filter(query: Query) -> tuple[list[str], list[Any]]:
    """SQL conditions on ``issues i`` (with its ``issue_tags`` and ``events``) for a search."""
    parts: list[tuple[str, list[Any]]] = []
    for token in query.tokens:
        if token.key == "is":
            sql, params = "i.status = ?", [token.value]
        elif token.key == "level":
            sql, params = "i.level = ?", [token.value]
        elif token.key in ("environment", "release"):
            sql = (
                "EXISTS (SELECT 1 FROM issue_tags it WHERE it.issue_id = i.id "
                "AND it.key = ? AND it.value = ?)"
            )
            params = [token.key, token.value]
        else:
            match, params = _event_match(token, "e")
            sql = f"EXISTS (SELECT 1 FROM events e WHERE e.issue_id = i.id AND {match})"  # noqa: S608
        parts.append((_negate(token, sql), params))
    if query.text:
        pattern = _like(query.text)
        parts.append(
            ("(i.title LIKE ? ESCAPE '\\' OR i.culprit LIKE ? ESCAPE '\\')", [pattern, pattern])
        )
    return _combine(parts)


def event_filter(query: Query) -> tuple[list[str], list[Any]]:
    """SQL conditions on ``events`` (unaliased) for the same search."""
    parts: list[tuple[str, list[Any]]] = []
    for token in query.tokens:
        if token.key == "is":
            sql = "issue_id IN (SELECT id FROM issues WHERE status = ?)"
            params: list[Any] = [token.value]
        elif token.key in ("level", "environment", "release"):
            sql, params = f"{token.key} = ?", [token.value]
        else:
            sql, params = _event_match(token, "events")
        parts.append((_negate(token, sql), params))
    if query.text:
        pattern = _like(query.text)
        parts.append(
            (
                "(name LIKE ? ESCAPE '\\' OR issue_id IN (SELECT id FROM issues WHERE "
                "title LIKE ? ESCAPE '\\' OR culprit LIKE ? ESCAPE '\\'))",
                [pattern, pattern, pattern],
            )
        )
    return _combine(parts)
