"""The reference in-memory sinks: a capture sink and a history store.

:class:`MemorySink` is the smallest correct :class:`~postcap.interfaces.ICaptureSink`;
:class:`MemoryHistoryStore` is the reference :class:`~postcap.interfaces.IHistoryStore`,
behaving like :class:`~postcap.sinks.history.SQLiteHistoryStore` (same methods,
signatures, results and errors) with every Deferred already fired.  Both are
the fakes that tests wire in place of real sinks (see :mod:`postcap.testing`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from postcap.encodings import DEFAULT_DECODE_LIMIT, decode
from postcap.interfaces import ICaptureSink, IHistoryStore, IWebSocketHistory
from postcap.metrics import StorageStats
from postcap.model import SessionRecord, Transaction, WebSocketMessage
from postcap.sinks.history import HistoryStoreClosed, TransactionFilter, storable_text
from postcap.sinks.messages import DETAIL_MESSAGES, EXPORT_MESSAGES, websocket_field

__all__ = ["MemoryHistoryStore", "MemorySink"]

_T = TypeVar("_T")

_SESSION_FIELDS = frozenset(f.name for f in dataclasses.fields(SessionRecord)) - {"id"}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@implementer(ICaptureSink)
class MemorySink:
    """Appends each finished transaction to :attr:`transactions`.

    :attr:`flushes` counts calls to :meth:`flush`; :attr:`closed` turns true on
    :meth:`close`.  Nothing is ever dropped, so keep it to tests and demos.
    """

    name = "memory"

    def __init__(self) -> None:
        self.transactions: list[Transaction] = []
        self.flushes = 0
        self.closed = False

    def transactionCompleted(self, transaction: Transaction) -> None:
        self.transactions.append(transaction)

    def flush(self) -> Deferred[None]:
        self.flushes += 1
        return succeed(None)

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)


# --- MemoryHistoryStore ------------------------------------------------------------


def _ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, as SQLite's NOCASE and LIKE do."""
    return text.translate(_ASCII_LOWER)


def _json_copy(value: Any) -> Any:
    """A fresh copy of ``value`` as a JSON round trip makes it (tuples become lists)."""
    return json.loads(json.dumps(value))


def _page(items: Sequence[_T], limit: int | None, offset: int) -> list[_T]:
    start = max(0, int(offset))
    if limit is None:
        return list(items[start:])
    return list(items[start : start + max(0, int(limit))])


@dataclass
class _Stored:
    """One stored transaction: its summary, its detail JSON and counted size, and
    what ``search_in`` looks at: the detail JSON without bodies, the body bytes
    (decoded copies included)."""

    session_id: str
    summary: dict[str, Any]
    detail: str
    size: int
    ends_at: float
    head_json: str = ""
    body_copies: tuple[bytes, ...] = ()


_BODY_TEXT_FIELDS = ("text", "encoding", "content_encoding", "decoded", "decode_error")


def _head_json(detail: dict[str, Any]) -> str:
    """The detail as the SQLite store keeps it in its ``detail`` column (no body texts)."""
    head = _json_copy(detail)
    for part in ("request", "response"):
        if head[part] is not None:
            for name in _BODY_TEXT_FIELDS:
                head[part]["body"].pop(name, None)
    return json.dumps(head, separators=(",", ":"))


def _matcher(where: TransactionFilter) -> Callable[[_Stored], bool]:
    """The Python twin of :meth:`TransactionFilter.where` (raises
    ValueError on a bad status)."""
    statuses = where.status_ranges
    query = _ascii_lower(where.query) if where.query else None
    in_heads = "headers" in where.search_in
    in_bodies = "body" in where.search_in
    json_query = _ascii_lower(json.dumps(where.query)[1:-1]) if where.query else ""
    byte_query = where.query.encode("utf-8") if where.query else b""
    methods = {_ascii_lower(m) for m in where.methods}
    domain = _ascii_lower(where.domain.strip(".")) if where.domain else None

    def matches(stored: _Stored) -> bool:
        summary = stored.summary
        if where.session_id is not None and stored.session_id != where.session_id:
            return False
        if query is not None and not (
            query in _ascii_lower(summary["url"])
            or (in_heads and json_query in _ascii_lower(stored.head_json))
            or (in_bodies and any(byte_query in copy for copy in stored.body_copies))
        ):
            return False
        if methods and _ascii_lower(summary["method"]) not in methods:
            return False
        if statuses:
            code = summary["status"]
            if code is None or not any(low <= code <= high for low, high in statuses):
                return False
        if domain is not None:
            host = _ascii_lower(summary["host"])
            if host != domain and not host.endswith("." + domain):
                return False
        return True

    return matches


