"""The durable history: sessions and their transactions in SQLite.

Writes are batched: :meth:`SQLiteHistoryStore.transactionCompleted` queues a
transaction and a batch is committed ``batch_delay`` seconds later (or at once
when ``batch_size`` are waiting) in one ``runInteraction``, which inserts the
rows, the body copies and bumps the session's counters in the same SQL
transaction.  Reads flush pending writes first, so they see every transaction
already handed over.

All SQL runs through one connection, never on the reactor thread: by default
in one ``adbapi.ConnectionPool`` worker thread (several connections cause
"database is locked"); with ``separate_process`` in a child process of its own
(:mod:`postcap.sinks.dbprocess`), as the server runs it, so that writing the
history takes neither the proxy's GIL nor its core; batches travel packed
(:mod:`postcap.sinks.packing`).  While more than ``high_water`` bytes of batches
wait for that process the store is ``congested`` and the proxy holds back the
next request of captured clients.  The schema is versioned with
``PRAGMA user_version``: each entry of :data:`MIGRATIONS` brings it one version
further, inside one SQL transaction.

Layout: ``transactions`` holds one row per exchange with the summary columns
and ``detail`` (the detail JSON without body texts); body copies live apart in
``bodies`` so that list queries never touch BLOBs.  A body sent with a
``Content-Encoding`` also gets its decoded copy (at most ``decode_limit`` bytes,
decoded here, off the reactor) in ``decoded_bodies``, which search and readers use.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, FirstError, fail, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from postcap.interfaces import IHistoryStore, IWebSocketHistory
from postcap.datamode import data_mode
from postcap.encodings import (
    DEFAULT_DECODE_LIMIT,
    DecodedBody,
    content_encoding_of,
    decode,
    decode_file,
)
from postcap.model import (
    Body,
    Headers,
    Request,
    Response,
    SessionDelta,
    SessionRecord,
    TLSInfo,
    Timings,
    Transaction,
    iso8601,
    media_type,
)
from postcap.metrics import StorageStats
from postcap.sinks.availability import WriteHealth, probe_writes
from postcap.sinks.dbprocess import ProcessConnectionPool
from postcap.sinks.messages import (
    PendingMessages,
    StoredMessages,
    migration_websocket_messages,
    with_websocket,
)
from postcap.sinks.packing import pack, unpack
from postcap.sinks.query import (
    SUMMARY_COLUMNS as _SUMMARY_COLUMNS,
    TransactionFilter,
    select_overview,
    select_summary_rows,
)

__all__ = ["MIGRATIONS", "HistoryStoreClosed", "SQLiteHistoryStore", "TransactionFilter"]

#: An ``adbapi.Transaction``: a DB-API cursor bound to the pool's connection.
Cursor = Any
Migration = Callable[[Cursor], None]

BODY_PARTS = ("request", "response")
BUSY_TIMEOUT_MS = 5000
_ID_CHUNK = 500  # ids per "IN (…)" clause, well under SQLite's variable limit

_SESSION_COLUMNS = (
    "id",
    "name",
    "source",
    "state",
    "started_at",
    "stopped_at",
    "options",
    "request_count",
    "total_bytes",
    "last_activity",
)
_TRANSACTION_COLUMNS = (
    "id",
    "session_id",
    "started_at",
    "kind",
    "method",
    "url",
    "host",
    "status",
    "duration_ms",
    "request_bytes",
    "response_bytes",
    "content_type",
    "error",
    "detail",
    "data_mode",
)


class HistoryStoreClosed(RuntimeError):
    """The store was used after :meth:`SQLiteHistoryStore.close`."""


class SchemaTooNew(RuntimeError):
    """The database was written by a newer postcap; it is left untouched."""


# --- schema -----------------------------------------------------------------

_SCHEMA_1 = (
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        source TEXT NOT NULL,
        state TEXT NOT NULL,
        started_at REAL NOT NULL,
        stopped_at REAL,
        options TEXT NOT NULL DEFAULT '{}',
        request_count INTEGER NOT NULL DEFAULT 0,
        total_bytes INTEGER NOT NULL DEFAULT 0,
        last_activity REAL
    )
    """,
    "CREATE INDEX sessions_by_start ON sessions (started_at)",
    """
    CREATE TABLE transactions (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        session_id TEXT NOT NULL,
        started_at REAL NOT NULL,
        kind TEXT NOT NULL,
        method TEXT NOT NULL,
        url TEXT NOT NULL,
        host TEXT NOT NULL,
        status INTEGER,
        duration_ms REAL NOT NULL,
        request_bytes INTEGER NOT NULL,
        response_bytes INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        error TEXT,
        detail TEXT NOT NULL
    )
    """,
    "CREATE INDEX transactions_by_session ON transactions (session_id, seq)",
    """
    CREATE TABLE bodies (
        transaction_id TEXT NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
        part TEXT NOT NULL CHECK (part IN ('request', 'response')),
        data BLOB NOT NULL,
        PRIMARY KEY (transaction_id, part)
    )
    """,
)


def _migration_1(cursor: Cursor) -> None:
    """Create sessions, transactions and bodies."""
    for statement in _SCHEMA_1:
        cursor.execute(statement)


def _stored_data_mode(detail_json: str) -> str:
    request = json.loads(detail_json)["request"]
    content_type = ""
    for name, value in request["headers"]:
        if name.lower() == "content-type":
            content_type = value.split(";", 1)[0].strip().lower()
            break
    return data_mode(content_type, int(request["body"]["size"]))


