"""JSON-RPC methods over the captured history: list/search, get, delete, overview, replay."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from postcap.control import params
from postcap.control.dispatch import InvalidParams, NotFound
from postcap.control.method_group import MethodGroup, session_id_param
from postcap.replay import CookieSource, ReplayError, Replayer, build_replay
from postcap.session import REPLAYS_SESSION_ID, SessionManager
from postcap.sinks.query import SEARCH_PLACES, status_range

MAX_PAGE = 1000
MAX_IDS = 10_000


def timestamp(name: str, value: Any) -> float | None:
    """An ISO 8601 time (``2026-11-22T10:00:00Z``, offset optional, UTC when none)
    or epoch seconds, as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return moment.timestamp()
    raise InvalidParams(name, "must be an ISO 8601 time such as 2026-11-22T10:00:00Z or epoch seconds")


def _string_or_list(name: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    raise InvalidParams(name, "must be a non-empty string or a non-empty list of strings")


def _statuses(value: Any) -> list[int | str] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) and value else [value]
    for item in items:
        try:
            if isinstance(item, bool) or not isinstance(item, (int, str)):
                raise ValueError
            status_range(item)
        except ValueError:
            raise InvalidParams(
                "status", "must be a status code (404), a class (\"4xx\") or a list of them"
            ) from None
    return list(items)


class HistoryMethods(MethodGroup):
    """``request.*`` and ``session.overview``."""

    def __init__(
        self,
        sessions: SessionManager,
        replayer: Replayer,
        cookie_source: CookieSource | None = None,
    ) -> None:
        self.sessions = sessions
        self.replayer = replayer
        #: Set when the cookie jar exists; ``use_cookie_jar`` adds nothing without it.
        self.cookie_source = cookie_source

    @property
    def store(self) -> Any:
        return self.sessions.store


    def methods(self) -> dict[str, Callable[..., Any]]:
        return {
            "request.list": self.request_list,
            "request.get": self.request_get,
            "request.delete": self.request_delete,
            "request.replay": self.request_replay,
            "session.overview": self.session_overview,
        }


    async def request_list(
        self,
        session_id: Any = None,
        query: Any = None,
        method: Any = None,
        status: Any = None,
        domain: Any = None,
        since: Any = None,
        until: Any = None,
        limit: Any = 100,
        offset: Any = 0,
        order: Any = "asc",
        **extra: Any,
    ) -> dict[str, Any]:
        search_in = extra.pop("in", None)
        if extra:
            raise InvalidParams.unknown(sorted(extra)[0])
        session_id = await session_id_param(self.sessions, "session_id", session_id)
        query = params.string("query", query, optional=True, allow_empty=True, max_length=2000)
        places = params.string_list("in", search_in, optional=True, default=[])
        unknown = set(places) - set(SEARCH_PLACES)
        if unknown:
            raise InvalidParams("in", f"must be a list of {', '.join(SEARCH_PLACES)}")
        domain = params.string("domain", domain, optional=True)
        order = params.one_of("order", order, ["asc", "desc"], optional=True, default="asc")
        total, items = await self.store.list_transactions(
            session_id,
            params.integer("limit", limit, minimum=1, maximum=MAX_PAGE),
            params.integer("offset", offset, minimum=0),
            query=query or None,
            method=_string_or_list("method", method),
            status=_statuses(status),
            domain=domain,
            since=timestamp("since", since),
            until=timestamp("until", until),
            search_in=tuple(places),
            descending=order == "desc",
        )
        return {"total": total, "items": items}

    async def request_get(self, id: Any) -> dict[str, Any]:
        transaction_id = params.string("id", id)
        detail = await self.store.get_transaction(transaction_id)
        if detail is None:
            raise NotFound("request", transaction_id)
        return detail

    async def request_delete(self, ids: Any) -> int:
        chosen = params.id_list("ids", ids)
        if len(chosen) > MAX_IDS:
            raise InvalidParams("ids", f"at most {MAX_IDS} ids at a time")
        deleted = await self.store.delete_transactions(chosen)
        active = self.sessions.active
        if active is not None and deleted:
            refreshed = await self.store.get_session(active.id)
            if refreshed is not None:
                self.sessions.refresh_counters(refreshed)
        return int(deleted)

    async def session_overview(self, id: Any = None) -> dict[str, Any]:
        session_id = await session_id_param(self.sessions, "id", id)
        return await self.store.overview(session_id)

    async def request_replay(
        self,
        id: Any,
        use_cookie_jar: Any = False,
        url: Any = None,
        headers: Any = None,
        body: Any = None,
        method: Any = None,
    ) -> dict[str, Any]:
        original = await self.request_get(id)
        use_jar = params.boolean("use_cookie_jar", use_cookie_jar, optional=True, default=False)
        try:
            target_url = url if url is not None else original["url"]
            cookie_header = None
            if use_jar and self.cookie_source is not None and isinstance(target_url, str):
                cookie_header = self.cookie_source.cookie_header_for(target_url)
            request = build_replay(original, url=url, headers=headers, body=body,
                                   cookie_header=cookie_header, method=method)
        except ReplayError as exc:
            raise InvalidParams(exc.param, exc.problem) from exc
        session_id = await self.sessions.replay_target()
        transaction = await self.replayer.send(request, session_id)
        self.sessions.record(transaction)
        await self.store.flush()
        if session_id == REPLAYS_SESSION_ID:
            ended = transaction.started_at + transaction.duration_ms / 1000.0
            await self.store.update_session(REPLAYS_SESSION_ID, stopped_at=ended)
        detail = await self.store.get_transaction(transaction.id)
        if detail is None:  # the store could not keep it; answer what was seen
            detail = transaction.detail()
        detail["replay_of"] = original["id"]
        return detail


__all__ = ["HistoryMethods", "timestamp"]
