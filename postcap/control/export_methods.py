"""JSON-RPC methods for what users take elsewhere: cookies, the cookie jar, cookie
sync, Postman collections and HAR exports."""

from __future__ import annotations

from typing import Any, Callable

from postcap.control.dispatch import InvalidParams, NotFound
from postcap.control.method_group import MethodGroup, session_id_param
from postcap.control.methods import ID, OPTIONAL_ID
from postcap.control.params import (
    MAX_IDS, Bool, Custom, Enum, Ids, Int, Str, Strs, takes, timestamp,
)
from postcap.cookies import SAME_SITE_VALUES, Cookie, netscape_file, parse_expires
from postcap.apispec.spec import SpecError
from postcap.export.har import har_document, har_entries
from postcap.export.openapi import drift_report, openapi_export, store_pages
from postcap.export.postman import ORGANIZE_CHOICES
from postcap.session import SessionManager
from postcap.sinks.collections import Collections
from postcap.sinks.cookies import (
    CookieJar,
    CookieSync,
    delete_captured,
    select_captured,
    select_captured_by_ids,
)

MAX_PAGE = 1000
#: Host names are at most 253 characters (a leading dot allowed for cookie domains).
DOMAIN = Str(max_length=254, optional=True)
#: Cookie names and values: browsers keep about 4 KiB per cookie.
MAX_COOKIE_TEXT = 4096
MAX_LITERAL_COOKIES = 1000


def _organize_by(name: str, value: Any) -> list[str]:
    if value not in ORGANIZE_CHOICES:
        raise InvalidParams(name, 'must be [], ["domain"], ["endpoint"] or ["domain","endpoint"]')
    return list(value)


def _cookie_text(name: str, value: Any, *, allow_empty: bool, max_length: int) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise InvalidParams(name, "must be a string" if allow_empty else "must be a non-empty string")
    if len(value) > max_length or any(c in value for c in ";\r\n\x00"):
        raise InvalidParams(name, f"must be at most {max_length} characters, without ; CR LF or NUL")
    return value


def literal_cookie(index: int, value: Any) -> Cookie:
    """A cookie object as given to ``cookiejar.add {cookies}``; ``null`` members take
    their defaults."""
    name = f"cookies[{index}]"
    if not isinstance(value, dict):
        raise InvalidParams(name, "must be an object")
    for member in value:
        if member not in _COOKIE_MEMBERS:
            raise InvalidParams(f"{name}.{member}", "unknown member")
    cookie_name = _cookie_text(f"{name}.name", value.get("name"), allow_empty=False,
                               max_length=MAX_COOKIE_TEXT)
    cookie_value = _cookie_text(f"{name}.value", value.get("value"), allow_empty=True,
                                max_length=MAX_COOKIE_TEXT)
    domain = _cookie_text(f"{name}.domain", value.get("domain"), allow_empty=False,
                          max_length=254).lower()
    if not domain.strip("."):
        raise InvalidParams(f"{name}.domain", "must be a host name")
    path = value.get("path")
    path = "/" if path is None else path
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_COOKIE_TEXT \
            or any(c in path for c in ";\r\n\x00"):
        raise InvalidParams(f"{name}.path", "must be a path starting with /")
    expires = value.get("expires")
    if isinstance(expires, str):
        parsed = parse_expires(expires) if len(expires) <= 64 else None
        expires = float("nan") if parsed is None else parsed
    if expires is not None:
        expires = timestamp(f"{name}.expires", expires, allow_past=True)
    same_site = value.get("same_site")
    if same_site is not None and (not isinstance(same_site, str)
                                  or same_site.lower() not in SAME_SITE_VALUES):
        raise InvalidParams(f"{name}.same_site", 'must be "Strict", "Lax", "None" or null')
    flags = {
        flag: Bool(optional=True, default=default).check(f"{name}.{flag}", value.get(flag))
        for flag, default in (("http_only", False), ("secure", False), ("host_only", None))
    }
    host_only = flags["host_only"] if flags["host_only"] is not None else not domain.startswith(".")
    return Cookie(
        name=cookie_name, value=cookie_value, domain=domain.lstrip("."), path=path,
        expires=expires, http_only=flags["http_only"], secure=flags["secure"],
        same_site=None if same_site is None else SAME_SITE_VALUES[same_site.lower()],
        host_only=host_only,
    )


