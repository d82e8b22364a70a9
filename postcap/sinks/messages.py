"""WebSocket messages in the history file: schema, batched writes, reads.

Messages live in ``ws_messages`` (one row each, the stored copy as a BLOB) and
the end of each connection in ``ws_closes``; both reference their handshake's
row in ``transactions`` and go with it (``ON DELETE CASCADE``).  A message whose
transaction is not stored (filtered out, deleted meanwhile) is dropped on insert.
Rows travel to the database as plain tuples (see :class:`PendingMessages`).
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from postcap.model import WebSocketMessage

Cursor = Any

#: Messages a transaction detail (``request.get``) carries; ``request.messages`` pages the rest.
DETAIL_MESSAGES = 1000
#: Messages of one connection in exports (HAR): a page of details stays bounded in memory.
EXPORT_MESSAGES = 100_000

_SCHEMA = (
    """
    CREATE TABLE ws_messages (
        seq INTEGER PRIMARY KEY,
        transaction_id TEXT NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
        direction TEXT NOT NULL,
        type TEXT NOT NULL,
        at REAL NOT NULL,
        size INTEGER NOT NULL,
        truncated INTEGER NOT NULL,
        data BLOB NOT NULL,
        code INTEGER
    )
    """,
    "CREATE INDEX ws_messages_by_transaction ON ws_messages (transaction_id, seq)",
    """
    CREATE TABLE ws_closes (
        transaction_id TEXT PRIMARY KEY REFERENCES transactions (id) ON DELETE CASCADE,
        closed_by TEXT,
        close_code INTEGER
    )
    """,
)


def migration_websocket_messages(cursor: Cursor) -> None:
    """WebSocket messages and connection ends."""
    for statement in _SCHEMA:
        cursor.execute(statement)


MessageRow = tuple[str, str, str, float, int, int, bytes, "int | None", str]
CloseRow = tuple[str, "str | None", "int | None", str]


class PendingMessages:
    """Messages and closes waiting for the next history batch."""

    __slots__ = ("messages", "closes", "size")

    def __init__(self) -> None:
        self.messages: list[MessageRow] = []
        self.closes: list[CloseRow] = []
        #: Bytes of the stored copies held.
        self.size = 0

    def __bool__(self) -> bool:
        return bool(self.messages or self.closes)

    def add_message(self, m: WebSocketMessage) -> None:
        self.messages.append((m.transaction_id, m.direction, m.type, m.at, m.size,
                              int(m.truncated), m.data, m.code, m.transaction_id))
        self.size += len(m.data)

    def add_close(self, transaction_id: str, closed_by: str | None, code: int | None) -> None:
        self.closes.append((transaction_id, closed_by, code, transaction_id))


_INSERT_MESSAGE = (
    "INSERT INTO ws_messages (transaction_id, direction, type, at, size, truncated, data, code)"
    " SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM transactions WHERE id = ?)"
)
_UPSERT_CLOSE = (
    "INSERT INTO ws_closes (transaction_id, closed_by, close_code)"
    " SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM transactions WHERE id = ?)"
    " ON CONFLICT (transaction_id) DO UPDATE SET"
    " closed_by = excluded.closed_by, close_code = excluded.close_code"
)


def insert_messages(cursor: Cursor, messages: Sequence[MessageRow], closes: Sequence[CloseRow]) -> int:
    """One SQL transaction of messages and closes; returns the messages stored."""
    if not cursor.connection.in_transaction:
        cursor.execute("BEGIN IMMEDIATE")
    cursor.executemany(_INSERT_MESSAGE, messages)
    stored = cursor.rowcount
    cursor.executemany(_UPSERT_CLOSE, closes)
    return int(stored)


def _message_json(row: Sequence[Any]) -> dict[str, Any]:
    direction, kind, at, size, truncated, data, code = row
    return WebSocketMessage("", direction, kind, at, size, bool(truncated), bytes(data),
                            code).to_json()


_MESSAGE_COLUMNS = "direction, type, at, size, truncated, data, code"


def select_messages(cursor: Cursor, transaction_id: str, limit: int, offset: int
                    ) -> tuple[int, list[dict[str, Any]]] | None:
    """``(total, messages)`` of one transaction, oldest first; None if it is not stored."""
    cursor.execute("SELECT 1 FROM transactions WHERE id = ?", (transaction_id,))
    if cursor.fetchone() is None:
        return None
    cursor.execute("SELECT COUNT(*) FROM ws_messages WHERE transaction_id = ?", (transaction_id,))
    total = int(cursor.fetchone()[0])
    cursor.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM ws_messages WHERE transaction_id = ?"
        " ORDER BY seq LIMIT ? OFFSET ?",
        (transaction_id, limit, offset),
    )
    return total, [_message_json(row) for row in cursor.fetchall()]


def attach_websocket(cursor: Cursor, details: Sequence[dict[str, Any]],
                     limit: int = DETAIL_MESSAGES) -> None:
    """Give each WebSocket detail its ``websocket`` field (messages, closed_by, close_code,
    message_count), with the first ``limit`` messages."""
    for detail in details:
        if detail.get("kind") != "websocket":
            continue
        transaction_id = detail["id"]
        total, messages = select_messages(cursor, transaction_id, limit, 0) or (0, [])
        cursor.execute("SELECT closed_by, close_code FROM ws_closes WHERE transaction_id = ?",
                       (transaction_id,))
        row = cursor.fetchone()
        detail["websocket"] = websocket_field(messages, total, row)


def with_websocket(cursor: Cursor, select: Any, *args: Any) -> Any:
    """Run the read interaction ``select(cursor, *args)`` (one detail or None, a list of
    details, or ``(position, details)``) and give its WebSocket details their messages:
    the first :data:`DETAIL_MESSAGES` of one detail, up to :data:`EXPORT_MESSAGES` in
    lists (exports).  ``select`` must be module-level (it travels to the database process)."""
    result = select(cursor, *args)
    if isinstance(result, dict):
        attach_websocket(cursor, [result])
    elif isinstance(result, tuple):
        attach_websocket(cursor, result[1], EXPORT_MESSAGES)
    elif result:
        attach_websocket(cursor, result, EXPORT_MESSAGES)
    return result


def websocket_field(messages: list[dict[str, Any]], total: int,
                    close: Sequence[Any] | None) -> dict[str, Any]:
    """The detail's ``websocket`` object."""
    return {
        "messages": messages,
        "message_count": total,
        "closed_by": None if close is None else close[0],
        "close_code": None if close is None else close[1],
    }