def _migration_2(cursor: Cursor) -> None:
    """Search and overview: the request data mode as a column, and the indexes that
    keep filtered lists and overviews of large sessions fast."""
    cursor.execute("ALTER TABLE transactions ADD COLUMN data_mode TEXT NOT NULL DEFAULT 'none'")
    cursor.execute("SELECT seq, detail FROM transactions")
    modes = [(_stored_data_mode(detail), seq) for seq, detail in cursor.fetchall()]
    cursor.executemany("UPDATE transactions SET data_mode = ? WHERE seq = ?", modes)
    for statement in (
        # Filtered lists read this index alone (no table rows) until the page is found.
        "CREATE INDEX transactions_search"
        " ON transactions (session_id, seq, method, status, host, url)",
        "DROP INDEX transactions_by_session",  # the search index starts with its columns
        # The overview: one scan of this index answers every count and total.
        "CREATE INDEX transactions_overview ON transactions (session_id, method, host, status,"
        " data_mode, request_bytes, response_bytes, duration_ms, started_at, error)",
        "CREATE INDEX sessions_by_stop ON sessions (state, stopped_at)",
    ):
        cursor.execute(statement)


_SCHEMA_3 = (
    """
    CREATE TABLE cookies (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        session_id TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('request', 'response')),
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        domain TEXT NOT NULL,
        path TEXT NOT NULL,
        expires REAL,
        http_only INTEGER NOT NULL,
        secure INTEGER NOT NULL,
        same_site TEXT,
        host_only INTEGER NOT NULL
    )
    """,
    "CREATE INDEX cookies_by_session ON cookies (session_id, seq)",
    "CREATE INDEX cookies_by_transaction ON cookies (transaction_id)",
    """
    CREATE TABLE cookie_jar (
        domain TEXT NOT NULL,
        path TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        expires REAL,
        http_only INTEGER NOT NULL,
        secure INTEGER NOT NULL,
        same_site TEXT,
        host_only INTEGER NOT NULL,
        added_at REAL NOT NULL,
        PRIMARY KEY (domain, path, name)
    )
    """,
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """
    CREATE TABLE collections (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE collection_items (
        seq INTEGER PRIMARY KEY,
        collection_id TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
        folders TEXT NOT NULL,
        item TEXT NOT NULL
    )
    """,
    "CREATE INDEX collection_items_by_collection ON collection_items (collection_id, seq)",
)


def _migration_3(cursor: Cursor) -> None:
    """Captured cookies, the cookie jar, settings (cookie sync) and collections."""
    for statement in _SCHEMA_3:
        cursor.execute(statement)


def _migration_4(cursor: Cursor) -> None:
    """Decoded copies of bodies sent with a Content-Encoding (for search and readers)."""
    cursor.execute(
        """
        CREATE TABLE decoded_bodies (
            transaction_id TEXT NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
            part TEXT NOT NULL CHECK (part IN ('request', 'response')),
            data BLOB NOT NULL,
            truncated INTEGER NOT NULL,
            error TEXT,
            PRIMARY KEY (transaction_id, part)
        )
        """
    )


#: Migration N (1-based) takes the schema from version N-1 to N.  Append only.
MIGRATIONS: list[Migration] = [_migration_1, _migration_2, _migration_3, _migration_4,
                               migration_websocket_messages]


def _user_version(cursor: Cursor) -> int:
    cursor.execute("PRAGMA user_version")
    return int(cursor.fetchone()[0])


def _migrate(cursor: Cursor, migrations: Sequence[Migration]) -> tuple[int, int]:
    """Apply the missing migrations atomically; returns (old version, new version)."""
    target = len(migrations)
    current = _user_version(cursor)
    if current > target:
        raise SchemaTooNew(f"history schema version {current} is newer than {target}")
    if current == target:
        return current, current
    cursor.execute("BEGIN IMMEDIATE")
    current = _user_version(cursor)  # another process may have migrated meanwhile
    for version in range(current + 1, target + 1):
        migrations[version - 1](cursor)
    cursor.execute(f"PRAGMA user_version = {int(target)}")
    return current, target


def _enable_incremental_vacuum(connection: Any) -> bool:
    """A file made before auto_vacuum was set needs one VACUUM to take it on."""
    mode = connection.execute("PRAGMA auto_vacuum").fetchone()[0]
    if int(mode) == 2:
        return False
    connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
    connection.execute("VACUUM")
    return True


def _configure_connection(connection: Any) -> None:
    """cp_openfun: per-connection pragmas."""
    for pragma in (
        "PRAGMA auto_vacuum=INCREMENTAL",  # takes effect in a new file; see _reclaim_space
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    ):
        connection.execute(pragma)


# --- rows <-> model -----------------------------------------------------------


_BLOB_PIECE = 1024 * 1024


