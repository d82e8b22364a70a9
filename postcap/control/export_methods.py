"""JSON-RPC methods for what users take elsewhere: cookies, the cookie jar, cookie
sync, Postman collections and HAR exports."""

from __future__ import annotations

from typing import Any, Callable

from postcap.control import params
from postcap.control.dispatch import InvalidParams, NotFound
from postcap.control.method_group import MethodGroup, session_id_param
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


def _organize_by(value: Any, default: list[str]) -> list[str]:
    if value is None:
        return default
    if value not in ORGANIZE_CHOICES:
        raise InvalidParams("organize_by", 'must be [], ["domain"], ["endpoint"] or ["domain","endpoint"]')
    return list(value)


def literal_cookie(index: int, value: Any) -> Cookie:
    """A cookie object as given to ``cookiejar.add {cookies}``."""
    name = f"cookies[{index}]"
    if not isinstance(value, dict):
        raise InvalidParams(name, "must be an object")
    for field in ("name", "value", "domain"):
        if not isinstance(value.get(field), str) or (field != "value" and not value[field]):
            raise InvalidParams(f"{name}.{field}", "must be a non-empty string" if field != "value"
                                else "must be a string")
    path = value.get("path", "/")
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidParams(f"{name}.path", "must be a path starting with /")
    expires = value.get("expires")
    if expires is not None:
        if isinstance(expires, (int, float)) and not isinstance(expires, bool):
            expires = float(expires)
        elif isinstance(expires, str) and parse_expires(expires) is not None:
            expires = parse_expires(expires)
        else:
            raise InvalidParams(f"{name}.expires", "must be an ISO 8601 or HTTP date, epoch seconds, or null")
    same_site = value.get("same_site")
    if same_site is not None and (not isinstance(same_site, str)
                                  or same_site.lower() not in SAME_SITE_VALUES):
        raise InvalidParams(f"{name}.same_site", 'must be "Strict", "Lax", "None" or null')
    flags = {}
    for flag, default in (("http_only", False), ("secure", False), ("host_only", None)):
        flags[flag] = value.get(flag, default)
        if flags[flag] is not None and not isinstance(flags[flag], bool):
            raise InvalidParams(f"{name}.{flag}", "must be true or false")
    domain = value["domain"].lower()
    host_only = flags["host_only"] if flags["host_only"] is not None else not domain.startswith(".")
    return Cookie(
        name=value["name"], value=value["value"], domain=domain.lstrip("."), path=path,
        expires=expires, http_only=flags["http_only"], secure=flags["secure"],
        same_site=None if same_site is None else SAME_SITE_VALUES[same_site.lower()],
        host_only=host_only,
    )


