"""Tests for the history stores (SQLite and in-memory) and the in-memory sink.

The behaviour every store shares is in :mod:`tests.history_conformance`, run here
against both stores; the rest of this module is what only SQLite has: batches,
the bodies table, persistence across reopen, pragmas and migrations.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import random
import shutil
import sqlite3
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from postcap.model import Body, TLSInfo, Timings, Transaction, iso8601
from postcap.sinks import history
from postcap.sinks.history import SchemaTooNew, SQLiteHistoryStore
from postcap.sinks.packing import unpack
from postcap.testing import MemoryHistoryStore, MemorySink, make_session, make_transaction
from tests import dbprocess_calls
from tests.history_conformance import ExplodingBody, HistoryStoreConformance, expected_detail
from tests.sink_conformance import CaptureSinkConformance


class StoreCase(TestCase):
    """Opens stores on temporary files and closes them after each test."""

    def new_path(self) -> str:
        directory = tempfile.mkdtemp(prefix="postcap-history-")
        self.addCleanup(shutil.rmtree, directory, True)
        return os.path.join(directory, "history.sqlite3")

    async def open_store(self, path: str | None = None, **kwargs: Any) -> SQLiteHistoryStore:
        store = SQLiteHistoryStore(path or self.new_path(), **kwargs)
        self.addCleanup(store.close)
        await store.open()
        return store

    def count_batches(self, store: SQLiteHistoryStore) -> list[int]:
        """Record the size of every batch interaction the store runs."""
        sizes: list[int] = []
        real = store._pool.runInteraction

        def spy(interaction: Any, *args: Any, **kwargs: Any) -> Any:
            if interaction is history._insert_packed_batch:
                sizes.append(len(unpack(args[0])))
            return real(interaction, *args, **kwargs)

        self.patch(store._pool, "runInteraction", spy)
        return sizes

    async def scalar(self, store: SQLiteHistoryStore, sql: str, *params: Any) -> Any:
        rows = await store._pool.runQuery(sql, params)
        return rows[0][0]


class MemorySinkConformanceTests(CaptureSinkConformance, TestCase):
    def make_sink(self) -> MemorySink:
        return MemorySink()

    def test_keeps_transactions_in_order(self) -> None:
        sink = MemorySink()
        first, second = make_transaction(), make_transaction()
        sink.transactionCompleted(first)
        sink.transactionCompleted(second)
        self.assertEqual(sink.transactions, [first, second])
        self.successResultOf(sink.close())
        self.assertTrue(sink.closed)


class SQLiteHistoryStoreConformanceTests(HistoryStoreConformance, StoreCase):
    def make_store(self) -> Any:
        return self.open_store()


class SQLiteProcessHistoryStoreConformanceTests(HistoryStoreConformance, StoreCase):
    """The same store with its connection in a child process, as the server runs it."""

    def make_store(self) -> Any:
        return self.open_store(separate_process=True)


class CongestionTests(StoreCase):
    """A store whose database process is behind says so, and when it has caught up."""

    async def test_congested_while_batches_wait_for_the_database_process(self) -> None:
        store = await self.open_store(separate_process=True)
        store.high_water, store.low_water = 10_000, 0
        self.assertFalse(store.congested)
        self.assertTrue(store.when_drained().called)
        session = make_session()
        await store.save_session(session)
        held = store._pool.runInteraction(dbprocess_calls.slow, 0.3)
        for n in range(20):
            store.transactionCompleted(
                make_transaction(session_id=session.id, response_body=bytes([n]) * 1024))
        store._write_pending()
        self.assertTrue(store.congested)
        drained = store.when_drained()
        self.assertFalse(drained.called)
        await held
        await drained
        self.assertFalse(store.congested)
        total, _ = await store.list_transactions(session.id)
        self.assertEqual(total, 20)

    async def test_a_store_in_this_process_is_never_congested(self) -> None:
        store = await self.open_store()
        store.high_water = 0
        self.assertFalse(store.congested)


class MemoryHistoryStoreConformanceTests(HistoryStoreConformance, TestCase):
    def make_store(self) -> MemoryHistoryStore:
        store = MemoryHistoryStore()
        self.successResultOf(store.open())
        return store


class MemoryHistoryStoreTests(SynchronousTestCase):
    """The reference store answers at once: no reactor, no waiting."""

    def test_results_are_already_fired(self) -> None:
        store = MemoryHistoryStore()
        record = make_session()
        txn = make_transaction(session_id=record.id)
        self.assertIsNone(self.successResultOf(store.open()))
        self.assertIsNone(self.successResultOf(store.save_session(record)))
        self.assertIsNone(self.successResultOf(store.transactionCompleted(txn)))
        stored = self.successResultOf(store.get_session(record.id))
        self.assertEqual(stored.request_count, 1)
        self.assertEqual(
            self.successResultOf(store.list_transactions(record.id)), (1, [txn.summary()])
        )
        self.assertEqual(self.successResultOf(store.get_transaction(txn.id)), expected_detail(txn))
        self.assertIsNone(self.successResultOf(store.flush()))

    def test_errors_are_failed_deferreds(self) -> None:
        store = MemoryHistoryStore()
        self.failureResultOf(store.list_transactions(None, status="teapot"), ValueError)
        self.failureResultOf(store.update_session("x", colour="red"), TypeError)


class SQLiteSpecificTests(StoreCase):
    """What the conformance tests cannot see: rows of the bodies table, batches."""

    async def test_bodies_go_with_their_transactions(self) -> None:
        store = await self.open_store()
        doomed, cleared, kept = make_session(), make_session(), make_session()
        for record in (doomed, cleared, kept):
            await store.save_session(record)
        for record in (doomed, cleared, kept):
            store.transactionCompleted(
                make_transaction(session_id=record.id, request_body=b"payload")
            )
        await store.flush()
        self.assertEqual(await self.scalar(store, "SELECT COUNT(*) FROM bodies"), 6)
        await store.delete_session(doomed.id)
        await store.clear_session(cleared.id)
        self.assertEqual(await self.scalar(store, "SELECT COUNT(*) FROM bodies"), 2)

    async def test_bodies_not_captured_are_not_stored(self) -> None:
        store = await self.open_store()
        txn = make_transaction(
            response_body=Body(size=1234, captured=False),
            content_type="image/png",
        )
        await store.transactionCompleted(txn)
        self.assertEqual(await self.scalar(store, "SELECT COUNT(*) FROM bodies"), 0)

    async def test_session_less_transactions_need_no_batch(self) -> None:
        store = await self.open_store()
        sizes = self.count_batches(store)
        done = store.transactionCompleted(make_transaction(session_id=None))
        self.assertIsNone(self.successResultOf(done))
        await store.flush()
        self.assertEqual(sizes, [])


class DecodedCopyTests(StoreCase):
    """Decoded copies of encoded bodies: cut at the store's limit, gone with their rows."""

    @staticmethod
    def gzipped(session_id: str, data: bytes) -> Transaction:
        return make_transaction(session_id=session_id, response_body=gzip.compress(data),
                                response_headers=((b"Content-Encoding", b"gzip"),))

    async def test_decoded_copies_stop_at_the_limit(self) -> None:
        store = await self.open_store(decode_limit=1000)
        txn = self.gzipped("s", bytes(5 * 1024 * 1024))  # 5 MiB of zeros: a small bomb
        await store.transactionCompleted(txn)
        size = await self.scalar(store, "SELECT length(data) FROM decoded_bodies")
        self.assertEqual(size, 1000)
        decoded = (await store.get_transaction(txn.id))["response"]["body"]["decoded"]
        self.assertEqual((decoded["size"], decoded["truncated"]), (1000, True))

    async def test_decoded_copies_go_with_their_transactions(self) -> None:
        store = await self.open_store()
        doomed, cleared = make_session(), make_session()
        for record in (doomed, cleared):
            await store.save_session(record)
        txns = [self.gzipped(record.id, b"x") for record in (doomed, cleared, doomed)]
        for txn in txns:
            store.transactionCompleted(txn)
        await store.flush()
        self.assertEqual(await self.scalar(store, "SELECT COUNT(*) FROM decoded_bodies"), 3)
        await store.delete_transactions([txns[2].id])
        self.assertEqual(await self.scalar(store, "SELECT COUNT(*) FROM decoded_bodies"), 2)
        await store.delete_session(doomed.id)
        await store.clear_session(cleared.id)
        self.assertEqual(await self.scalar(store, "SELECT COUNT(*) FROM decoded_bodies"), 0)

    async def test_plain_bodies_get_no_decoded_copy(self) -> None:
        store = await self.open_store()
        await store.transactionCompleted(make_transaction(session_id="s"))
        self.assertEqual(await self.scalar(store, "SELECT COUNT(*) FROM decoded_bodies"), 0)