def storable_text(value: str) -> str:
    """``value`` made storable as SQLite UTF-8 text (lone surrogates replaced)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


# The stored detail JSON is written out here rather than built as ``txn.detail(b"", b"")``
# and dumped: the same text as ``json.dumps(detail, separators=(",", ":"))`` with the
# bodies' "text", "encoding" and "content_encoding" (the headers give it) left out, at a
# fraction of the cost (tests compare them).

_json_str = json.encoder.encode_basestring_ascii  # how json.dumps writes a str
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _json_opt(value: str | None) -> str:
    return "null" if value is None else _json_str(value)


def _json_ms(value: float) -> str:
    """A duration in milliseconds, rounded to 3 places as the detail shape has it."""
    text = repr(round(value, 3))
    return _NON_FINITE.get(text, text)


def _json_headers(headers: Headers) -> str:
    pairs = ",".join(
        [f"[{_json_str(k.decode('latin-1'))},{_json_str(v.decode('latin-1'))}]"
         for k, v in headers]
    )
    return f"[{pairs}]"


def _json_body(body: Body) -> str:
    """The body shape without "encoding", "text" (the bytes live in ``bodies``) and
    "content_encoding" (read from the headers)."""
    truncated = "true" if body.truncated else "false"
    captured = "true" if body.captured else "false"
    return f'{{"size":{body.size},"truncated":{truncated},"captured":{captured}}}'


def _json_message(start: str, message: Request | Response) -> str:
    """A request's or response's detail JSON: ``start`` (its first fields), then the rest."""
    return (
        f'{{{start},"http_version":{_json_str(message.http_version)}'
        f',"headers":{_json_headers(message.headers)},"body":{_json_body(message.body)}'
        f',"trailers":{_json_headers(message.trailers)}}}'
    )


def _json_request(request: Request) -> str:
    return _json_message(
        f'"method":{_json_str(request.method)}'
        f',"target":{_json_str(request.target.decode("latin-1"))}',
        request,
    )


def _json_response(response: Response | None) -> str:
    if response is None:
        return "null"
    return _json_message(
        f'"status":{response.status},"reason":{_json_str(response.reason)}', response
    )


def _json_timings(timings: Timings) -> str:
    return (
        f'{{"connect_ms":{_json_ms(timings.connect_ms)},"tls_ms":{_json_ms(timings.tls_ms)}'
        f',"send_ms":{_json_ms(timings.send_ms)},"wait_ms":{_json_ms(timings.wait_ms)}'
        f',"receive_ms":{_json_ms(timings.receive_ms)}}}'
    )


def _json_tls(tls: TLSInfo | None) -> str:
    if tls is None:
        return "null"
    return (
        f'{{"sni":{_json_opt(tls.sni)},"version":{_json_opt(tls.version)}'
        f',"cipher":{_json_opt(tls.cipher)}}}'
    )


def _transaction_row(txn: Transaction) -> tuple[Any, ...]:
    """The ``transactions`` row of ``txn`` (:data:`_TRANSACTION_COLUMNS`)."""
    request, response, client, server = txn.request, txn.response, txn.client, txn.server
    method, url, host, error = request.method, txn.url, server.host, txn.error
    status = None if response is None else response.status
    content_type = "" if response is None else media_type(response.headers)
    response_bytes = 0 if response is None else response.body.size
    detail = (
        f'{{"id":{_json_str(txn.id)},"session_id":{_json_opt(txn.session_id)}'
        f',"started_at":{_json_opt(iso8601(txn.started_at))},"method":{_json_str(method)}'
        f',"url":{_json_str(url)},"host":{_json_str(host)}'
        f',"status":{"null" if status is None else status}'
        f',"duration_ms":{_json_ms(txn.duration_ms)},"request_bytes":{request.body.size}'
        f',"response_bytes":{response_bytes},"content_type":{_json_str(content_type)}'
        f',"error":{_json_opt(error)},"kind":{_json_str(txn.kind)}'
        f',"schema_version":{txn.schema_version},"request":{_json_request(request)}'
        f',"response":{_json_response(response)},"timings":{_json_timings(txn.timings)}'
        f',"client":{{"ip":{_json_str(client.host)},"port":{client.port}}}'
        f',"server":{{"host":{_json_str(host)},"port":{server.port}}},"tls":{_json_tls(txn.tls)}}}'
    )
    return (
        txn.id,
        txn.session_id,
        txn.started_at,
        txn.kind,
        storable_text(method),
        storable_text(url),
        storable_text(host),
        status,
        txn.duration_ms,
        request.body.size,
        response_bytes,
        storable_text(content_type),
        None if error is None else storable_text(error),
        detail,
        txn.data_mode,
    )


def _summary_from_row(row: Sequence[Any]) -> dict[str, Any]:
    summary = dict(zip(_SUMMARY_COLUMNS, row))
    summary["started_at"] = iso8601(summary["started_at"])
    summary["duration_ms"] = round(summary["duration_ms"], 3)
    return summary


def _detail_from_row(
    detail_json: str, bodies: dict[str, bytes], decoded: dict[str, DecodedBody]
) -> dict[str, Any]:
    detail: dict[str, Any] = json.loads(detail_json)
    for part in BODY_PARTS:
        message = detail.get(part)
        if message is not None:
            stored = message["body"]
            shape = Body(
                size=stored["size"], captured=stored["captured"], truncated=stored["truncated"]
            )
            body = shape.to_json(bodies.get(part, b""), content_encoding_of(message["headers"]))
            if part in decoded:
                body.update(decoded[part].fields())
            message["body"] = body
    return detail


def _session_row(record: SessionRecord) -> tuple[Any, ...]:
    return (
        record.id,
        record.name,
        record.source,
        record.state,
        record.started_at,
        record.stopped_at,
        json.dumps(record.options),
        record.request_count,
        record.total_bytes,
        record.last_activity,
    )


def _session_from_row(row: Sequence[Any]) -> SessionRecord:
    values = dict(zip(_SESSION_COLUMNS, row))
    values["options"] = json.loads(values["options"])
    return SessionRecord(**values)


def _marks(count: int) -> str:
    return ",".join("?" * count)


def _chunks(items: Sequence[str], size: int = _ID_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- write interactions ---------------------------------------------------------


@dataclass
class _BatchReport:
    """What a batch interaction hands back to the reactor thread for logging."""

    stored: int = 0
    duplicates: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str, str]] = field(default_factory=list)


_INSERT_TRANSACTION = (
    f"INSERT OR IGNORE INTO transactions ({', '.join(_TRANSACTION_COLUMNS)})"
    f" VALUES ({_marks(len(_TRANSACTION_COLUMNS))})"
)
_INSERT_BODY = "INSERT INTO bodies (transaction_id, part, data) VALUES (?, ?, ?)"
_INSERT_DECODED = (
    "INSERT INTO decoded_bodies (transaction_id, part, data, truncated, error)"
    " VALUES (?, ?, ?, ?, ?)"
)


def _stored_ids(cursor: Cursor, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` the transactions table holds (one statement for any number, so
    that batches of every size share one prepared statement)."""
    cursor.execute(
        "SELECT id FROM transactions WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(ids),),
    )
    return {row[0] for row in cursor.fetchall()}