def _cookie_from_captured(captured: dict[str, Any]) -> Cookie:
    return Cookie(
        name=captured["name"], value=captured["value"], domain=captured["domain"],
        path=captured["path"], expires=parse_expires(captured["expires"]),
        http_only=captured["http_only"], secure=captured["secure"],
        same_site=captured["same_site"], host_only=captured["host_only"],
    )


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

    async def cookie_list(self, session_id: Any = None, limit: Any = 100, offset: Any = 0) -> dict[str, Any]:
        session_id = await session_id_param(self.sessions, "session_id", session_id)
        total, items = await self.store.run(
            select_captured, session_id,
            params.integer("limit", limit, minimum=1, maximum=MAX_PAGE),
            params.integer("offset", offset, minimum=0),
        )
        return {"total": total, "items": items}

    async def cookie_delete(self, ids: Any) -> int:
        return int(await self.store.run(delete_captured, params.id_list("ids", ids)))

    async def cookiejar_list(self, domain: Any = None) -> dict[str, Any]:
        domain = params.string("domain", domain, optional=True)
        return {"items": [cookie.to_json() for cookie in self.jar.cookies(domain)]}

    async def cookiejar_add(self, cookie_ids: Any = None, cookies: Any = None) -> int:
        if (cookie_ids is None) == (cookies is None):
            raise InvalidParams("cookie_ids", "give either cookie_ids or cookies")
        if cookie_ids is not None:
            ids = params.id_list("cookie_ids", cookie_ids)
            found = await self.store.run(select_captured_by_ids, ids)
            missing = sorted(set(ids) - {c["id"] for c in found})
            if missing:
                raise NotFound("cookie", missing[0])
            chosen = [_cookie_from_captured(c) for c in found]
        else:
            if not isinstance(cookies, list) or not cookies:
                raise InvalidParams("cookies", "must be a non-empty list of cookie objects")
            chosen = [literal_cookie(i, c) for i, c in enumerate(cookies)]
        return await self.jar.add(chosen)

    async def cookiejar_delete(self, domain: Any = None, name: Any = None) -> int:
        domain = params.string("domain", domain, optional=True)
        name = params.string("name", name, optional=True)
        if domain is None and name is None:
            raise InvalidParams("domain", "give a domain, a name, or both")
        return await self.jar.delete(domain, name)

    async def cookiejar_export(self, format: Any = "netscape") -> Any:
        chosen = params.one_of("format", format, ["netscape", "json"])
        cookies = self.jar.cookies()
        if chosen == "netscape":
            return netscape_file(cookies)
        return [cookie.to_json() for cookie in cookies]

    async def cookiesync_get(self) -> dict[str, Any]:
        return self.sync.state()

    async def cookiesync_set(self, enabled: Any = None, domains: Any = None) -> dict[str, Any]:
        enabled = params.boolean("enabled", enabled, optional=True, default=self.sync.enabled)
        domains = params.string_list("domains", domains, optional=True, default=self.sync.domains)
        if any(not d.strip(".").strip() or "/" in d or " " in d for d in domains):
            raise InvalidParams("domains", "must be host names such as example.com")
        return await self.sync.set(enabled, domains)

    # -- collections ---------------------------------------------------------------------

    async def collection_create(self, name: Any) -> dict[str, str]:
        return await self.collections.create(params.string("name", name, max_length=500))

    async def collection_list(self) -> dict[str, Any]:
        return {"items": await self.collections.list()}

    async def collection_get(self, id: Any) -> dict[str, Any]:
        collection_id = params.string("id", id)
        document = await self.collections.document(collection_id)
        if document is None:
            raise NotFound("collection", collection_id)
        return document

    async def collection_add(self, id: Any, request_ids: Any, organize_by: Any = None) -> int:
        collection_id = params.string("id", id)
        ids = params.id_list("request_ids", request_ids)
        folders = _organize_by(organize_by, [])
        if not await self.collections.exists(collection_id):
            raise NotFound("collection", collection_id)
        added, missing = await self.collections.add_requests(collection_id, ids, folders)
        if missing and not added:
            raise NotFound("request", missing[0])
        return int(added)

    async def collection_delete(self, id: Any) -> bool:
        collection_id = params.string("id", id)
        if not await self.collections.delete(collection_id):
            raise NotFound("collection", collection_id)
        return True

    # -- HAR and OpenAPI --------------------------------------------------------------------

    async def session_export(self, id: Any = None, format: Any = "har") -> dict[str, Any]:
        chosen = params.one_of("format", format, ["har", "openapi"])
        session_id = await session_id_param(self.sessions, "id", id)
        record = await self.store.get_session(session_id)

        def pages(after: int, limit: int) -> Any:
            return self.store.details_after(session_id, after, limit)

        if chosen == "openapi":
            return await openapi_export(store_pages(self.store, session_id),
                                        f"API seen in postcap session {record.name}")
        entries = await har_entries(pages)
        return har_document(entries, f"postcap session {record.name}")

    async def api_diff(self, id: Any = None, spec: Any = None) -> dict[str, Any]:
        if spec is None:
            raise InvalidParams("spec", "required: an OpenAPI 3.0/3.1 document (object, or JSON/YAML text)")
        if not isinstance(spec, (dict, str)):
            raise InvalidParams("spec", "must be an OpenAPI document object, or its JSON/YAML text")
        session_id = await session_id_param(self.sessions, "id", id)
        try:
            return await drift_report(store_pages(self.store, session_id), spec)
        except SpecError as exc:
            raise InvalidParams("spec", str(exc)) from None


__all__ = ["ExportMethods", "literal_cookie"]