class StoredMessages:
    """The :class:`~postcap.interfaces.IWebSocketHistory` writes of the SQLite store, as a
    mixin: messages and closes wait in ``_pending_ws`` and go to the database right
    after each transaction batch (so after the handshakes they belong to), in one SQL
    transaction of their own.  The store provides ``_pool``, ``_clock``, ``_closed``,
    ``_timer``, ``batch_*``, ``_write_pending``, ``_on_timer``, ``_after_writes`` and
    ``_begin_write`` (an in-flight batch that flushes and reads wait for)."""

    _log = Logger()
    _pending_ws: PendingMessages
    _pool: Any
    _clock: Any
    _closed: bool
    _timer: Any
    _inflight: list[Any]
    batch_size: int
    batch_bytes: int
    batch_delay: float

    def append_message(self, message: WebSocketMessage) -> None:
        """Queue a message; it is written with the next batch."""
        if self._closed:
            return
        self._pending_ws.add_message(message)
        self._ws_queued()

    def websocket_closed(self, transaction_id: str, closed_by: str | None,
                         close_code: int | None) -> None:
        """Queue the end of a WebSocket transaction's connection."""
        if self._closed:
            return
        self._pending_ws.add_close(transaction_id, closed_by, close_code)
        self._ws_queued()

    def list_messages(self, transaction_id: str, limit: int | None = None, offset: int = 0
                      ) -> Deferred[tuple[int, list[dict[str, Any]]] | None]:
        """``(total, messages)`` of a transaction, oldest first; None if it is unknown."""
        return self._after_writes(select_messages, transaction_id,  # type: ignore[attr-defined]
                                  -1 if limit is None else max(0, int(limit)), max(0, int(offset)))

    def _ws_queued(self) -> None:
        pending = self._pending_ws
        if len(pending.messages) >= self.batch_size or pending.size >= self.batch_bytes:
            self._write_pending()  # type: ignore[attr-defined]
        elif self._timer is None:
            self._timer = self._clock.callLater(self.batch_delay, self._on_timer)  # type: ignore[attr-defined]

    def _write_pending_ws(self) -> None:
        pending = self._pending_ws
        if not pending:
            return
        self._pending_ws = PendingMessages()
        batch = self._begin_write()  # type: ignore[attr-defined]
        written = self._pool.runInteraction(insert_messages, pending.messages, pending.closes)
        written.addBoth(self._ws_written, batch, len(pending.messages))

    def _ws_written(self, result: Any, batch: Any, count: int) -> None:
        self._inflight.remove(batch)
        if isinstance(result, Failure):
            self._log.failure("History could not write {count} WebSocket messages", result,
                              count=count)
            batch.settle(result)
        else:
            batch.settle(None)


__all__ = [
    "DETAIL_MESSAGES",
    "EXPORT_MESSAGES",
    "PendingMessages",
    "StoredMessages",
    "with_websocket",
    "attach_websocket",
    "insert_messages",
    "migration_websocket_messages",
    "select_messages",
    "websocket_field",
]
