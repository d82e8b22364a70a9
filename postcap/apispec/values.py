"""What a single value looks like: id-like path segments, string formats, typed
parameter values, and values or names that are secrets."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DIGITS = re.compile(r"^\d+$")
_HEX = re.compile(r"^[0-9a-fA-F]{8,}$")
_VERSION = re.compile(r"^v\d+(\.\d+)*$", re.IGNORECASE)
_SLUG_WITH_DIGITS = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9]+([-_.][A-Za-z0-9]+)+$")
_MIXED_TOKEN = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_-]{10,}$")

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s]+$")
_INTEGER = re.compile(r"^-?\d{1,18}$")
_NUMBER = re.compile(r"^-?\d+\.\d+([eE][-+]?\d+)?$")

#: Formats inferred for strings, in the order they are tried.
FORMATS = ("date-time", "date", "uuid", "email", "uri")

_SECRET_NAME = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[-_]?key|apikey|authoriz|auth(?!or)|session|cookie|credential"
    r"|signature|otp|private[-_]?key|csrf|xsrf|client[-_]?secret|^sid$|^pin$|^ssn$|cvv|cvc)",
    re.IGNORECASE,
)
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_AUTH_VALUE = re.compile(r"^(bearer|basic|digest|token|negotiate)\s+\S+", re.IGNORECASE)
_KEY_PREFIX = re.compile(r"^(sk|pk|rk|ghp|gho|ghs|xox[abpr]|AKIA|AIza)[-_A-Za-z0-9]{8,}$")
_OPAQUE = re.compile(r"^[A-Za-z0-9+/_=.-]{32,}$")

REDACTED = "REDACTED"


def id_like(segment: str) -> bool:
    """True for path segments that name one thing: numbers, UUIDs, dates, e-mail addresses,
    hex digests, slugs and tokens with digits (``item-42``, ``a8f3kz92mq``); never
    ``v1``-style versions."""
    if segment.isdigit():
        return True
    if not segment or segment.isalpha() or _VERSION.match(segment):
        return False
    if string_format(segment) not in (None, "uri"):  # a UUID, a date, an e-mail address
        return True
    if _HEX.match(segment) and any(c.isdigit() for c in segment) and any(c.isalpha() for c in segment):
        return True
    return bool(_SLUG_WITH_DIGITS.match(segment) or _MIXED_TOKEN.match(segment))


def string_format(value: str) -> str | None:
    """The OpenAPI format a string has (``date-time``, ``date``, ``uuid``, ``email``,
    ``uri``), or None."""
    size = len(value)
    if size < 6 or size > 2048:
        return None
    if value[0].isdigit():
        if size >= 19 and value[4] == "-" and _DATE_TIME.match(value):
            return "date-time"
        if size == 10 and value[4] == "-" and _DATE.match(value):
            return "date"
    if size == 36 and value[8] == "-" and UUID.match(value):
        return "uuid"
    if "@" in value and _EMAIL.match(value):
        return "email"
    if "://" in value and _URI.match(value):
        return "uri"
    return None


def typed_text(value: str) -> Any:
    """A query, header or path value as the JSON value it spells: ``"42"`` → 42,
    ``"1.5"`` → 1.5, ``"true"`` → True; anything else stays a string."""
    if _INTEGER.match(value):
        return int(value)
    if _NUMBER.match(value):
        return float(value)
    if value in ("true", "false"):
        return value == "true"
    return value


@lru_cache(maxsize=4096)
def secret_name(name: str) -> bool:
    """True when a field, header, parameter or cookie name says it holds a secret."""
    return bool(_SECRET_NAME.search(name))


def secret_value(value: str) -> bool:
    """True when a string is shaped like a credential: a JWT, an ``Authorization``
    value, a known key prefix, or a long opaque token (UUIDs, URIs and dates are not)."""
    if len(value) < 16:
        return False
    if _JWT.match(value) or _AUTH_VALUE.match(value) or _KEY_PREFIX.match(value):
        return True
    if _OPAQUE.match(value) and not UUID.match(value) and not _DIGITS.match(value):
        has_digit = any(c.isdigit() for c in value)
        has_alpha = any(c.isalpha() for c in value)
        return has_digit and has_alpha
    return False


__all__ = [
    "FORMATS",
    "REDACTED",
    "UUID",
    "id_like",
    "secret_name",
    "secret_value",
    "string_format",
    "typed_text",
]