def _new_transactions(
    cursor: Cursor, transactions: Sequence[Transaction], duplicates: list[str]
) -> list[Transaction]:
    """``transactions`` less those whose id is stored already or came earlier in the
    batch; the ids left out go to ``duplicates``, in batch order."""
    taken = _stored_ids(cursor, list(dict.fromkeys(txn.id for txn in transactions)))
    fresh = []
    for txn in transactions:
        if txn.id in taken:
            duplicates.append(txn.id)
        else:
            taken.add(txn.id)
            fresh.append(txn)
    return fresh


def _insert_bodies(
    cursor: Cursor, transactions: Iterable[Transaction], report: _BatchReport,
    decode_limit: int = DEFAULT_DECODE_LIMIT,
) -> None:
    """Store the captured, non-empty body copies, and decoded copies of those sent
    with a Content-Encoding (reads spool files: pool thread only)."""
    in_memory: list[tuple[str, str, bytes]] = []
    decoded: list[tuple[str, str, bytes, bool, str | None]] = []
    for txn in transactions:
        for part, body in zip(BODY_PARTS, txn.bodies()):
            if not body.captured:
                continue
            coding = txn.content_encoding(part)
            try:
                if body.spool_path is not None:
                    _insert_spooled_body(cursor, txn.id, part, body.spool_path)
                    if coding is not None:
                        with open(body.spool_path, "rb") as spooled:
                            result = decode_file(spooled, coding, decode_limit, body.truncated)
                        decoded.append((txn.id, part, *result.row()))
                    continue
                data = body.read()
            except OSError as problem:
                report.unreadable.append((txn.id, part, str(problem)))
                continue
            if data:
                in_memory.append((txn.id, part, data))
                if coding is not None:
                    result = decode(data, coding, decode_limit, body.truncated)
                    decoded.append((txn.id, part, *result.row()))
    cursor.executemany(_INSERT_BODY, in_memory)
    cursor.executemany(_INSERT_DECODED, decoded)


def _insert_spooled_body(cursor: Cursor, txn_id: str, part: str, spool_path: str) -> None:
    """Copy a spooled body into its blob in 1 MiB pieces, never holding it whole in memory."""
    with open(spool_path, "rb") as spooled:
        size = os.fstat(spooled.fileno()).st_size
        if not size:
            return
        cursor.execute(
            "INSERT INTO bodies (transaction_id, part, data) VALUES (?, ?, zeroblob(?))",
            (txn_id, part, size),
        )
        rowid = cursor.lastrowid
        try:
            with cursor.connection.blobopen("bodies", "data", rowid) as blob:
                while piece := spooled.read(min(_BLOB_PIECE, size - blob.tell())):
                    blob.write(piece)
        except OSError:
            cursor.execute("DELETE FROM bodies WHERE rowid = ?", (rowid,))
            raise


def _bump_sessions(cursor: Cursor, transactions: Iterable[Transaction]) -> None:
    """Add ``transactions`` to their sessions' counts, sizes and last activity."""
    deltas: dict[str, SessionDelta] = {}
    for txn in transactions:
        session_id = txn.session_id or ""
        delta = deltas.get(session_id)
        if delta is None:
            delta = deltas[session_id] = SessionDelta()
        delta.add(txn)
    cursor.executemany(
        "UPDATE sessions SET request_count = request_count + ?,"
        " total_bytes = total_bytes + ?,"
        " last_activity = MAX(COALESCE(last_activity, ?), ?)"
        " WHERE id = ?",
        [(delta.count, delta.size, delta.last_activity, delta.last_activity, session_id)
         for session_id, delta in deltas.items()],
    )


def _insert_packed_batch(
    cursor: Cursor, packed: bytes, decode_limit: int = DEFAULT_DECODE_LIMIT
) -> _BatchReport:
    """:func:`_insert_batch` of a batch as :func:`postcap.sinks.packing.pack` gave it."""
    return _insert_batch(cursor, unpack(packed), decode_limit)


def _insert_batch(
    cursor: Cursor, transactions: Sequence[Transaction], decode_limit: int = DEFAULT_DECODE_LIMIT
) -> _BatchReport:
    """One SQL transaction: rows, bodies and session counters of a batch."""
    if not cursor.connection.in_transaction:
        cursor.execute("BEGIN IMMEDIATE")  # no other writer between the id check and the insert
    report = _BatchReport()
    fresh = _new_transactions(cursor, transactions, report.duplicates)
    cursor.executemany(_INSERT_TRANSACTION, map(_transaction_row, fresh))  # one row at a time
    if cursor.rowcount != len(fresh):
        # Another constraint skipped rows (a NaN time is stored as NULL): like duplicates,
        # they are left out and reported, and the rest of the batch is stored.
        stored = _stored_ids(cursor, [txn.id for txn in fresh])
        report.duplicates.extend(txn.id for txn in fresh if txn.id not in stored)
        fresh = [txn for txn in fresh if txn.id in stored]
    _insert_bodies(cursor, fresh, report, decode_limit)
    _bump_sessions(cursor, fresh)
    report.stored = len(fresh)
    return report


def _upsert_session(cursor: Cursor, record: SessionRecord) -> None:
    updates = ", ".join(f"{column} = excluded.{column}" for column in _SESSION_COLUMNS[1:])
    cursor.execute(
        f"INSERT INTO sessions ({', '.join(_SESSION_COLUMNS)})"
        f" VALUES ({_marks(len(_SESSION_COLUMNS))})"
        f" ON CONFLICT (id) DO UPDATE SET {updates}",
        _session_row(record),
    )


