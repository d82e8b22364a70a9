"""JSON-RPC methods over the captured history: list/search, get, delete, overview, replay."""

from __future__ import annotations

from typing import Any, Callable

from postcap.control.dispatch import InvalidParams, NotFound
from postcap.control.method_group import MethodGroup, session_id_param
from postcap.control.methods import ID, OPTIONAL_ID
from postcap.control.params import (
    MAX_IDS, Bool, Custom, Enum, Ids, Int, Str, Strs, Time, takes, timestamp,
)
from postcap.replay import (
    CookieSource, ReplayError, Replayer, build_replay, replay_body, replay_headers, replay_url,
)
from postcap.session import REPLAYS_SESSION_ID, SessionManager
from postcap.sinks.query import SEARCH_PLACES, status_range

MAX_PAGE = 1000


#: How many methods or statuses one ``request.list`` may name.
MAX_CHOICES = 100


def _string_or_list(name: str, value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if (
        isinstance(items, list) and 0 < len(items) <= MAX_CHOICES
        and all(isinstance(v, str) and 0 < len(v) <= 100 for v in items)
    ):
        return list(items)
    raise InvalidParams(
        name, f"must be a non-empty string or a list of 1 to {MAX_CHOICES} non-empty strings"
    )


def _statuses(name: str, value: Any) -> list[int | str]:
    items = value if isinstance(value, list) and value else [value]
    if len(items) > MAX_CHOICES:
        raise InvalidParams(name, f"must name at most {MAX_CHOICES} statuses")
    for item in items:
        try:
            if isinstance(item, bool) or not isinstance(item, (int, str)) \
                    or (isinstance(item, int) and not 0 <= item <= 999):
                raise ValueError
            status_range(item)
        except ValueError:
            raise InvalidParams(
                name, "must be a status code (404), a class (\"4xx\") or a list of them"
            ) from None
    return list(items)


def replay_param(check: Callable[[Any], Any]) -> Callable[[str, Any], Any]:
    """A replay override checked by ``check``, its :class:`ReplayError` as -32602."""

    def checked(name: str, value: Any) -> Any:
        try:
            check(value)
        except ReplayError as exc:
            raise InvalidParams(exc.param, exc.problem) from None
        return value

    return checked


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
            "request.messages": self.request_messages,
            "request.delete": self.request_delete,
            "request.replay": self.request_replay,
            "session.overview": self.session_overview,
        }


    @takes(
        session_id=OPTIONAL_ID,
        query=Str(max_length=2000, allow_empty=True, optional=True),
        method=Custom(_string_or_list, optional=True),
        status=Custom(_statuses, optional=True),
        domain=Str(max_length=253, optional=True),
        since=Time(),
        until=Time(),
        limit=Int(1, MAX_PAGE, default=100),
        offset=Int(0, default=0),
        order=Enum(("asc", "desc"), optional=True, default="asc"),
        **{"in": Strs(max_items=len(SEARCH_PLACES), optional=True)},
    )
    async def request_list(
        self,
        session_id: str | None = None,
        query: str | None = None,
        method: list[str] | None = None,
        status: list[int | str] | None = None,
        domain: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
        order: str = "asc",
        **extra: Any,
    ) -> dict[str, Any]:
        places = extra.pop("in", None) or []
        if extra:
            raise InvalidParams.unknown(sorted(extra)[0])
        session_id = await session_id_param(self.sessions, "session_id", session_id)
        unknown = set(places) - set(SEARCH_PLACES)
        if unknown:
            raise InvalidParams("in", f"must be a list of {', '.join(SEARCH_PLACES)}")
        total, items = await self.store.list_transactions(
            session_id,
            limit,
            offset,
            query=query or None,
            method=method,
            status=status,
            domain=domain,
            since=since,
            until=until,
            search_in=tuple(places),
            descending=order == "desc",
        )
        return {"total": total, "items": items}

    @takes(id=ID)
    async def request_get(self, id: str) -> dict[str, Any]:
        detail = await self.store.get_transaction(id)
        if detail is None:
            raise NotFound("request", id)
        return detail

    @takes(ids=Ids(max_items=MAX_IDS))
    async def request_delete(self, ids: list[str]) -> int:
        deleted = await self.store.delete_transactions(ids)
        active = self.sessions.active
        if active is not None and deleted:
            refreshed = await self.store.get_session(active.id)
            if refreshed is not None:
                self.sessions.refresh_counters(refreshed)
        return int(deleted)

    @takes(id=OPTIONAL_ID)
    async def session_overview(self, id: str | None = None) -> dict[str, Any]:
        session_id = await session_id_param(self.sessions, "id", id)
        return await self.store.overview(session_id)

    @takes(
        id=ID,
        use_cookie_jar=Bool(optional=True, default=False),
        url=Custom(replay_param(replay_url), optional=True),
        headers=Custom(replay_param(replay_headers), optional=True),
        body=Custom(replay_param(replay_body), optional=True),
    )
    async def request_replay(
        self,
        id: str,
        use_cookie_jar: bool = False,
        url: str | None = None,
        headers: Any = None,
        body: Any = None,
        method: Any = None,
    ) -> dict[str, Any]:
        original = await self.request_get(id)
        use_jar = use_cookie_jar
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

    @takes(id=ID, limit=Int(1, MAX_PAGE, default=100), offset=Int(0, default=0))
    async def request_messages(self, id: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """The messages of a WebSocket transaction, oldest first (empty for others)."""
        transaction_id = id
        list_messages = getattr(self.store, "list_messages", None)
        found = None
        if list_messages is not None:
            found = await list_messages(transaction_id, limit, offset)
        elif await self.store.get_transaction(transaction_id) is not None:
            found = (0, [])
        if found is None:
            raise NotFound("request", transaction_id)
        total, items = found
        return {"total": total, "items": items}


__all__ = ["HistoryMethods", "timestamp"]
