"""Secrets out of everything postcap hands over as an example: values under a secret's
name (passwords, tokens, keys, cookies, sessions), values shaped like credentials
(JWTs, ``Authorization`` values, long opaque tokens), and values the same transaction
carried as credentials (its cookies, ``Set-Cookie`` values, tokens, API keys), in JSON,
forms, headers and text."""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qsl, urlencode

from postcap.apispec.values import REDACTED, secret_name, secret_value
from postcap.cookies import parse_cookie_header

MIN_KNOWN_SECRET = 4

#: Headers whose value is always a credential (never copied, whatever it looks like).
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_TOKEN_IN_TEXT = re.compile(
    r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|(?i:bearer|basic)\s+[A-Za-z0-9+/_=.-]{8,}"
    r"|(?<![A-Za-z0-9])(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{32,}"
)
_SECRET_PAIR_IN_TEXT = re.compile(
    r"(?i)((?:pass(?:word|wd)?|secret|token|api[-_]?key|session[-_]?id)\W{1,3})([^\s&\"',;<]+)"
)


def known_secrets(request_headers: Iterable[Sequence[str]], response_headers: Iterable[Sequence[str]],
                  query: Iterable[tuple[str, str]] = (), form: dict[str, Any] | None = None) -> frozenset[str]:
    """The credential values one transaction carried: ``Authorization`` values and
    their credentials, cookie and ``Set-Cookie`` values, secret-named header, query and
    form values."""
    found: set[str] = set()
    for name, value in request_headers:
        lower = name.lower()
        if lower in ("authorization", "proxy-authorization"):
            found.add(value.strip())
            found.add(value.strip().partition(" ")[2].strip())
        elif lower == "cookie":
            found.update(v for _, v in parse_cookie_header(value))
        elif secret_name(name):
            found.add(value)
    for name, value in response_headers:
        if name.lower() == "set-cookie":
            found.add(value.split(";", 1)[0].partition("=")[2].strip())
        elif secret_name(name) and name.lower() not in ("set-cookie",):
            found.add(value)
    found.update(v for k, v in query if secret_name(k))
    for key, value in (form or {}).items():
        if secret_name(key) and isinstance(value, str):
            found.add(value)
    return frozenset(v for v in found if len(v) >= MIN_KNOWN_SECRET)


def _mentions(text: str, known: frozenset[str]) -> bool:
    return any(secret in text for secret in known)


def redact_json(value: Any, secret: bool = False, known: frozenset[str] = frozenset()) -> Any:
    """A copy of a JSON value with secrets replaced by ``"REDACTED"``."""
    if isinstance(value, dict):
        return {k: redact_json(v, secret or secret_name(k), known) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, secret, known) for v in value]
    if secret and value is not None and not isinstance(value, bool):
        return REDACTED
    if isinstance(value, str) and (secret_value(value) or (known and _mentions(value, known))):
        return REDACTED
    return value


def redact_value(name: str, value: str) -> str:
    """One header, parameter, cookie or form value, redacted when it is a secret."""
    if name.lower() in CREDENTIAL_HEADERS or secret_name(name) or secret_value(value):
        return REDACTED
    return value


def redact_text(text: str, media_type: str = "", known: frozenset[str] = frozenset()) -> str:
    """A body as text: JSON and forms field by field, anything else by shape."""
    if "json" in media_type:
        try:
            return json.dumps(redact_json(json.loads(text), known=known), indent=2)
        except (ValueError, RecursionError):
            pass
    if media_type == "application/x-www-form-urlencoded":
        pairs = parse_qsl(text, keep_blank_values=True)
        return urlencode([(k, REDACTED if known and _mentions(v, known) else redact_value(k, v))
                          for k, v in pairs])
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _TOKEN_IN_TEXT.sub(REDACTED, text)
    return _SECRET_PAIR_IN_TEXT.sub(lambda m: m.group(1) + REDACTED, text)


__all__ = ["CREDENTIAL_HEADERS", "REDACTED", "known_secrets", "redact_json", "redact_text", "redact_value"]
