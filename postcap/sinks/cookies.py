"""Captured cookies, the cookie jar and cookie sync, kept in the history file.

- :class:`CookieCapture` (a capture sink): with the session option
  ``capture_cookies``, every ``Cookie`` request header and ``Set-Cookie`` response
  header of a captured transaction becomes a row of ``cookies`` (``cookie.list``).
- :class:`CookieJar`: a browser-like jar keyed by (domain, path, name), persistent in
  ``cookie_jar`` and mirrored in memory so that matching a URL (replay) never waits
  for the disk.  Expired cookies are dropped on write and never listed or exported.
- :class:`CookieSync`: with ``cookiesync.set {enabled, domains}``, every
  ``Set-Cookie`` from those domains (and subdomains) goes into the jar, whether or
  not a session runs (it observes every transaction, see
  :meth:`postcap.session.SessionManager.add_observer`).
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterable, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from postcap.cookies import Cookie, cookie_header, domain_matches, parse_cookie_header, parse_set_cookies
from postcap.interfaces import ICaptureSink
from postcap.model import Transaction, new_id

Cursor = Any
CookieListener = Callable[[list[dict[str, Any]]], None]

_CAPTURED_COLUMNS = ("id", "session_id", "transaction_id", "source", "name", "value", "domain",
                     "path", "expires", "http_only", "secure", "same_site", "host_only")
_JAR_COLUMNS = ("domain", "path", "name", "value", "expires", "http_only", "secure",
                "same_site", "host_only")


def _header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in headers if key.lower() == name]


def cookies_of(transaction: Transaction, now: float) -> list[tuple[str, Cookie]]:
    """``(source, cookie)`` for each cookie the transaction's request sent and its
    response set (request cookies carry the request host and path ``/``)."""
    found: list[tuple[str, Cookie]] = []
    host = transaction.host.lower()
    for header in _header_values(transaction.request.headers, b"cookie"):
        for name, value in parse_cookie_header(header):
            found.append(("request", Cookie(name=name, value=value, domain=host)))
    if transaction.response is not None:
        set_cookies = _header_values(transaction.response.headers, b"set-cookie")
        for cookie in parse_set_cookies(set_cookies, transaction.url, now):
            found.append(("response", cookie))
    return found


def captured_json(row: Sequence[Any]) -> dict[str, Any]:
    values = dict(zip(_CAPTURED_COLUMNS, row))
    cookie = Cookie(**{k: values[k] for k in _JAR_COLUMNS if k in values} |
                    {"http_only": bool(values["http_only"]), "secure": bool(values["secure"]),
                     "host_only": bool(values["host_only"])})
    result = {"id": values["id"], "session_id": values["session_id"],
              "transaction_id": values["transaction_id"], "source": values["source"]}
    result.update(cookie.to_json())
    return result


def _jar_cookie(row: Sequence[Any]) -> Cookie:
    values = dict(zip(_JAR_COLUMNS, row))
    return Cookie(**values | {"http_only": bool(values["http_only"]),
                              "secure": bool(values["secure"]),
                              "host_only": bool(values["host_only"])})


def _jar_row(cookie: Cookie) -> tuple[Any, ...]:
    return (cookie.domain, cookie.path, cookie.name, cookie.value, cookie.expires,
            int(cookie.http_only), int(cookie.secure), cookie.same_site, int(cookie.host_only))


# -- interactions (run in the store's thread) -------------------------------------------------


def insert_captured(cursor: Cursor, rows: Sequence[tuple[Any, ...]]) -> None:
    cursor.executemany(
        f"INSERT INTO cookies ({', '.join(_CAPTURED_COLUMNS)})"
        f" VALUES ({','.join('?' * len(_CAPTURED_COLUMNS))})",
        rows,
    )


def select_captured(cursor: Cursor, session_id: str, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
    cursor.execute("SELECT COUNT(*) FROM cookies WHERE session_id = ?", (session_id,))
    total = int(cursor.fetchone()[0])
    cursor.execute(
        f"SELECT {', '.join(_CAPTURED_COLUMNS)} FROM cookies WHERE session_id = ?"
        " ORDER BY seq LIMIT ? OFFSET ?",
        (session_id, limit, offset),
    )
    return total, [captured_json(row) for row in cursor.fetchall()]


def select_captured_by_ids(cursor: Cursor, ids: Sequence[str]) -> list[dict[str, Any]]:
    found = []
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        cursor.execute(
            f"SELECT {', '.join(_CAPTURED_COLUMNS)} FROM cookies"
            f" WHERE id IN ({','.join('?' * len(chunk))}) ORDER BY seq",
            chunk,
        )
        found.extend(captured_json(row) for row in cursor.fetchall())
    return found


def delete_captured(cursor: Cursor, ids: Sequence[str]) -> int:
    deleted = 0
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        cursor.execute(f"DELETE FROM cookies WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        deleted += cursor.rowcount
    return deleted


def _jar_write(cursor: Cursor, keep: Sequence[Cookie], drop: Sequence[tuple[str, str, str]]) -> None:
    cursor.executemany(
        f"INSERT INTO cookie_jar ({', '.join(_JAR_COLUMNS)}, added_at)"
        f" VALUES ({','.join('?' * len(_JAR_COLUMNS))}, ?)"
        " ON CONFLICT (domain, path, name) DO UPDATE SET value = excluded.value,"
        " expires = excluded.expires, http_only = excluded.http_only, secure = excluded.secure,"
        " same_site = excluded.same_site, host_only = excluded.host_only",
        [(*_jar_row(cookie), time.time()) for cookie in keep],
    )
    cursor.executemany("DELETE FROM cookie_jar WHERE domain = ? AND path = ? AND name = ?", drop)


def _jar_load(cursor: Cursor, now: float) -> list[Cookie]:
    cursor.execute("DELETE FROM cookie_jar WHERE expires IS NOT NULL AND expires <= ?", (now,))
    cursor.execute(f"SELECT {', '.join(_JAR_COLUMNS)} FROM cookie_jar ORDER BY domain, path, name")
    return [_jar_cookie(row) for row in cursor.fetchall()]


def _jar_delete(cursor: Cursor, keys: Sequence[tuple[str, str, str]]) -> None:
    cursor.executemany("DELETE FROM cookie_jar WHERE domain = ? AND path = ? AND name = ?", keys)


def _setting_get(cursor: Cursor, key: str) -> Any:
    cursor.execute("SELECT value FROM settings WHERE key = ?", (key,))
    row = cursor.fetchone()
    return None if row is None else json.loads(row[0])


def _setting_set(cursor: Cursor, key: str, value: Any) -> None:
    cursor.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, json.dumps(value)),
    )


# -- the jar ------------------------------------------------------------------------------------


class CookieJar:
    """The persistent cookie jar, mirrored in memory."""

    _log = Logger()

    def __init__(self, store: Any, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._cookies: dict[tuple[str, str, str], Cookie] = {}

    async def load(self) -> None:
        loaded = await self.store.run(_jar_load, self.clock())
        self._cookies = {cookie.key(): cookie for cookie in loaded}

    def cookies(self, domain: str | None = None) -> list[Cookie]:
        """Unexpired cookies, for ``domain`` and its subdomains when given."""
        now = self.clock()
        chosen = [c for c in self._cookies.values() if not c.expired(now)]
        if domain:
            domain = domain.lower().lstrip(".")
            chosen = [c for c in chosen if domain_matches(c.domain, domain)]
        return sorted(chosen, key=lambda c: (c.domain, c.path, c.name))

    async def add(self, cookies: Iterable[Cookie]) -> int:
        """Store cookies (an expired one removes its key); returns how many were kept.

        The store is written first and memory only once it has succeeded, so a
        failed add leaves the jar as it was, in memory as on disk.
        """
        now = self.clock()
        final = {cookie.key(): cookie for cookie in cookies}  # the last of a key wins
        keep = [cookie for cookie in final.values() if not cookie.expired(now)]
        drop = [key for key, cookie in final.items() if cookie.expired(now)]
        await self.store.run(_jar_write, keep, drop)
        for key in drop:
            self._cookies.pop(key, None)
        self._cookies.update((cookie.key(), cookie) for cookie in keep)
        return len(keep)

    async def delete(self, domain: str | None, name: str | None) -> int:
        """Delete matching cookies, from the store first and then from memory."""
        chosen = [c for c in self._cookies.values()
                  if (domain is None or c.domain == domain.lower().lstrip("."))
                  and (name is None or c.name == name)]
        await self.store.run(_jar_delete, [c.key() for c in chosen])
        for cookie in chosen:
            self._cookies.pop(cookie.key(), None)
        return len(chosen)

    def cookie_header_for(self, url: str) -> str | None:
        """The ``Cookie`` header a browser would send to ``url`` from this jar."""
        now = self.clock()
        return cookie_header(c for c in self._cookies.values() if c.matches(url, now))


# -- capture and sync ----------------------------------------------------------------------------


@implementer(ICaptureSink)
class CookieCapture:
    """Records the cookies of captured transactions of sessions with ``capture_cookies``."""

    name = "cookies"

    def __init__(self, store: Any, capture_enabled: Callable[[str], bool],
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.capture_enabled = capture_enabled
        self.clock = clock
        self._listeners: list[CookieListener] = []

    def add_listener(self, listener: CookieListener) -> None:
        """``listener(cookies)`` gets the contract's cookie objects as they are stored."""
        self._listeners.append(listener)

    def transactionCompleted(self, transaction: Transaction) -> Deferred[None]:
        session_id = transaction.session_id
        if session_id is None or not self.capture_enabled(session_id):
            return succeed(None)
        found = cookies_of(transaction, self.clock())
        if not found:
            return succeed(None)
        rows = [
            (new_id(), session_id, transaction.id, source, c.name, c.value, c.domain, c.path,
             c.expires, int(c.http_only), int(c.secure), c.same_site, int(c.host_only))
            for source, c in found
        ]
        stored = self.store.run(insert_captured, rows)

        def announce(_: object) -> None:
            cookies = [captured_json(row) for row in rows]
            for listener in self._listeners:
                listener(cookies)

        return stored.addCallback(announce)

    def flush(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)