def _update_session(
    cursor: Cursor, session_id: str, changes: dict[str, Any]
) -> SessionRecord | None:
    unknown = set(changes) - set(_SESSION_COLUMNS[1:])
    if unknown:
        raise TypeError(f"not session fields: {', '.join(sorted(unknown))}")
    if changes:
        values = [json.dumps(v) if k == "options" else v for k, v in changes.items()]
        assignments = ", ".join(f"{column} = ?" for column in changes)
        cursor.execute(f"UPDATE sessions SET {assignments} WHERE id = ?", (*values, session_id))
    return _select_session(cursor, session_id)


def _delete_session_transactions(cursor: Cursor, session_id: str) -> None:
    cursor.execute("DELETE FROM cookies WHERE session_id = ?", (session_id,))
    for table in ("bodies", "decoded_bodies"):
        cursor.execute(
            f"DELETE FROM {table} WHERE transaction_id IN"
            " (SELECT id FROM transactions WHERE session_id = ?)",
            (session_id,),
        )
    cursor.execute("DELETE FROM transactions WHERE session_id = ?", (session_id,))


def _delete_session(cursor: Cursor, session_id: str) -> bool:
    _delete_session_transactions(cursor, session_id)
    cursor.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
    deleted = bool(cursor.rowcount)
    _release_free_pages(cursor)
    return deleted


def _release_free_pages(cursor: Cursor) -> None:
    """Give the pages freed by deletes back to the file system (auto_vacuum=INCREMENTAL).

    ``executescript`` commits the deletes first and then steps the pragma to the end
    (``execute`` would free a single page).
    """
    cursor.executescript("PRAGMA incremental_vacuum;")


def _clear_session(cursor: Cursor, session_id: str) -> SessionRecord | None:
    _delete_session_transactions(cursor, session_id)
    cursor.execute(
        "UPDATE sessions SET request_count = 0, total_bytes = 0, last_activity = NULL"
        " WHERE id = ?",
        (session_id,),
    )
    return _select_session(cursor, session_id)


def _delete_transactions(cursor: Cursor, ids: Sequence[str]) -> int:
    """Delete transactions by id, taking them off their sessions' counters."""
    deleted = 0
    for chunk in _chunks(list(dict.fromkeys(ids))):
        marks = _marks(len(chunk))
        cursor.execute(
            "SELECT session_id, COUNT(*), SUM(request_bytes + response_bytes)"
            f" FROM transactions WHERE id IN ({marks}) GROUP BY session_id",
            chunk,
        )
        for session_id, count, size in cursor.fetchall():
            cursor.execute(
                "UPDATE sessions SET request_count = MAX(0, request_count - ?),"
                " total_bytes = MAX(0, total_bytes - ?) WHERE id = ?",
                (count, size, session_id),
            )
        cursor.execute(f"DELETE FROM bodies WHERE transaction_id IN ({marks})", chunk)
        cursor.execute(f"DELETE FROM decoded_bodies WHERE transaction_id IN ({marks})", chunk)
        cursor.execute(f"DELETE FROM cookies WHERE transaction_id IN ({marks})", chunk)
        cursor.execute(f"DELETE FROM transactions WHERE id IN ({marks})", chunk)
        deleted += cursor.rowcount
    _release_free_pages(cursor)
    return deleted


def _purge_candidates(
    cursor: Cursor, older_than: float | None, max_bytes: int | None, keep: Sequence[str]
) -> list[str]:
    """Stopped sessions to delete, oldest first: those stopped before ``older_than``,
    then more until the file would fit in ``max_bytes`` (judged by their sizes)."""
    cursor.execute(
        "SELECT id, stopped_at, total_bytes FROM sessions WHERE state = 'stopped'"
        " ORDER BY COALESCE(stopped_at, started_at), started_at"
    )
    stopped = [row for row in cursor.fetchall() if row[0] not in keep]
    doomed = [sid for sid, stopped_at, _ in stopped
              if older_than is not None and (stopped_at or 0) < older_than]
    if max_bytes is not None:
        cursor.execute("PRAGMA page_count")
        pages = int(cursor.fetchone()[0])
        cursor.execute("PRAGMA page_size")
        page_size = int(cursor.fetchone()[0])
        cursor.execute("PRAGMA freelist_count")
        used = (pages - int(cursor.fetchone()[0])) * page_size
        cursor.execute("SELECT COALESCE(SUM(total_bytes), 0) FROM sessions")
        recorded = max(1, int(cursor.fetchone()[0]))
        # Each session's share of the file: its bytes, scaled by the file's overhead.
        scale = used / recorded
        excess = used - max_bytes
        for sid, _, size in stopped:
            if sid in doomed:
                excess -= size * scale
        for sid, _, size in stopped:
            if excess <= 0:
                break
            if sid not in doomed:
                doomed.append(sid)
                excess -= max(size * scale, page_size)
    return doomed


def _used_bytes(cursor: Cursor) -> int:
    cursor.execute("PRAGMA page_count")
    pages = int(cursor.fetchone()[0])
    cursor.execute("PRAGMA freelist_count")
    free = int(cursor.fetchone()[0])
    cursor.execute("PRAGMA page_size")
    return (pages - free) * int(cursor.fetchone()[0])


def _purge(
    cursor: Cursor, older_than: float | None, max_bytes: int | None, keep: Sequence[str]
) -> list[str]:
    doomed = _purge_candidates(cursor, older_than, max_bytes, keep)
    for session_id in doomed:
        _delete_session_transactions(cursor, session_id)
        cursor.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
    if doomed:
        _release_free_pages(cursor)
    return doomed


