"""Cookies per RFC 6265: parsing ``Cookie`` and ``Set-Cookie``, matching, cookies.txt.

A :class:`Cookie` is what a browser's jar would keep: name, value, domain (without a
leading dot), path, expiry (epoch seconds, None for a session cookie), the
Secure/HttpOnly/SameSite attributes and ``host_only`` (no Domain attribute: sent to
the exact host only).  :func:`parse_set_cookie` applies the RFC 6265 §5.2-5.3 rules:
a Domain that does not domain-match the request host makes the cookie ignored, Path
defaults to the request path's directory, Max-Age wins over Expires.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from dataclasses import dataclass, replace
from typing import Any, Iterable
from urllib.parse import urlsplit

from postcap.model import is_ip_literal

SAME_SITE_VALUES = {"strict": "Strict", "lax": "Lax", "none": "None"}
#: The latest expiry kept (9999-12-31T23:59:59Z); later ones, however written, are this.
LATEST_EXPIRY = 253402300799.0
_DELTA_SECONDS = re.compile(r"-?[0-9]+")
NETSCAPE_HEADER = "# Netscape HTTP Cookie File\n# Written by postcap; curl -b and wget read it.\n\n"


@dataclass(frozen=True, slots=True)
class Cookie:
    name: str
    value: str
    domain: str
    path: str = "/"
    expires: float | None = None
    http_only: bool = False
    secure: bool = False
    same_site: str | None = None
    host_only: bool = True

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now

    def key(self) -> tuple[str, str, str]:
        """How a jar identifies it: (domain, path, name)."""
        return self.domain, self.path, self.name

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "domain": self.domain,
            "path": self.path,
            "expires": _iso(self.expires),
            "http_only": self.http_only,
            "secure": self.secure,
            "same_site": self.same_site,
            "host_only": self.host_only,
        }

    def matches(self, url: str, now: float) -> bool:
        """Would a browser send this cookie with a request to ``url``?"""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if self.expired(now) or (self.secure and parts.scheme != "https"):
            return False
        if self.host_only:
            if host != self.domain:
                return False
        elif not domain_matches(host, self.domain):
            return False
        return path_matches(parts.path or "/", self.path)


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    try:
        stamp = datetime.datetime.fromtimestamp(moment, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        stamp = datetime.datetime(9999, 12, 31, tzinfo=datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_expires(text: str | None) -> float | None:
    """An ISO 8601 or HTTP date as epoch seconds, or None."""
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return _http_date(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _http_date(text: str) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        moment = None
    if moment is None:
        # Netscape style, e.g. "Wed, 09-Jun-2021 10:18:14 GMT"
        try:
            moment = datetime.datetime.strptime(
                re.sub(r"\s+", " ", text.strip()), "%a, %d-%b-%Y %H:%M:%S GMT"
            )
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):
        return None


def domain_matches(host: str, domain: str) -> bool:
    """RFC 6265 §5.1.3: ``host`` is ``domain`` or a subdomain of it (never for IPs)."""
    host, domain = host.lower(), domain.lower().lstrip(".")
    if host == domain:
        return True
    if is_ip_literal(host):
        return False
    return host.endswith("." + domain)


def path_matches(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 §5.1.4."""
    if request_path == cookie_path:
        return True
    if request_path.startswith(cookie_path):
        return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    return False


def default_path(request_path: str) -> str:
    """RFC 6265 §5.1.4: the directory of the request path."""
    if not request_path.startswith("/") or request_path.count("/") <= 1:
        return "/"
    return request_path[: request_path.rfind("/")]


def parse_cookie_header(value: str) -> list[tuple[str, str]]:
    """The ``name=value`` pairs of a request ``Cookie`` header (pairs without ``=`` skipped)."""
    pairs = []
    for piece in value.split(";"):
        name, sep, cookie_value = piece.strip().partition("=")
        if sep and name.strip():
            pairs.append((name.strip(), cookie_value.strip()))
    return pairs


