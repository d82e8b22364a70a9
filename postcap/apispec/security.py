"""Security schemes recognised from a request: ``Authorization`` (bearer, basic, digest,
others as an API key header), API-key headers (``X-API-Key``…), API keys in the query
(``api_key``, ``access_token``…) and session cookies.  Each credential found is one
``(scheme name, OpenAPI security scheme)``; the value itself is never kept."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterable

from postcap.apispec.values import secret_name
from postcap.cookies import parse_cookie_header

_KEY_HEADER = re.compile(
    r"^(x-)?(api[-_]?key|api[-_]?token|auth[-_]?token|access[-_]?token|app[-_]?key|app[-_]?token"
    r"|client[-_]?secret|subscription[-_]?key)$|api[-_]?key",
    re.IGNORECASE,
)
_KEY_QUERY = re.compile(r"^(api[-_]?key|apikey|key|access[-_]?token|token|auth[-_]?token|api[-_]?token)$",
                        re.IGNORECASE)
_SESSION_COOKIE = re.compile(r"sess|^sid$|\.sid$|^auth|token|^jwt$", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z0-9]+")


def _camel(name: str) -> str:
    words = _WORD.findall(name) or ["key"]
    return words[0].lower() + "".join(w[:1].upper() + w[1:].lower() for w in words[1:])


@lru_cache(maxsize=4096)
def is_key_header(name: str) -> bool:
    return bool(_KEY_HEADER.search(name))


@lru_cache(maxsize=4096)
def is_key_query(name: str) -> bool:
    return bool(_KEY_QUERY.match(name))


@lru_cache(maxsize=4096)
def is_session_cookie(name: str) -> bool:
    return bool(_SESSION_COOKIE.search(name))


def authorization_scheme(value: str) -> tuple[str, dict[str, Any]]:
    kind, _, credential = value.strip().partition(" ")
    kind = kind.lower()
    if kind == "bearer":
        scheme: dict[str, Any] = {"type": "http", "scheme": "bearer"}
        if credential.count(".") == 2 and credential.startswith("eyJ"):
            scheme["bearerFormat"] = "JWT"
        return "bearerAuth", scheme
    if kind in ("basic", "digest"):
        return f"{kind}Auth", {"type": "http", "scheme": kind}
    return "authorizationHeader", {"type": "apiKey", "in": "header", "name": "Authorization"}


def recognise(headers: Iterable[Iterable[str]], query: Iterable[tuple[str, str]]
              ) -> list[tuple[str, dict[str, Any]]]:
    """The credentials one request carried, as named security schemes."""
    found: list[tuple[str, dict[str, Any]]] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "authorization" and value.strip():
            found.append(authorization_scheme(value))
        elif lower == "cookie":
            for cookie, _ in parse_cookie_header(value):
                if is_session_cookie(cookie):
                    found.append((_camel(cookie) + "Cookie",
                                  {"type": "apiKey", "in": "cookie", "name": cookie}))
        elif is_key_header(name):
            found.append((_camel(name), {"type": "apiKey", "in": "header", "name": name}))
    for name, _ in query:
        if is_key_query(name):
            found.append((_camel(name) + "Query", {"type": "apiKey", "in": "query", "name": name}))
    return found


@lru_cache(maxsize=4096)
def credential_parameter(location: str, name: str) -> bool:
    """True when a header or query parameter is a credential (a security scheme, not a parameter)."""
    if location == "header":
        return name.lower() in ("authorization", "cookie", "proxy-authorization") or is_key_header(name)
    return is_key_query(name) or (location == "query" and secret_name(name))


__all__ = ["authorization_scheme", "credential_parameter", "is_key_header", "is_key_query",
           "is_session_cookie", "recognise"]