_COOKIE_MEMBERS = frozenset(
    {"name", "value", "domain", "path", "expires", "http_only", "secure", "same_site", "host_only"}
)


def _literal_cookies(name: str, value: Any) -> list[Cookie]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_LITERAL_COOKIES:
        raise InvalidParams(
            name, f"must be a list of 1 to {MAX_LITERAL_COOKIES} cookie objects"
        )
    return [literal_cookie(index, cookie) for index, cookie in enumerate(value)]


def _cookie_from_captured(captured: dict[str, Any]) -> Cookie:
    return Cookie(
        name=captured["name"], value=captured["value"], domain=captured["domain"],
        path=captured["path"], expires=parse_expires(captured["expires"]),
        http_only=captured["http_only"], secure=captured["secure"],
        same_site=captured["same_site"], host_only=captured["host_only"],
    )


def _spec_param(name: str, value: Any) -> Any:
    """``api.diff``'s ``spec``: an OpenAPI document as an object, or its JSON/YAML text."""
    if not isinstance(value, (dict, str)):
        raise InvalidParams(name, "must be an OpenAPI 3.0/3.1 document object, or its JSON/YAML text")
    return value


class ExportMethods(MethodGroup):
    def __init__(self, sessions: SessionManager, jar: CookieJar, sync: CookieSync,
                 collections: Collections) -> None:
        self.sessions = sessions
        self.jar = jar
        self.sync = sync
        self.collections = collections

    @property
    def store(self) -> Any:
        return self.sessions.store


    def methods(self) -> dict[str, Callable[..., Any]]:
        return {
            "cookie.list": self.cookie_list,
            "cookie.delete": self.cookie_delete,
            "cookiejar.list": self.cookiejar_list,
            "cookiejar.add": self.cookiejar_add,
            "cookiejar.delete": self.cookiejar_delete,
            "cookiejar.export": self.cookiejar_export,
            "cookiesync.get": self.cookiesync_get,
            "cookiesync.set": self.cookiesync_set,
            "collection.create": self.collection_create,
            "collection.list": self.collection_list,
            "collection.get": self.collection_get,
            "collection.add": self.collection_add,
            "collection.delete": self.collection_delete,
            "session.export": self.session_export,
            "api.diff": self.api_diff,
        }


    # -- cookies -------------------------------------------------------------------------

    @takes(session_id=OPTIONAL_ID, limit=Int(1, MAX_PAGE, default=100), offset=Int(0, default=0))
    async def cookie_list(self, session_id: str | None = None, limit: int = 100,
                          offset: int = 0) -> dict[str, Any]:
        session_id = await session_id_param(self.sessions, "session_id", session_id)
        total, items = await self.store.run(select_captured, session_id, limit, offset)
        return {"total": total, "items": items}

    @takes(ids=Ids(max_items=MAX_IDS))
    async def cookie_delete(self, ids: list[str]) -> int:
        return int(await self.store.run(delete_captured, ids))

    @takes(domain=DOMAIN)
    async def cookiejar_list(self, domain: str | None = None) -> dict[str, Any]:
        return {"items": [cookie.to_json() for cookie in self.jar.cookies(domain)]}

    @takes(cookie_ids=Ids(max_items=MAX_IDS, optional=True),
           cookies=Custom(_literal_cookies, optional=True))
    async def cookiejar_add(self, cookie_ids: list[str] | None = None,
                            cookies: list[Cookie] | None = None) -> int:
        if (cookie_ids is None) == (cookies is None):
            raise InvalidParams("cookie_ids", "give either cookie_ids or cookies")
        if cookie_ids is not None:
            found = await self.store.run(select_captured_by_ids, cookie_ids)
            missing = sorted(set(cookie_ids) - {c["id"] for c in found})
            if missing:
                raise NotFound("cookie", missing[0])
            cookies = [_cookie_from_captured(c) for c in found]
        return await self.jar.add(cookies or [])

    @takes(domain=DOMAIN, name=Str(max_length=MAX_COOKIE_TEXT, optional=True))
    async def cookiejar_delete(self, domain: str | None = None, name: str | None = None) -> int:
        if domain is None and name is None:
            raise InvalidParams("domain", "give a domain, a name, or both")
        return await self.jar.delete(domain, name)

    @takes(format=Enum(("netscape", "json"), optional=True, default="netscape"))
    async def cookiejar_export(self, format: str = "netscape") -> Any:
        cookies = self.jar.cookies()
        if format == "netscape":
            return netscape_file(cookies)
        return [cookie.to_json() for cookie in cookies]

    async def cookiesync_get(self) -> dict[str, Any]:
        return self.sync.state()

    @takes(enabled=Bool(optional=True), domains=Strs(max_items=1000, max_length=254, optional=True))
    async def cookiesync_set(self, enabled: bool | None = None,
                             domains: list[str] | None = None) -> dict[str, Any]:
        enabled = self.sync.enabled if enabled is None else enabled
        domains = self.sync.domains if domains is None else domains
        if any(not d.strip(".").strip() or "/" in d or " " in d for d in domains):
            raise InvalidParams("domains", "must be host names such as example.com")
        return await self.sync.set(enabled, domains)

    # -- collections ---------------------------------------------------------------------

    @takes(name=Str(max_length=500))
    async def collection_create(self, name: str) -> dict[str, str]:
        return await self.collections.create(name)

    async def collection_list(self) -> dict[str, Any]:
        return {"items": await self.collections.list()}

    @takes(id=ID)
    async def collection_get(self, id: str) -> dict[str, Any]:
        document = await self.collections.document(id)
        if document is None:
            raise NotFound("collection", id)
        return document

    @takes(id=ID, request_ids=Ids(max_items=MAX_IDS),
           organize_by=Custom(_organize_by, optional=True))
    async def collection_add(self, id: str, request_ids: list[str],
                             organize_by: list[str] | None = None) -> int:
        if not await self.collections.exists(id):
            raise NotFound("collection", id)
        added, missing = await self.collections.add_requests(id, request_ids, organize_by or [])
        if missing and not added:
            raise NotFound("request", missing[0])
        return int(added)

    @takes(id=ID)
    async def collection_delete(self, id: str) -> bool:
        if not await self.collections.delete(id):
            raise NotFound("collection", id)
        return True

    # -- HAR and OpenAPI --------------------------------------------------------------------

    @takes(id=OPTIONAL_ID, format=Enum(("har", "openapi"), optional=True, default="har"))
    async def session_export(self, id: str | None = None, format: str = "har") -> dict[str, Any]:
        chosen = format
        session_id = await session_id_param(self.sessions, "id", id)
        record = await self.store.get_session(session_id)

        def pages(after: int, limit: int) -> Any:
            return self.store.details_after(session_id, after, limit)

        if chosen == "openapi":
            return await openapi_export(store_pages(self.store, session_id),
                                        f"API seen in postcap session {record.name}")
        entries = await har_entries(pages)
        return har_document(entries, f"postcap session {record.name}")

    @takes(id=OPTIONAL_ID, spec=Custom(_spec_param))
    async def api_diff(self, id: str | None = None, spec: Any = None) -> dict[str, Any]:
        session_id = await session_id_param(self.sessions, "id", id)
        try:
            return await drift_report(store_pages(self.store, session_id), spec)
        except SpecError as exc:
            raise InvalidParams("spec", str(exc)) from None


__all__ = ["ExportMethods", "literal_cookie"]