class CookieSync:
    """Puts every ``Set-Cookie`` from the chosen domains into the jar (``cookiesync.*``)."""

    _log = Logger()
    SETTING = "cookiesync"

    def __init__(self, jar: CookieJar, store: Any, clock: Callable[[], float] = time.time) -> None:
        self.jar = jar
        self.store = store
        self.clock = clock
        self.enabled = False
        self.domains: list[str] = []

    @property
    def wants_all(self) -> bool:
        """Whether the proxy should build transactions nobody captures (for us)."""
        return self.enabled and bool(self.domains)

    def state(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "domains": list(self.domains)}

    async def load(self) -> None:
        saved = await self.store.run(_setting_get, self.SETTING)
        if isinstance(saved, dict):
            self.enabled = bool(saved.get("enabled"))
            self.domains = [d for d in saved.get("domains", []) if isinstance(d, str)]

    async def set(self, enabled: bool, domains: list[str]) -> dict[str, Any]:
        self.enabled = enabled
        self.domains = [d.lower().lstrip(".") for d in domains]
        await self.store.run(_setting_set, self.SETTING, self.state())
        return self.state()

    def observe(self, transaction: Transaction) -> None:
        """An observer of every finished transaction (see SessionManager.add_observer)."""
        if not self.wants_all or transaction.response is None:
            return
        host = transaction.host.lower()
        if not any(domain_matches(host, domain) for domain in self.domains):
            return
        now = self.clock()
        cookies = [c for source, c in cookies_of(transaction, now) if source == "response"]
        if cookies:
            done = Deferred.fromCoroutine(self.jar.add(cookies))
            done.addErrback(lambda failure: self._log.failure(
                "cookie sync could not store cookies from {host}", failure, host=host))


__all__ = ["CookieCapture", "CookieJar", "CookieSync", "cookies_of"]