def parse_set_cookie(header: str, url: str, now: float) -> Cookie | None:
    """The cookie a ``Set-Cookie`` header on a response to ``url`` sets, or None when a
    browser would ignore it.  An already expired cookie is returned (it deletes)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    pair, *attributes = header.split(";")
    name, sep, value = pair.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        return None
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    cookie = Cookie(name=name, value=value, domain=host, path=default_path(parts.path or "/"))
    max_age: float | None = None
    expires: float | None = None
    for attribute in attributes:
        key, _, attr_value = attribute.strip().partition("=")
        key, attr_value = key.strip().lower(), attr_value.strip()
        if key == "expires":
            parsed = _http_date(attr_value)
            if parsed is not None:
                expires = parsed
        elif key == "max-age":
            max_age = _max_age_expiry(attr_value, now) if _DELTA_SECONDS.fullmatch(attr_value) \
                else max_age
        elif key == "domain":
            domain = attr_value.lstrip(".").lower()
            if domain:
                if not domain_matches(host, domain):
                    return None
                cookie = replace(cookie, domain=domain, host_only=False)
        elif key == "path":
            if attr_value.startswith("/"):
                cookie = replace(cookie, path=attr_value)
        elif key == "secure":
            cookie = replace(cookie, secure=True)
        elif key == "httponly":
            cookie = replace(cookie, http_only=True)
        elif key == "samesite":
            cookie = replace(cookie, same_site=SAME_SITE_VALUES.get(attr_value.lower()))
    chosen = max_age if max_age is not None else expires
    return replace(cookie, expires=chosen)


def _max_age_expiry(delta_seconds: str, now: float) -> float:
    """RFC 6265 §5.2.2: ``now`` plus the delta, 0 (expired) unless positive; capped at
    :data:`LATEST_EXPIRY` however many digits the delta has."""
    digits = delta_seconds.lstrip("0")
    if delta_seconds.startswith("-") or not digits:
        return 0.0
    if len(digits) > len(str(int(LATEST_EXPIRY))):
        return LATEST_EXPIRY
    return min(now + int(digits), LATEST_EXPIRY)


def parse_set_cookies(headers: Iterable[str], url: str, now: float) -> list[Cookie]:
    """The cookies of a response's ``Set-Cookie`` headers; one a browser would ignore,
    or that cannot be read at all, is left out without costing the others."""
    cookies = []
    for header in headers:
        try:
            cookie = parse_set_cookie(header, url, now)
        except (ValueError, OverflowError):
            cookie = None
        if cookie is not None:
            cookies.append(cookie)
    return cookies


def netscape_line(cookie: Cookie) -> str:
    """One cookies.txt line (host-only: no dot, FALSE; domain: leading dot, TRUE;
    ``#HttpOnly_`` prefix; expiry 0 for session cookies, as curl writes)."""
    domain = cookie.domain if cookie.host_only else "." + cookie.domain
    if cookie.http_only:
        domain = "#HttpOnly_" + domain
    expiry = 0 if cookie.expires is None else max(1, int(cookie.expires))
    fields = [
        domain,
        "FALSE" if cookie.host_only else "TRUE",
        cookie.path,
        "TRUE" if cookie.secure else "FALSE",
        str(expiry),
        cookie.name,
        cookie.value.replace("\t", " ").replace("\n", " ").replace("\r", " "),
    ]
    return "\t".join(fields)


def netscape_file(cookies: Iterable[Cookie]) -> str:
    """A whole cookies.txt document."""
    return NETSCAPE_HEADER + "".join(netscape_line(cookie) + "\n" for cookie in cookies)


def cookie_header(cookies: Iterable[Cookie]) -> str | None:
    """A request ``Cookie`` header for ``cookies`` (longest paths first), or None."""
    chosen = sorted(cookies, key=lambda c: -len(c.path))
    if not chosen:
        return None
    return "; ".join(f"{c.name}={c.value}" for c in chosen)


__all__ = [
    "Cookie",
    "cookie_header",
    "default_path",
    "domain_matches",
    "netscape_file",
    "netscape_line",
    "parse_cookie_header",
    "parse_expires",
    "parse_set_cookie",
    "parse_set_cookies",
    "path_matches",
]