def _recover_interrupted(cursor: Cursor) -> list[str]:
    live = "state IN ('running', 'paused')"
    cursor.execute(f"SELECT id FROM sessions WHERE {live} ORDER BY started_at")
    ids = [row[0] for row in cursor.fetchall()]
    cursor.execute(
        "UPDATE sessions SET state = 'stopped', stopped_at = COALESCE("
        " last_activity,"
        " (SELECT MAX(t.started_at + t.duration_ms / 1000.0) FROM transactions t"
        "  WHERE t.session_id = sessions.id),"
        f" started_at) WHERE {live}"
    )
    return ids


# --- read interactions ------------------------------------------------------------


def _select_session(cursor: Cursor, session_id: str) -> SessionRecord | None:
    cursor.execute(
        f"SELECT {', '.join(_SESSION_COLUMNS)} FROM sessions WHERE id = ?", (session_id,)
    )
    row = cursor.fetchone()
    return None if row is None else _session_from_row(row)


def _select_sessions(
    cursor: Cursor, limit: int, offset: int
) -> tuple[int, list[SessionRecord]]:
    cursor.execute("SELECT COUNT(*) FROM sessions")
    total = int(cursor.fetchone()[0])
    cursor.execute(
        f"SELECT {', '.join(_SESSION_COLUMNS)} FROM sessions"
        " ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?",
        (limit, offset),
    )
    return total, [_session_from_row(row) for row in cursor.fetchall()]


def _select_summaries(
    cursor: Cursor, where: TransactionFilter, limit: int, offset: int, descending: bool = False
) -> tuple[int, list[dict[str, Any]]]:
    total, rows = select_summary_rows(cursor, where, limit, offset, descending)
    return total, [_summary_from_row(row) for row in rows]