@implementer(IHistoryStore, IWebSocketHistory)
class MemoryHistoryStore:
    """History of sessions and transactions in dicts; every result already fired.

    The reference :class:`~postcap.interfaces.IHistoryStore`: it has the methods
    and behaviour of :class:`~postcap.sinks.history.SQLiteHistoryStore` (extras
    included: :meth:`update_session`, :meth:`list_details`,
    :meth:`delete_transactions`, the filters of :meth:`list_transactions`),
    and its Deferreds fire before they are returned, so tests drive it under a
    ``Clock`` with ``successResultOf``.  Results are copies: changing one never
    changes the store.  Spooled body copies are read at once, on the calling
    thread (blocking file I/O: keep it to tests and demos).
    """

    name = "history"
    _log = Logger()
    #: Every write is done at once: never behind.
    congested = False

    def __init__(self, decode_limit: int = DEFAULT_DECODE_LIMIT) -> None:
        #: Decoded copies of encoded bodies keep at most this many bytes.
        self.decode_limit = decode_limit
        self._sessions: dict[str, SessionRecord] = {}
        #: In capture order, like the ``seq`` column of the SQLite store.
        self._transactions: dict[str, _Stored] = {}
        #: WebSocket messages and (closed_by, close_code) by transaction id.
        self._messages: dict[str, list[WebSocketMessage]] = {}
        self._closes: dict[str, tuple[str | None, int | None]] = {}
        self.opened = False
        self.closed = False
        #: Written and dropped counts (nothing is ever pending; always available).
        self.stats = StorageStats()

    def when_drained(self) -> Deferred[None]:
        return succeed(None)

    # ICaptureSink

    def transactionCompleted(self, transaction: Transaction) -> Deferred[None]:
        """Store ``transaction`` (unless it has no session, or its id is taken)."""
        if self.closed:
            self.stats.dropped += transaction.session_id is not None
            return fail(HistoryStoreClosed("memory"))
        if transaction.session_id is None:
            return succeed(None)
        if transaction.id in self._transactions:
            self._log.warn(
                "History already holds transaction {txn_id}; duplicate ignored",
                txn_id=transaction.id,
            )
            return succeed(None)
        try:
            stored = self._stored(transaction)
        except Exception:
            self._log.failure(
                "History could not store transaction {txn_id}", txn_id=transaction.id
            )
            self.stats.dropped += 1
            return fail()
        self._transactions[transaction.id] = stored
        self.stats.written += 1
        record = self._sessions.get(stored.session_id)
        if record is not None:
            last = record.last_activity
            self._sessions[stored.session_id] = dataclasses.replace(
                record,
                request_count=record.request_count + 1,
                total_bytes=record.total_bytes + stored.size,
                last_activity=stored.ends_at if last is None else max(last, stored.ends_at),
            )
        return succeed(None)

    def flush(self) -> Deferred[None]:
        """Nothing is ever pending: fires at once."""
        return succeed(None)

    def close(self) -> Deferred[None]:
        """Refuse all further work, as a closed SQLite store does.  Idempotent."""
        self.closed = True
        return succeed(None)

    # IHistoryStore

    def open(self) -> Deferred[None]:
        return self._run(self._open)

    def save_session(self, record: SessionRecord) -> Deferred[None]:
        """Insert or replace every field of ``record`` (counters included)."""
        return self._run(self._save_session, record)

    def update_session(self, session_id: str, **changes: Any) -> Deferred[SessionRecord | None]:
        """Change only the given fields; fires with the new record, or None."""
        return self._run(self._update_session, session_id, changes)

    def get_session(self, session_id: str) -> Deferred[SessionRecord | None]:
        return self._run(self._get_session, session_id)

    def list_sessions(
        self, limit: int | None = None, offset: int = 0
    ) -> Deferred[tuple[int, list[SessionRecord]]]:
        """``(total, records)``, newest first."""
        return self._run(self._list_sessions, limit, offset)

    def delete_session(self, session_id: str) -> Deferred[bool]:
        return self._run(self._delete_session, session_id)

    def clear_session(self, session_id: str) -> Deferred[SessionRecord | None]:
        """Delete the session's transactions, zero its counters; fires with the record."""
        return self._run(self._clear_session, session_id)

    def recover_interrupted(self) -> Deferred[list[str]]:
        return self._run(self._recover_interrupted)

    def list_transactions(
        self,
        session_id: str | None,
        limit: int | None = None,
        offset: int = 0,
        *,
        query: str | None = None,
        method: str | None = None,
        status: int | str | None = None,
        domain: str | None = None,
        search_in: Sequence[str] = (),
    ) -> Deferred[tuple[int, list[dict[str, Any]]]]:
        """``(total, summaries)`` in capture order; ``session_id=None`` spans all sessions."""
        where = TransactionFilter(
            session_id, query, method, status, domain, search_in=tuple(search_in))
        return self._run(self._list_transactions, where, limit, offset)

    def get_transaction(self, transaction_id: str) -> Deferred[dict[str, Any] | None]:
        return self._run(self._get_transaction, transaction_id)

    def list_details(
        self, session_id: str, limit: int | None = None, offset: int = 0
    ) -> Deferred[list[dict[str, Any]]]:
        """Full details (bodies included) in capture order, a page at a time (for exports)."""
        return self._run(self._list_details, session_id, limit, offset)

    def delete_transactions(self, ids: Sequence[str]) -> Deferred[int]:
        """Delete transactions (and their sessions' counts); fires with the number deleted."""
        return self._run(self._delete_transactions, list(ids))

    # internals: each runs synchronously; _run turns the outcome into a fired Deferred

    def _run(self, work: Callable[..., _T], *args: Any) -> Deferred[_T]:
        if self.closed:
            return fail(HistoryStoreClosed("memory"))
        try:
            return succeed(work(*args))
        except Exception:
            return fail()

    def _stored(self, txn: Transaction) -> _Stored:
        assert txn.session_id is not None
        data: dict[str, bytes] = {}
        parts = [("request", txn.request.body)]
        if txn.response is not None:
            parts.append(("response", txn.response.body))
        for part, body in parts:
            if not body.captured:
                continue
            try:
                data[part] = body.read()
            except OSError as problem:
                self._log.error(
                    "History stored transaction {txn_id} without its {part} body: {reason}",
                    txn_id=txn.id,
                    part=part,
                    reason=str(problem),
                )
        summary = txn.summary()
        for key in ("method", "url", "host", "content_type", "error"):
            if summary[key] is not None:
                summary[key] = storable_text(summary[key])
        detail = txn.detail(data.get("request", b""), data.get("response", b""))
        copies = [copy for copy in data.values() if copy]
        for part, body in parts:
            coding = txn.content_encoding(part)
            if coding is not None and data.get(part):
                decoded = decode(data[part], coding, self.decode_limit, body.truncated)
                detail[part]["body"].update(decoded.fields())
                copies.append(decoded.data)
        return _Stored(
            session_id=txn.session_id,
            summary=summary,
            detail=json.dumps(detail, separators=(",", ":")),
            size=txn.request_bytes + txn.response_bytes,
            ends_at=txn.started_at + txn.duration_ms / 1000.0,
            head_json=_head_json(detail),
            body_copies=tuple(copies),
        )

    def _open(self) -> None:
        self.opened = True

    def _copy(self, record: SessionRecord | None) -> SessionRecord | None:
        if record is None:
            return None
        return dataclasses.replace(record, options=_json_copy(record.options))

    def _save_session(self, record: SessionRecord) -> None:
        self._sessions[record.id] = dataclasses.replace(
            record, options=_json_copy(record.options)
        )

    def _update_session(self, session_id: str, changes: dict[str, Any]) -> SessionRecord | None:
        unknown = set(changes) - _SESSION_FIELDS
        if unknown:
            raise TypeError(f"not session fields: {', '.join(sorted(unknown))}")
        record = self._sessions.get(session_id)
        if record is None:
            return None
        if "options" in changes:
            changes = {**changes, "options": _json_copy(changes["options"])}
        self._sessions[session_id] = dataclasses.replace(record, **changes)
        return self._copy(self._sessions[session_id])

    def _get_session(self, session_id: str) -> SessionRecord | None:
        return self._copy(self._sessions.get(session_id))

    def _list_sessions(
        self, limit: int | None, offset: int
    ) -> tuple[int, list[SessionRecord]]:
        newest_first = sorted(
            self._sessions.values(), key=lambda r: (r.started_at, r.id), reverse=True
        )
        return len(newest_first), [self._copy(r) for r in _page(newest_first, limit, offset)]

    def _drop_transactions_of(self, session_id: str) -> None:
        for txn_id in [k for k, v in self._transactions.items() if v.session_id == session_id]:
            del self._transactions[txn_id]

    def _delete_session(self, session_id: str) -> bool:
        self._drop_transactions_of(session_id)
        return self._sessions.pop(session_id, None) is not None

    def _clear_session(self, session_id: str) -> SessionRecord | None:
        self._drop_transactions_of(session_id)
        record = self._sessions.get(session_id)
        if record is None:
            return None
        self._sessions[session_id] = dataclasses.replace(
            record, request_count=0, total_bytes=0, last_activity=None
        )
        return self._copy(self._sessions[session_id])

    def _recover_interrupted(self) -> list[str]:
        live = sorted(
            (r for r in self._sessions.values() if r.state in ("running", "paused")),
            key=lambda r: r.started_at,
        )
        for record in live:
            ends = [t.ends_at for t in self._transactions.values() if t.session_id == record.id]
            stopped_at = record.last_activity
            if stopped_at is None:
                stopped_at = max(ends) if ends else record.started_at
            self._sessions[record.id] = dataclasses.replace(
                record, state="stopped", stopped_at=stopped_at
            )
        return [record.id for record in live]

    def _list_transactions(
        self, where: TransactionFilter, limit: int | None, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        matches = _matcher(where)
        found = [t for t in self._transactions.values() if matches(t)]
        return len(found), [dict(t.summary) for t in _page(found, limit, offset)]

    def _get_transaction(self, transaction_id: str) -> dict[str, Any] | None:
        stored = self._transactions.get(transaction_id)
        return None if stored is None else self._detail(transaction_id, stored, DETAIL_MESSAGES)

    def _list_details(
        self, session_id: str, limit: int | None, offset: int
    ) -> list[dict[str, Any]]:
        found = [t for t in self._transactions.values() if t.session_id == session_id]
        return [self._detail(t.summary["id"], t, EXPORT_MESSAGES) for t in _page(found, limit, offset)]

    # IWebSocketHistory: messages and closes kept beside the transactions, by id; those
    # of a transaction deleted since are never read again, and go when messages are listed.

    def _detail(self, transaction_id: str, stored: _Stored, message_limit: int) -> dict[str, Any]:
        detail: dict[str, Any] = json.loads(stored.detail)
        if detail.get("kind") == "websocket":
            messages = self._messages.get(transaction_id, [])
            detail["websocket"] = websocket_field(
                [m.to_json() for m in _page(messages, message_limit, 0)], len(messages),
                self._closes.get(transaction_id))
        return detail

    def _forget_orphan_messages(self) -> None:
        for table in (self._messages, self._closes):
            for txn_id in [k for k in table if k not in self._transactions]:
                del table[txn_id]

    def append_message(self, message: WebSocketMessage) -> None:
        """Keep ``message`` with its transaction (dropped if the transaction is unknown)."""
        if not self.closed and message.transaction_id in self._transactions:
            self._messages.setdefault(message.transaction_id, []).append(message)

    def websocket_closed(self, transaction_id: str, closed_by: str | None,
                         close_code: int | None) -> None:
        if not self.closed and transaction_id in self._transactions:
            self._closes[transaction_id] = (closed_by, close_code)

    def list_messages(self, transaction_id: str, limit: int | None = None, offset: int = 0
                      ) -> Deferred[tuple[int, list[dict[str, Any]]] | None]:
        return self._run(self._list_messages, transaction_id, limit, offset)

    def _list_messages(self, transaction_id: str, limit: int | None, offset: int
                       ) -> tuple[int, list[dict[str, Any]]] | None:
        if transaction_id not in self._transactions:
            return None
        self._forget_orphan_messages()
        messages = self._messages.get(transaction_id, [])
        return len(messages), [m.to_json() for m in _page(messages, limit, offset)]

    def _delete_transactions(self, ids: list[str]) -> int:
        deleted = 0
        for txn_id in dict.fromkeys(ids):
            stored = self._transactions.pop(txn_id, None)
            if stored is None:
                continue
            deleted += 1
            record = self._sessions.get(stored.session_id)
            if record is not None:
                self._sessions[stored.session_id] = dataclasses.replace(
                    record,
                    request_count=max(0, record.request_count - 1),
                    total_bytes=max(0, record.total_bytes - stored.size),
                )
        return deleted