class SpooledBodyTests(StoreCase):
    async def test_spooled_body_is_stored_whole_in_pieces(self) -> None:
        store = await self.open_store()
        directory = tempfile.mkdtemp(prefix="postcap-spool-")
        self.addCleanup(shutil.rmtree, directory, True)
        data = os.urandom(history._BLOB_PIECE * 2 + 12345)
        spool_path = os.path.join(directory, "body")
        with open(spool_path, "wb") as spool:
            spool.write(data)
        body = Body(size=len(data), captured=True, spool_path=spool_path)
        txn = make_transaction(session_id="s", response_body=body)
        await store.transactionCompleted(txn)
        stored = await self.scalar(
            store, "SELECT data FROM bodies WHERE transaction_id = ? AND part = 'response'", txn.id
        )
        self.assertEqual(stored, data)

    async def test_missing_spool_file_stores_the_transaction_without_that_body(self) -> None:
        store = await self.open_store()
        body = Body(size=10, captured=True, spool_path="/nonexistent/postcap-spool")
        txn = make_transaction(session_id="s", response_body=body)
        await store.transactionCompleted(txn)
        self.assertEqual(await self.scalar(store, "SELECT count(*) FROM bodies"), 0)
        self.assertEqual(await self.scalar(store, "SELECT count(*) FROM transactions"), 1)


