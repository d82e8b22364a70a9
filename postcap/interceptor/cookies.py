"""Browser cookies (``chrome.cookies.onChanged``) into postcap's cookie jar.

With cookie sync on (``cookiesync.set {enabled: true, domains}``), every cookie the
browser sets or removes for one of those domains (or a subdomain) is set in or
removed from the jar, HttpOnly cookies included, as Postman's Interceptor does.
Cookies set by ``Set-Cookie`` headers also reach the jar through the transactions
(the sync observer) and ``cookie.list`` (sessions with ``capture_cookies``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from postcap.cookies import Cookie, domain_matches
from postcap.interceptor.methods import BrowserCookieChange
from postcap.sinks.cookies import CookieJar, CookieSync

#: chrome.cookies.SameSiteStatus → the jar's values.
SAME_SITE = {"no_restriction": "None", "lax": "Lax", "strict": "Strict"}


def cookie_from_browser(cookie: dict[str, Any]) -> Cookie | None:
    """The jar's :class:`Cookie` for a ``chrome.cookies.Cookie``; None if malformed."""
    name, value, domain = cookie.get("name"), cookie.get("value"), cookie.get("domain")
    if not isinstance(name, str) or not isinstance(value, str) or not isinstance(domain, str):
        return None
    domain = domain.lower().lstrip(".")
    if not domain:
        return None
    expires = cookie.get("expirationDate")
    if cookie.get("session") or isinstance(expires, bool) or not isinstance(expires, (int, float)):
        expires = None
    path = cookie.get("path")
    return Cookie(
        name=name,
        value=value,
        domain=domain,
        path=path if isinstance(path, str) and path.startswith("/") else "/",
        expires=None if expires is None else float(expires),
        http_only=bool(cookie.get("httpOnly")),
        secure=bool(cookie.get("secure")),
        same_site=SAME_SITE.get(str(cookie.get("sameSite"))),
        host_only=bool(cookie.get("hostOnly", True)),
    )


class BrowserCookieSync:
    """A cookie listener of :class:`~postcap.interceptor.methods.InterceptorMethods`."""

    _log = Logger()

    def __init__(self, jar: CookieJar, sync: CookieSync) -> None:
        self.jar = jar
        self.sync = sync

    def __call__(self, change: BrowserCookieChange) -> Deferred[int] | None:
        cookie = cookie_from_browser(change.cookie)
        if cookie is None or not self.sync.enabled:
            return None
        if not any(domain_matches(cookie.domain, domain) for domain in self.sync.domains):
            return None
        if change.removed:
            if change.cause == "overwrite":
                return None  # the new value follows as its own change
            cookie = Cookie(name=cookie.name, value=cookie.value, domain=cookie.domain,
                            path=cookie.path, expires=0.0)  # an expired cookie removes its key
        done = Deferred.fromCoroutine(self.jar.add([cookie]))
        done.addErrback(lambda failure: self._log.failure(
            "browser cookie {name} for {domain} not stored", failure,
            name=cookie.name, domain=cookie.domain))
        return done