def _rows_by_id(cursor: Cursor, select: str, ids: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The rows of ``select`` (``… WHERE transaction_id IN``) for ``ids``, in chunks."""
    for chunk in _chunks(ids):
        cursor.execute(f"{select} ({_marks(len(chunk))})", chunk)
        yield from cursor.fetchall()


def _select_bodies(cursor: Cursor, ids: Sequence[str]) -> dict[str, dict[str, bytes]]:
    bodies: dict[str, dict[str, bytes]] = {}
    select = "SELECT transaction_id, part, data FROM bodies WHERE transaction_id IN"
    for transaction_id, part, data in _rows_by_id(cursor, select, ids):
        bodies.setdefault(transaction_id, {})[part] = bytes(data)
    return bodies


def _select_decoded(cursor: Cursor, ids: Sequence[str]) -> dict[str, dict[str, DecodedBody]]:
    decoded: dict[str, dict[str, DecodedBody]] = {}
    select = ("SELECT transaction_id, part, data, truncated, error FROM decoded_bodies"
              " WHERE transaction_id IN")
    for transaction_id, part, data, truncated, error in _rows_by_id(cursor, select, ids):
        decoded.setdefault(transaction_id, {})[part] = DecodedBody(
            bytes(data), bool(truncated), error)
    return decoded


def _select_detail(cursor: Cursor, transaction_id: str) -> dict[str, Any] | None:
    cursor.execute("SELECT id, detail FROM transactions WHERE id = ?", (transaction_id,))
    row = cursor.fetchone()
    return None if row is None else _details_of(cursor, [row])[0]


def _select_details(
    cursor: Cursor, session_id: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    cursor.execute(
        "SELECT id, detail FROM transactions WHERE session_id = ?"
        " ORDER BY seq LIMIT ? OFFSET ?",
        (session_id, limit, offset),
    )
    return _details_of(cursor, cursor.fetchall())


def _details_of(cursor: Cursor, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Details, bodies included, of ``(id, detail)`` rows."""
    ids = [row[0] for row in rows]
    bodies, decoded = _select_bodies(cursor, ids), _select_decoded(cursor, ids)
    return [_detail_from_row(detail, bodies.get(tid, {}), decoded.get(tid, {}))
            for tid, detail in rows]


def _select_details_after(
    cursor: Cursor, session_id: str, after: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """A page of details after position ``after`` in capture order, and the position
    to continue from: every page costs the same, however deep into the session."""
    cursor.execute(
        "SELECT seq, id, detail FROM transactions WHERE session_id = ? AND seq > ?"
        " ORDER BY seq LIMIT ?",
        (session_id, after, limit),
    )
    rows = cursor.fetchall()
    details = _details_of(cursor, [(tid, detail) for _, tid, detail in rows])
    return (rows[-1][0] if rows else after), details


def _sql_limit(limit: int | None) -> int:
    return -1 if limit is None else max(0, int(limit))


# --- the store ----------------------------------------------------------------------


class _Batch:
    """Transactions written together, and who waits for them (in the order they came)."""

    __slots__ = ("transactions", "waiters", "body_bytes", "sent_at")

    def __init__(self) -> None:
        self.sent_at = 0.0
        self.transactions: list[Transaction] = []
        self.waiters: list[Deferred[None]] = []
        #: Bytes of the body copies held in memory by the transactions.
        self.body_bytes = 0

    def observe(self) -> Deferred[None]:
        observer: Deferred[None] = Deferred()
        self.waiters.append(observer)
        return observer

    def settle(self, failure: Failure | None) -> None:
        if failure is None:
            for waiter in self.waiters:
                waiter.callback(None)
        else:
            for waiter in self.waiters:
                waiter.errback(failure)


def _first_failure(failure: Failure) -> Failure:
    failure.trap(FirstError)
    return failure.value.subFailure


@implementer(IHistoryStore, IWebSocketHistory)
class SQLiteHistoryStore(StoredMessages):
    """History of sessions and transactions in one SQLite file (see module docs).

    ``reactor`` runs the pool's callbacks; ``clock`` (default: ``reactor``)
    schedules batch writes; ``separate_process`` puts the SQLite connection in a
    child process (see the module docs); ``decode_limit`` caps decoded body copies.
    """

    name = "history"
    _log = Logger()

    def __init__(
        self,
        path: str,
        reactor: Any = None,
        batch_delay: float = 0.05,
        batch_size: int = 500,
        clock: IReactorTime | None = None,
        separate_process: bool = False,
        decode_limit: int = DEFAULT_DECODE_LIMIT,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.path = path
        #: Decoded copies of encoded bodies keep at most this many bytes.
        self.decode_limit = decode_limit
        self.batch_delay = batch_delay
        self.batch_size = max(1, batch_size)
        self._clock: IReactorTime = clock if clock is not None else reactor
        self._pool: Any
        if separate_process:
            self._pool = ProcessConnectionPool(reactor, path)
        else:
            self._pool = adbapi.ConnectionPool(
                "sqlite3",
                path,
                check_same_thread=False,
                cp_min=1,
                cp_max=1,
                cp_openfun=_configure_connection,
                cp_reactor=reactor,
            )
        self._pending = _Batch()
        self._pending_ws = PendingMessages()
        self._inflight: list[_Batch] = []
        self._timer: IDelayedCall | None = None
        self._closing = False
        self._closed = False
        self._close_observers: list[Deferred[None]] = []
        #: Pending, written and dropped transactions, write latency, availability.
        self.stats = StorageStats()
        self.health = WriteHealth(
            self._clock, lambda: self._pool.runWithConnection(probe_writes), self.stats, path)

    # ICaptureSink

    def transactionCompleted(self, transaction: Transaction) -> Deferred[None]:
        """Queue ``transaction``; fires once its batch is committed."""
        if self._closed:
            self.stats.dropped += transaction.session_id is not None
            return fail(HistoryStoreClosed(self.path))
        if transaction.session_id is None:
            return succeed(None)
        self.stats.pending += 1
        pending = self._pending
        pending.transactions.append(transaction)
        waiter: Deferred[None] = Deferred()
        pending.waiters.append(waiter)
        response = transaction.response
        pending.body_bytes += len(transaction.request.body.content) + (
            0 if response is None else len(response.body.content))
        if len(pending.transactions) >= self.batch_size or pending.body_bytes >= self.batch_bytes:
            self._write_pending()
        elif self._timer is None:
            self._timer = self._clock.callLater(self.batch_delay, self._on_timer)
        return waiter

    #: A batch is written once its body copies in memory reach this many bytes.
    batch_bytes = 4 * 1024 * 1024
    #: Bytes of batches in the database process's queue that make the store congested,
    #: and the level it must come down to before captured clients are read again.
    high_water = 32 * 1024 * 1024
    low_water = 8 * 1024 * 1024

    @property
    def congested(self) -> bool:
        """True while more than ``high_water`` bytes wait for the database process (a
        store in this process's thread is never congested: it is for tests and tools)."""
        return getattr(self._pool, "backlog", 0) > self.high_water

    def when_drained(self) -> Deferred[None]:
        if not self.congested:
            return succeed(None)
        return self._pool.when_backlog_below(self.low_water)

    def flush(self) -> Deferred[None]:
        """Write what is pending; fires when every batch so far is committed.

        Errbacks with the failure of a batch that could not be written.
        """
        self._write_pending()
        observers = [batch.observe() for batch in self._inflight]
        if not observers:
            return succeed(None)
        done = gatherResults(observers, consumeErrors=True)
        return done.addCallbacks(lambda _: None, _first_failure)

    def close(self) -> Deferred[None]:
        """Write everything pending, then close the pool.  Idempotent."""
        if self._closed:
            return succeed(None)
        observer: Deferred[None] = Deferred()
        self._close_observers.append(observer)
        if not self._closing:
            self._closing = True
            Deferred.fromCoroutine(self._close())
        return observer

    # IHistoryStore

    def open(self) -> Deferred[None]:
        """Create the schema or migrate it to the newest version."""
        return Deferred.fromCoroutine(self._open())

    def save_session(self, record: SessionRecord) -> Deferred[None]:
        """Insert or replace every field of ``record`` (counters included)."""
        return self._after_writes(_upsert_session, record)

    def update_session(self, session_id: str, **changes: Any) -> Deferred[SessionRecord | None]:
        """Change only the given fields; fires with the new record, or None."""
        return self._after_writes(_update_session, session_id, changes)

    def get_session(self, session_id: str) -> Deferred[SessionRecord | None]:
        return self._after_writes(_select_session, session_id)

    def list_sessions(
        self, limit: int | None = None, offset: int = 0
    ) -> Deferred[tuple[int, list[SessionRecord]]]:
        """``(total, records)``, newest first."""
        return self._after_writes(_select_sessions, _sql_limit(limit), max(0, int(offset)))

    def delete_session(self, session_id: str) -> Deferred[bool]:
        return self._after_writes(_delete_session, session_id)

    def clear_session(self, session_id: str) -> Deferred[SessionRecord | None]:
        """Delete the session's transactions, zero its counters; fires with the record."""
        return self._after_writes(_clear_session, session_id)

    def recover_interrupted(self) -> Deferred[list[str]]:
        return self._after_writes(_recover_interrupted)

    def list_transactions(
        self,
        session_id: str | None,
        limit: int | None = None,
        offset: int = 0,
        *,
        query: str | None = None,
        method: str | Sequence[str] | None = None,
        status: int | str | Sequence[int | str] | None = None,
        domain: str | None = None,
        since: float | None = None,
        until: float | None = None,
        search_in: Sequence[str] = (),
        descending: bool = False,
    ) -> Deferred[tuple[int, list[dict[str, Any]]]]:
        """``(total, summaries)`` in capture order (newest first when ``descending``);
        ``session_id=None`` spans all sessions.  See :class:`TransactionFilter`."""
        where = TransactionFilter(
            session_id, query, method, status, domain, since, until, tuple(search_in)
        )
        return self._after_writes(
            _select_summaries, where, _sql_limit(limit), max(0, int(offset)), descending
        )

    def overview(self, session_id: str) -> Deferred[dict[str, Any]]:
        """Counts by method, domain, data mode and status, and totals, of one session."""
        return self._after_writes(select_overview, session_id)

    def purge(
        self,
        older_than: float | None = None,
        max_bytes: int | None = None,
        keep: Sequence[str] = (),
    ) -> Deferred[list[str]]:
        """Delete the oldest stopped sessions (never those in ``keep``): every one stopped
        before ``older_than`` (epoch seconds), then more until the data fits in
        ``max_bytes``.  Fires with the deleted ids."""
        return self._after_writes(_purge, older_than, max_bytes, list(keep))

    def run(self, interaction: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run ``interaction(cursor, *args)`` in the store's thread, after every pending
        history write (for the cookie, jar and collection tables of the same file)."""
        return self._after_writes(interaction, *args)

    def size_bytes(self) -> Deferred[int]:
        """Bytes the database uses (pages in use times page size)."""
        return self._after_writes(_used_bytes)

    def get_transaction(self, transaction_id: str) -> Deferred[dict[str, Any] | None]:
        return self._after_writes(with_websocket, _select_detail, transaction_id)

    def list_details(
        self, session_id: str, limit: int | None = None, offset: int = 0
    ) -> Deferred[list[dict[str, Any]]]:
        """Full details (bodies included) in capture order, a page at a time (for exports)."""
        return self._after_writes(
            with_websocket, _select_details, session_id, _sql_limit(limit), max(0, int(offset))
        )

    def details_after(
        self, session_id: str, after: int = 0, limit: int = 200
    ) -> Deferred[tuple[int, list[dict[str, Any]]]]:
        """``(next_after, details)``: the next page of full details in capture order,
        for exports (start with ``after=0``; an empty page means the end)."""
        return self._after_writes(with_websocket, _select_details_after, session_id, int(after),
                                  max(1, int(limit)))

    def delete_transactions(self, ids: Sequence[str]) -> Deferred[int]:
        """Delete transactions (and their sessions' counts); fires with the number deleted."""
        return self._after_writes(_delete_transactions, list(ids))

    # internals

    async def _open(self) -> None:
        self._ensure_open()
        old, new = await self._pool.runInteraction(_migrate, list(MIGRATIONS))
        if await self._pool.runWithConnection(_enable_incremental_vacuum):
            self._log.info("History store {path} rebuilt once so that deletes give space back",
                           path=self.path)
        self._log.info(
            "History store {path} opened at schema version {version} (was {old_version})",
            path=self.path,
            version=new,
            old_version=old,
        )

    def _ensure_open(self) -> None:
        if self._closed:
            raise HistoryStoreClosed(self.path)

    def _after_writes(self, interaction: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._run_after_writes(interaction, *args))

    async def _run_after_writes(self, interaction: Callable[..., Any], *args: Any) -> Any:
        self._ensure_open()
        await self._settled()
        self._ensure_open()
        return await self._pool.runInteraction(interaction, *args)

    def _settled(self) -> Deferred[None]:
        """Like :meth:`flush`, but a failed batch (already logged) is not an error."""
        return self.flush().addErrback(lambda _: None)

    def _on_timer(self) -> None:
        self._timer = None
        self._write_pending()

    def _begin_write(self) -> _Batch:
        """A batch written apart (WebSocket messages) that flushes and reads wait for."""
        batch = _Batch()
        self._inflight.append(batch)
        return batch

    def _write_pending(self) -> None:
        """Hand the pending transactions to the pool as one batch."""
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        batch = self._pending
        if not batch.transactions:
            self._write_pending_ws()
            return
        self._pending = _Batch()
        self._inflight.append(batch)
        batch.sent_at = self._clock.seconds()
        written = self._pool.runInteraction(
            _insert_packed_batch, pack(batch.transactions), self.decode_limit)
        written.addCallbacks(
            self._batch_written,
            self._batch_failed,
            callbackArgs=(batch,),
            errbackArgs=(batch,),
        )
        self._write_pending_ws()

    def _batch_written(self, report: _BatchReport, batch: _Batch) -> None:
        self._inflight.remove(batch)
        stats = self.stats
        stats.pending -= len(batch.transactions)
        stats.written += report.stored
        stats.write_seconds.observe(self._clock.seconds() - batch.sent_at)
        self.health.write_succeeded()
        self._log.debug(
            "History batch written: {stored} of {batch_size} transactions stored",
            stored=report.stored,
            batch_size=len(batch.transactions),
        )
        for txn_id in report.duplicates:
            self._log.warn(
                "History already holds transaction {txn_id}; duplicate ignored", txn_id=txn_id
            )
        for txn_id, part, reason in report.unreadable:
            self._log.error(
                "History stored transaction {txn_id} without its {part} body: {reason}",
                txn_id=txn_id,
                part=part,
                reason=reason,
            )
        batch.settle(None)

    def _batch_failed(self, failure: Failure, batch: _Batch) -> None:
        self._inflight.remove(batch)
        self.stats.pending -= len(batch.transactions)
        self.stats.dropped += len(batch.transactions)
        self.health.write_failed(failure.getErrorMessage() or failure.type.__name__)
        self._log.failure(
            "History batch of {batch_size} transactions could not be written",
            failure,
            batch_size=len(batch.transactions),
            txn_ids=[txn.id for txn in batch.transactions],
        )
        batch.settle(failure)

    async def _close(self) -> None:
        try:
            while self._pending.transactions or self._pending_ws or self._inflight:
                await self._settled()
        finally:
            self._closed = True
            self.health.close()
            closed = self._pool.close()
            if isinstance(closed, Deferred):
                await closed
            observers, self._close_observers = self._close_observers, []
            for observer in observers:
                observer.callback(None)