class BatchingTests(StoreCase):
    async def test_many_transactions_few_interactions(self) -> None:
        store = await self.open_store(batch_delay=3600, batch_size=500)
        sizes = self.count_batches(store)
        waiters = [
            store.transactionCompleted(make_transaction(session_id="s")) for _ in range(1200)
        ]
        self.assertEqual(sizes, [500, 500])
        await store.flush()
        self.assertEqual(sizes, [500, 500, 200])
        self.assertTrue(all(self.successResultOf(w) is None for w in waiters))
        total, _ = await store.list_transactions("s", 1)
        self.assertEqual(total, 1200)
        self.assertEqual(sizes, [500, 500, 200])

    async def test_batch_written_once_its_bodies_reach_batch_bytes(self) -> None:
        store = await self.open_store(batch_delay=3600, batch_size=500)
        store.batch_bytes = 5000
        sizes = self.count_batches(store)
        for n in range(5):
            store.transactionCompleted(make_transaction(
                session_id="s", request_body=bytes([n]) * 1000, response_body=bytes([n]) * 1000))
        self.assertEqual(sizes, [3])
        await store.flush()
        self.assertEqual(sizes, [3, 2])

    async def test_batch_written_after_delay(self) -> None:
        clock = Clock()
        store = await self.open_store(batch_delay=0.5, clock=clock)
        sizes = self.count_batches(store)
        first = store.transactionCompleted(make_transaction(session_id="s"))
        second = store.transactionCompleted(make_transaction(session_id="s"))
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0.4)
        self.assertEqual(sizes, [])
        clock.advance(0.1)
        self.assertEqual(sizes, [2])
        self.assertIsNone(await first)
        self.assertIsNone(await second)
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_reads_see_pending_writes(self) -> None:
        store = await self.open_store(batch_delay=3600)
        txn = make_transaction(session_id="s")
        waiter = store.transactionCompleted(txn)
        self.assertNoResult(waiter)
        self.assertEqual(await store.get_transaction(txn.id), expected_detail(txn))
        self.assertIsNone(self.successResultOf(waiter))

    async def test_save_session_lands_after_pending_batch(self) -> None:
        store = await self.open_store(batch_delay=3600)
        record = make_session()
        await store.save_session(record)
        txns = [make_transaction(session_id=record.id) for _ in range(3)]
        for txn in txns:
            store.transactionCompleted(txn)
        size = sum(t.response_bytes for t in txns)
        final = replace(record, state="stopped", stopped_at=1.0, request_count=3, total_bytes=size)
        await store.save_session(final)
        self.assertEqual(await store.get_session(record.id), final)

    async def test_failed_batch_does_not_kill_the_store(self) -> None:
        store = await self.open_store(batch_delay=3600)
        session = make_session()
        await store.save_session(session)
        good = store.transactionCompleted(make_transaction(session_id=session.id))
        bad = store.transactionCompleted(
            make_transaction(session_id=session.id, response_body=ExplodingBody(3, True))
        )

        await self.assertFailure(store.flush(), RuntimeError)
        await self.assertFailure(good, RuntimeError)
        await self.assertFailure(bad, RuntimeError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

        # The whole batch was rolled back, counters included; the store goes on.
        self.assertEqual(await store.list_transactions(session.id), (0, []))
        self.assertEqual(await store.get_session(session.id), session)
        later = make_transaction(session_id=session.id)
        written = store.transactionCompleted(later)
        self.assertEqual(await store.list_transactions(session.id), (1, [later.summary()]))
        self.assertIsNone(self.successResultOf(written))


    async def test_duplicates_within_and_across_batches_keep_the_first(self) -> None:
        """A batch checks its ids against the file and against itself in one go."""
        store = await self.open_store(batch_delay=3600)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        session = make_session()
        await store.save_session(session)
        earlier = make_transaction(id="dup-a", session_id=session.id, url="http://a.test/1")
        store.transactionCompleted(earlier)
        await store.flush()
        batch = [
            make_transaction(id="dup-a", session_id=session.id, url="http://a.test/again"),
            first := make_transaction(id="dup-b", session_id=session.id, url="http://b.test/1"),
            make_transaction(id="dup-b", session_id=session.id, url="http://b.test/2"),
            fresh := make_transaction(id="dup-c", session_id=session.id, request_body=b"abc"),
            make_transaction(id="dup-a", session_id=session.id, url="http://a.test/third"),
        ]
        waiters = [store.transactionCompleted(txn) for txn in batch]
        await store.flush()
        self.assertTrue(all(self.successResultOf(w) is None for w in waiters))

        warned = [e["txn_id"] for e in events if "duplicate" in e.get("log_format", "")]
        self.assertEqual(warned, ["dup-a", "dup-b", "dup-a"])
        kept = [earlier, first, fresh]
        summaries = [t.summary() for t in kept]
        self.assertEqual(await store.list_transactions(session.id), (3, summaries))
        self.assertEqual(await store.get_transaction("dup-b"), expected_detail(first))
        record = await store.get_session(session.id)
        self.assertEqual(record.request_count, 3)
        self.assertEqual(record.total_bytes, sum(t.request_bytes + t.response_bytes for t in kept))
        self.assertEqual(await self.scalar(store, "SELECT COUNT(*) FROM bodies"), 4)


    async def test_row_refused_by_the_table_is_skipped_like_a_duplicate(self) -> None:
        """A NaN duration is stored as NULL, which the column refuses: the rest stays."""
        store = await self.open_store(batch_delay=3600)
        session = make_session()
        await store.save_session(session)
        refused = make_transaction(session_id=session.id, duration_ms=math.nan)
        good = make_transaction(session_id=session.id, request_body=b"abc")
        waiters = [store.transactionCompleted(txn) for txn in (refused, good)]
        await store.flush()
        self.assertTrue(all(self.successResultOf(w) is None for w in waiters))
        self.assertEqual(await store.list_transactions(session.id), (1, [good.summary()]))
        self.assertEqual((await store.get_session(session.id)).request_count, 1)
        self.assertEqual(await self.scalar(store, "SELECT COUNT(*) FROM bodies"), 2)

class StoredRowTests(SynchronousTestCase):
    """The row builder writes the detail JSON itself: the text ``json.dumps`` would give."""

    @staticmethod
    def dumped_detail(txn: Transaction) -> str:
        detail = txn.detail(b"", b"")
        for part in history.BODY_PARTS:
            if detail[part] is not None:
                body = detail[part]["body"]
                del body["text"], body["encoding"], body["content_encoding"]
        return json.dumps(detail, separators=(",", ":"))

    def test_detail_is_the_dumped_detail_without_body_texts(self) -> None:
        odd_timings = Timings(math.nan, math.inf, -math.inf, 1e-7, 123456789.123456789)
        transactions = [
            make_transaction(),
            make_transaction(url="https://secure.test/x?q=1", request_body=b"\xff\x00"),
            make_transaction(error="refused", session_id=None),
            make_transaction(error="cut \u20ac", with_response=True, kind="tunnel",
                             response_body=Body(size=10, captured=False, truncated=True)),
            make_transaction(
                url='http://x.test/a?b="c\\d', status=599, reason="W\u00ebird", duration_ms=5,
                request_headers=((b"X-\xff", b'\x00\\u0000"\n'), (b"Content-Type", b"text/x")),
                response_headers=(), timings=odd_timings, request_body=b"hi",
                tls=TLSInfo(None, "TLSv1.3", None),
            ),
            replace(make_transaction(), url="http://x.test/\udcff", error="\ud800"),
        ]
        for txn in transactions:
            row = dict(zip(history._TRANSACTION_COLUMNS, history._transaction_row(txn)))
            self.assertEqual(row["detail"], self.dumped_detail(txn))
            self.assertEqual(row["data_mode"], txn.data_mode)
        self.assertEqual((row["url"], row["error"]), ("http://x.test/?", "?"))

    def test_iso8601_rounds_like_datetime(self) -> None:
        def by_datetime(ts: float) -> str:
            moment = datetime.fromtimestamp(ts, tz=timezone.utc)
            return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

        edges = [0.0, -0.0, 1e-20, -1e-20, 1.9999995, 1.0000005, -0.0000005, -1.5, 5,
                 1_700_000_000.0, 1_780_000_000.9999996, 1_780_000_000.0005, -62135596800.0]
        rng = random.Random(8601)
        stamps = edges + [rng.uniform(-1e10, 1e11) for _ in range(2000)] + [
            rng.randrange(-10**6, 10**10) + rng.choice([0.9999995, 5e-7, 0.0005, 0.9995])
            for _ in range(2000)
        ]
        for ts in stamps:
            self.assertEqual(iso8601(ts), by_datetime(ts), ts)


class LifecycleTests(StoreCase):
    async def test_persists_across_reopen(self) -> None:
        path = self.new_path()
        store = await self.open_store(path, batch_delay=3600)
        record = make_session()
        await store.save_session(record)
        txn = make_transaction(session_id=record.id, response_body=b"\x00binary")
        store.transactionCompleted(txn)  # still pending: close must write it
        await store.close()

        reopened = await self.open_store(path)
        expected_record = replace(
            record,
            request_count=1,
            total_bytes=txn.response_bytes,
            last_activity=txn.started_at + txn.duration_ms / 1000.0,
        )
        self.assertEqual(await reopened.get_session(record.id), expected_record)
        self.assertEqual(await reopened.list_transactions(record.id), (1, [txn.summary()]))
        self.assertEqual(await reopened.get_transaction(txn.id), expected_detail(txn))

    async def test_pragmas(self) -> None:
        store = await self.open_store()
        self.assertEqual(await self.scalar(store, "PRAGMA journal_mode"), "wal")
        self.assertEqual(await self.scalar(store, "PRAGMA foreign_keys"), 1)
        self.assertGreater(await self.scalar(store, "PRAGMA busy_timeout"), 0)


class MigrationTests(StoreCase):
    async def test_user_version_is_set(self) -> None:
        store = await self.open_store()
        version = await self.scalar(store, "PRAGMA user_version")
        self.assertEqual(version, len(history.MIGRATIONS))

    async def make_current(self) -> tuple[str, Transaction]:
        """A closed database at the current schema version holding one transaction."""
        path = self.new_path()
        store = await self.open_store(path)
        txn = make_transaction()
        await store.transactionCompleted(txn)
        await store.close()
        return path, txn

    async def test_reopen_at_current_version_is_a_no_op(self) -> None:
        path, txn = await self.make_current()
        calls: list[str] = []
        self.patch(history, "MIGRATIONS",
                   [lambda cursor: calls.append("ran")] * len(history.MIGRATIONS))
        store = await self.open_store(path)
        self.assertEqual(calls, [])
        self.assertEqual(await store.get_transaction(txn.id), expected_detail(txn))

    async def test_only_new_migrations_run(self) -> None:
        path, txn = await self.make_current()
        calls: list[str] = []
        current = list(history.MIGRATIONS)

        def add_column(cursor: Any) -> None:
            calls.append("next")
            cursor.execute("ALTER TABLE sessions ADD COLUMN note TEXT")

        self.patch(history, "MIGRATIONS", [*current, add_column])
        store = await self.open_store(path)
        self.assertEqual(calls, ["next"])
        self.assertEqual(await self.scalar(store, "PRAGMA user_version"), len(current) + 1)
        self.assertEqual(await store.get_transaction(txn.id), expected_detail(txn))
        await store.close()
        await self.open_store(path)
        self.assertEqual(calls, ["next"])

    async def test_failed_migration_rolls_back(self) -> None:
        path, txn = await self.make_current()
        current = list(history.MIGRATIONS)

        def broken(cursor: Any) -> None:
            cursor.execute("CREATE TABLE half_done (x)")
            raise RuntimeError("migration bug")

        self.patch(history, "MIGRATIONS", [*current, broken])
        store = SQLiteHistoryStore(path)
        self.addCleanup(store.close)
        await self.assertFailure(store.open(), RuntimeError)
        self.assertEqual(await self.scalar(store, "PRAGMA user_version"), len(current))
        tables = await store._pool.runQuery("SELECT name FROM sqlite_master WHERE type='table'")
        self.assertNotIn(("half_done",), tables)

    async def test_version_1_file_gains_data_modes_and_gives_space_back(self) -> None:
        """A file written by schema 1 (no auto_vacuum, no data_mode) is migrated in place."""
        path = self.new_path()
        with sqlite3.connect(path) as connection:
            history._migration_1(connection.cursor())
            connection.execute("PRAGMA user_version = 1")
            json_post = make_transaction(
                method="POST", url="http://example.test/api", request_body=b'{"a": 1}',
                request_headers=((b"Content-Type", b"application/json"),),
            )
            for txn in (json_post, make_transaction()):
                row = history._transaction_row(txn)[:-1]  # version 1 had no data_mode
                columns = ", ".join(history._TRANSACTION_COLUMNS[:-1])
                connection.execute(
                    f"INSERT INTO transactions ({columns}) VALUES ({history._marks(len(row))})",
                    row,
                )
        connection.close()
        store = await self.open_store(path)
        modes = await store._pool.runQuery("SELECT data_mode FROM transactions ORDER BY seq")
        self.assertEqual([mode for (mode,) in modes], ["raw-json", "none"])
        self.assertEqual(await self.scalar(store, "PRAGMA auto_vacuum"), 2)


    async def test_newer_schema_is_refused_and_left_alone(self) -> None:
        path, txn = await self.make_current()
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA user_version = 99")
        connection.close()
        store = SQLiteHistoryStore(path)
        self.addCleanup(store.close)
        await self.assertFailure(store.open(), SchemaTooNew)
        self.assertEqual(await self.scalar(store, "PRAGMA user_version"), 99)
