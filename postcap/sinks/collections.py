"""Named Postman collections, kept in the history file (``collections`` and
``collection_items``), and the capture sink that feeds a session's collection."""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from postcap.export.postman import collection_document, folders_for, item_from_detail
from postcap.export.postman_endpoints import ITEM_PREFIX, lift_endpoint_variables, plan_endpoint_items
from postcap.interfaces import ICaptureSink
from postcap.model import Transaction, new_id
from postcap.sinks.history import _select_detail

Cursor = Any


def _create(cursor: Cursor, collection_id: str, name: str) -> None:
    cursor.execute("INSERT INTO collections (id, name, created_at) VALUES (?, ?, ?)",
                   (collection_id, name, time.time()))


def _exists(cursor: Cursor, collection_id: str) -> bool:
    cursor.execute("SELECT 1 FROM collections WHERE id = ?", (collection_id,))
    return cursor.fetchone() is not None


def _list(cursor: Cursor) -> list[dict[str, Any]]:
    cursor.execute(
        "SELECT c.id, c.name, (SELECT COUNT(*) FROM collection_items i WHERE i.collection_id = c.id)"
        " FROM collections c ORDER BY c.created_at, c.id"
    )
    return [{"id": cid, "name": name, "request_count": count} for cid, name, count in cursor.fetchall()]


def _document(cursor: Cursor, collection_id: str) -> dict[str, Any] | None:
    cursor.execute("SELECT name FROM collections WHERE id = ?", (collection_id,))
    row = cursor.fetchone()
    if row is None:
        return None
    cursor.execute("SELECT folders, item FROM collection_items WHERE collection_id = ? ORDER BY seq",
                   (collection_id,))
    entries = [(json.loads(folders), json.loads(item)) for folders, item in cursor.fetchall()]
    return lift_endpoint_variables(collection_document(collection_id, row[0], entries))


def _merge_endpoint_items(cursor: Cursor, collection_id: str, details: Sequence[dict[str, Any]],
                          organize_by: Sequence[str]) -> int:
    """One item per method and template: new endpoints and new status examples only."""
    cursor.execute(
        "SELECT seq, folders, item FROM collection_items WHERE collection_id = ? AND item LIKE ?"
        " ORDER BY seq", (collection_id, '{"id": "' + ITEM_PREFIX + '%'))
    existing = [(seq, json.loads(folders), json.loads(item)) for seq, folders, item in cursor.fetchall()]
    updates, inserts = plan_endpoint_items(existing, details, organize_by)
    cursor.executemany("UPDATE collection_items SET item = ? WHERE seq = ?",
                       [(json.dumps(item), seq) for seq, item in updates])
    cursor.executemany(
        "INSERT INTO collection_items (collection_id, folders, item) VALUES (?, ?, ?)",
        [(collection_id, json.dumps(folders), json.dumps(item)) for folders, item in inserts])
    return len(details)


def _insert_items(cursor: Cursor, collection_id: str, details: Sequence[dict[str, Any]],
                  organize_by: Sequence[str]) -> int:
    if "endpoint" in organize_by:
        return _merge_endpoint_items(cursor, collection_id, details, organize_by)
    cursor.executemany(
        "INSERT INTO collection_items (collection_id, folders, item) VALUES (?, ?, ?)",
        [(collection_id, json.dumps(folders_for(d, organize_by)), json.dumps(item_from_detail(d)))
         for d in details],
    )
    return len(details)


def _add_requests(cursor: Cursor, collection_id: str, request_ids: Sequence[str],
                  organize_by: Sequence[str]) -> tuple[int, list[str]]:
    """Add stored transactions; returns (added, ids not found)."""
    details, missing = [], []
    for request_id in request_ids:
        detail = _select_detail(cursor, request_id)
        if detail is None or detail.get("kind") == "tunnel":
            missing.append(request_id)
        else:
            details.append(detail)
    return _insert_items(cursor, collection_id, details, organize_by), missing


def _add_transaction(cursor: Cursor, collection_id: str, transaction: Transaction,
                     organize_by: Sequence[str]) -> int:
    """Add a just-captured transaction (reads spooled bodies: store thread only)."""
    if not _exists(cursor, collection_id):
        return 0
    response_body = transaction.response.body.read() if transaction.response is not None else b""
    detail = transaction.detail(transaction.request.body.read(), response_body)
    return _insert_items(cursor, collection_id, [detail], organize_by)


def _delete(cursor: Cursor, collection_id: str) -> bool:
    cursor.execute("DELETE FROM collection_items WHERE collection_id = ?", (collection_id,))
    cursor.execute("DELETE FROM collections WHERE id = ?", (collection_id,))
    return bool(cursor.rowcount)


class Collections:
    """The collection store's operations, as Deferreds from the store's thread."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def create(self, name: str) -> dict[str, str]:
        collection_id = new_id()
        await self.store.run(_create, collection_id, name)
        return {"id": collection_id, "name": name}

    def exists(self, collection_id: str) -> Deferred[bool]:
        return self.store.run(_exists, collection_id)

    def list(self) -> Deferred[list[dict[str, Any]]]:
        return self.store.run(_list)

    def document(self, collection_id: str) -> Deferred[dict[str, Any] | None]:
        return self.store.run(_document, collection_id)

    def add_requests(self, collection_id: str, request_ids: Sequence[str],
                     organize_by: Sequence[str]) -> Deferred[tuple[int, list[str]]]:
        return self.store.run(_add_requests, collection_id, list(request_ids), list(organize_by))

    def delete(self, collection_id: str) -> Deferred[bool]:
        return self.store.run(_delete, collection_id)


@implementer(ICaptureSink)
class CollectionSink:
    """Adds each captured transaction of a session whose ``collection`` option is set."""

    name = "collection"

    def __init__(self, store: Any, target: Callable[[str], tuple[str, list[str]] | None]) -> None:
        self.store = store
        #: session id → (collection id, organize_by), or None
        self.target = target

    def transactionCompleted(self, transaction: Transaction) -> Deferred[None]:
        if transaction.session_id is None or transaction.kind == "tunnel":
            return succeed(None)
        chosen = self.target(transaction.session_id)
        if chosen is None:
            return succeed(None)
        collection_id, organize_by = chosen
        return self.store.run(_add_transaction, collection_id, transaction, organize_by)

    def flush(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)


__all__ = ["CollectionSink", "Collections"]
