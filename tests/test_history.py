"""Tests for the SQLite history store and the in-memory reference sink."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from dataclasses import replace
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from postcap.model import Body, Transaction
from postcap.sinks import history
from postcap.sinks.history import HistoryStoreClosed, SchemaTooNew, SQLiteHistoryStore
from postcap.testing import MemorySink, make_session, make_transaction, spooled_body
from tests.sink_conformance import CaptureSinkConformance


class ExplodingBody(Body):
    """A captured body whose stored copy cannot be read: its batch fails."""

    __slots__ = ()

    def read(self) -> bytes:
        raise RuntimeError("disk on fire")


def expected_detail(txn: Transaction) -> dict[str, Any]:
    response_body = b"" if txn.response is None else txn.response.body.read()
    return txn.detail(txn.request.body.read(), response_body)


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
            if interaction is history._insert_batch:
                sizes.append(len(args[0]))
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


class HistoryStoreConformanceTests(CaptureSinkConformance, StoreCase):
    def make_sink(self) -> Any:
        return self.open_store()


class SessionTests(StoreCase):
    async def test_round_trip(self) -> None:
        store = await self.open_store()
        record = make_session(state="stopped", stopped_at=1_700_000_100.5, last_activity=None)
        await store.save_session(record)
        self.assertEqual(await store.get_session(record.id), record)

    async def test_missing_session(self) -> None:
        store = await self.open_store()
        self.assertIsNone(await store.get_session("nope"))

    async def test_save_replaces_every_field(self) -> None:
        store = await self.open_store()
        record = make_session()
        await store.save_session(record)
        changed = replace(
            record,
            name="renamed",
            state="paused",
            options={**record.options, "save_responses": False},
            request_count=7,
            total_bytes=700,
            last_activity=1_700_000_009.0,
        )
        await store.save_session(changed)
        self.assertEqual(await store.get_session(record.id), changed)

    async def test_update_session_changes_only_given_fields(self) -> None:
        store = await self.open_store()
        record = make_session(request_count=3, total_bytes=30)
        await store.save_session(record)
        updated = await store.update_session(record.id, state="stopped", stopped_at=5.0)
        self.assertEqual(updated, replace(record, state="stopped", stopped_at=5.0))
        self.assertIsNone(await store.update_session("nope", state="stopped"))

    async def test_list_newest_first_with_paging(self) -> None:
        store = await self.open_store()
        records = [make_session(started_at=1_700_000_000.0 + n) for n in (3, 1, 4, 0, 2)]
        for record in records:
            await store.save_session(record)
        newest_first = sorted(records, key=lambda r: r.started_at, reverse=True)
        self.assertEqual(await store.list_sessions(10, 0), (5, newest_first))
        self.assertEqual(await store.list_sessions(2, 1), (5, newest_first[1:3]))
        self.assertEqual(await store.list_sessions(2, 10), (5, []))

    async def test_delete_session_removes_its_transactions(self) -> None:
        store = await self.open_store()
        doomed, kept = make_session(), make_session()
        await store.save_session(doomed)
        await store.save_session(kept)
        gone = make_transaction(session_id=doomed.id, request_body=b"payload")
        stays = make_transaction(session_id=kept.id)
        store.transactionCompleted(gone)
        store.transactionCompleted(stays)

        self.assertIs(await store.delete_session(doomed.id), True)

        self.assertIsNone(await store.get_session(doomed.id))
        self.assertIsNone(await store.get_transaction(gone.id))
        self.assertEqual(await store.list_transactions(doomed.id), (0, []))
        self.assertEqual(await store.get_transaction(stays.id), expected_detail(stays))
        self.assertEqual(await self.scalar(store, "SELECT COUNT(*) FROM bodies"), 1)
        self.assertIs(await store.delete_session(doomed.id), False)

    async def test_clear_session(self) -> None:
        store = await self.open_store()
        cleared, other = make_session(), make_session()
        await store.save_session(cleared)
        await store.save_session(other)
        for session in (cleared, other, cleared):
            store.transactionCompleted(make_transaction(session_id=session.id))

        record = await store.clear_session(cleared.id)

        self.assertEqual(record, replace(cleared, request_count=0, total_bytes=0))
        self.assertEqual(await store.get_session(cleared.id), record)
        self.assertEqual(await store.list_transactions(cleared.id), (0, []))
        total, _ = await store.list_transactions(other.id)
        self.assertEqual(total, 1)
        self.assertEqual((await store.get_session(other.id)).request_count, 1)
        self.assertEqual(await self.scalar(store, "SELECT COUNT(*) FROM bodies"), 1)


class RecoveryTests(StoreCase):
    async def test_live_sessions_come_back_stopped(self) -> None:
        store = await self.open_store()
        running = make_session(state="running", started_at=100.0)
        paused = make_session(state="paused", started_at=200.0)
        stopped = make_session(state="stopped", started_at=50.0, stopped_at=60.0)
        for record in (running, paused, stopped):
            await store.save_session(record)
        store.transactionCompleted(
            make_transaction(session_id=running.id, started_at=110.0, duration_ms=500.0)
        )
        store.transactionCompleted(
            make_transaction(session_id=running.id, started_at=105.0, duration_ms=250.0)
        )

        recovered = await store.recover_interrupted()

        self.assertEqual(sorted(recovered), sorted([running.id, paused.id]))
        after_running = await store.get_session(running.id)
        self.assertEqual((after_running.state, after_running.stopped_at), ("stopped", 110.5))
        after_paused = await store.get_session(paused.id)
        self.assertEqual((after_paused.state, after_paused.stopped_at), ("stopped", 200.0))
        self.assertEqual(await store.get_session(stopped.id), stopped)
        self.assertEqual(await store.recover_interrupted(), [])

    async def test_falls_back_to_last_transaction(self) -> None:
        store = await self.open_store()
        record = make_session(started_at=100.0)
        await store.save_session(record)
        store.transactionCompleted(
            make_transaction(session_id=record.id, started_at=120.0, duration_ms=2000.0)
        )
        # A later save from a record that never saw the activity time.
        await store.save_session(replace(record, request_count=1, last_activity=None))
        await store.recover_interrupted()
        self.assertEqual((await store.get_session(record.id)).stopped_at, 122.0)


class TransactionTests(StoreCase):
    async def stored(self, store: SQLiteHistoryStore, txn: Transaction) -> None:
        """``txn`` reads back as its own summary and detail."""
        await store.transactionCompleted(txn)
        total, items = await store.list_transactions(txn.session_id)
        self.assertEqual(items[-1], txn.summary())
        self.assertEqual(await store.get_transaction(txn.id), expected_detail(txn))

    async def test_round_trip(self) -> None:
        store = await self.open_store()
        await self.stored(store, make_transaction(method="POST", request_body=b'{"a": 1}'))

    async def test_https_round_trip(self) -> None:
        store = await self.open_store()
        await self.stored(store, make_transaction(url="https://api.example.test:8443/v1?q=é"))

    async def test_binary_bodies(self) -> None:
        store = await self.open_store()
        txn = make_transaction(request_body=b"\xff\x00\xfe", response_body=bytes(range(256)))
        await self.stored(store, txn)
        detail = await store.get_transaction(txn.id)
        self.assertEqual(detail["response"]["body"]["encoding"], "base64")

    async def test_spooled_bodies(self) -> None:
        store = await self.open_store()
        spool_dir = tempfile.mkdtemp(prefix="postcap-spool-")
        self.addCleanup(shutil.rmtree, spool_dir, True)
        data = b"spooled \xe2\x9c\x93 " * 5000
        txn = make_transaction(
            request_body=spooled_body(b"req" * 10, spool_dir),
            response_body=spooled_body(data, spool_dir),
        )
        expected = expected_detail(txn)
        await store.transactionCompleted(txn)
        txn.discard_spools()
        self.assertEqual(os.listdir(spool_dir), [])
        detail = await store.get_transaction(txn.id)
        self.assertEqual(detail, expected)
        self.assertEqual(detail["response"]["body"]["text"], data.decode("utf-8"))

    async def test_bodies_not_captured_are_not_stored(self) -> None:
        store = await self.open_store()
        txn = make_transaction(
            response_body=Body(size=1234, captured=False),
            content_type="image/png",
        )
        await self.stored(store, txn)
        self.assertEqual(await self.scalar(store, "SELECT COUNT(*) FROM bodies"), 0)

    async def test_truncated_body(self) -> None:
        store = await self.open_store()
        cut = Body(size=10_000, captured=True, truncated=True, content=b"x" * 100)
        await self.stored(store, make_transaction(response_body=cut))

    async def test_error_transaction(self) -> None:
        store = await self.open_store()
        await self.stored(store, make_transaction(error="upstream timed out", status=504))

    async def test_missing_spool_keeps_the_transaction(self) -> None:
        store = await self.open_store()
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        lost = Body(size=5, captured=True, spool_path=os.path.join(self.new_path(), "gone"))
        txn = make_transaction(response_body=lost)
        await store.transactionCompleted(txn)
        detail = await store.get_transaction(txn.id)
        self.assertEqual(detail, txn.detail(b"", b""))
        logged = [e for e in events if e.get("txn_id") == txn.id]
        self.assertEqual([e["part"] for e in logged], ["response"])

    async def test_list_in_capture_order_with_paging(self) -> None:
        store = await self.open_store()
        session = make_session()
        # Later captures may have started earlier: capture order wins.
        txns = [
            make_transaction(session_id=session.id, started_at=1000.0 - n, url=f"http://a.test/{n}")
            for n in range(7)
        ]
        for txn in txns:
            store.transactionCompleted(txn)
        store.transactionCompleted(make_transaction(session_id="another"))
        total, items = await store.list_transactions(session.id, 3, 3)
        self.assertEqual(total, 7)
        self.assertEqual(items, [txn.summary() for txn in txns[3:6]])
        self.assertEqual(
            await store.list_transactions(session.id), (7, [t.summary() for t in txns])
        )
        total, _ = await store.list_transactions(None)
        self.assertEqual(total, 8)

    async def test_list_filters(self) -> None:
        store = await self.open_store()
        sid = "s"
        txns = {
            "get": make_transaction(session_id=sid, url="http://api.example.test/users?q=100%"),
            "post": make_transaction(session_id=sid, method="POST", url="http://example.test/x"),
            "missing": make_transaction(session_id=sid, status=404, url="http://other.test/y"),
            "broken": make_transaction(session_id=sid, status=503, url="http://badexample.test/"),
        }
        for txn in txns.values():
            store.transactionCompleted(txn)

        async def ids(**filters: Any) -> list[str]:
            _, items = await store.list_transactions(sid, **filters)
            return [item["id"] for item in items]

        self.assertEqual(await ids(query="USERS"), [txns["get"].id])
        self.assertEqual(await ids(query="100%"), [txns["get"].id])
        self.assertEqual(await ids(query="_"), [])
        self.assertEqual(await ids(method="post"), [txns["post"].id])
        self.assertEqual(await ids(status=404), [txns["missing"].id])
        self.assertEqual(await ids(status="5xx"), [txns["broken"].id])
        self.assertEqual(await ids(domain="example.test"), [txns["get"].id, txns["post"].id])
        both = await ids(status="2xx", domain="example.test", method="GET")
        self.assertEqual(both, [txns["get"].id])
        await self.assertFailure(store.list_transactions(sid, status="teapot"), ValueError)

    async def test_missing_transaction(self) -> None:
        store = await self.open_store()
        self.assertIsNone(await store.get_transaction("nope"))

    async def test_list_details_for_exports(self) -> None:
        store = await self.open_store()
        txns = [make_transaction(session_id="s", response_body=bytes([n]) * 3) for n in range(4)]
        for txn in txns:
            store.transactionCompleted(txn)
        details = await store.list_details("s", 2, 1)
        self.assertEqual(details, [expected_detail(txn) for txn in txns[1:3]])

    async def test_delete_transactions_updates_counters(self) -> None:
        store = await self.open_store()
        session = make_session()
        await store.save_session(session)
        txns = [make_transaction(session_id=session.id) for _ in range(3)]
        for txn in txns:
            store.transactionCompleted(txn)
        deleted = await store.delete_transactions([txns[0].id, txns[2].id, txns[0].id, "nope"])
        self.assertEqual(deleted, 2)
        self.assertEqual(await store.list_transactions(session.id), (1, [txns[1].summary()]))
        record = await store.get_session(session.id)
        self.assertEqual((record.request_count, record.total_bytes), (1, txns[1].response_bytes))

    async def test_session_less_transactions_are_not_stored(self) -> None:
        store = await self.open_store()
        sizes = self.count_batches(store)
        done = store.transactionCompleted(make_transaction(session_id=None))
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(await store.list_transactions(None), (0, []))
        self.assertEqual(sizes, [])

    async def test_duplicate_ids_are_stored_once(self) -> None:
        store = await self.open_store()
        session = make_session()
        await store.save_session(session)
        txn = make_transaction(session_id=session.id)
        store.transactionCompleted(txn)
        await store.transactionCompleted(txn)
        self.assertEqual(await store.list_transactions(session.id), (1, [txn.summary()]))
        self.assertEqual((await store.get_session(session.id)).request_count, 1)


class BatchingTests(StoreCase):
    async def test_counters_follow_batches(self) -> None:
        store = await self.open_store()
        one, two = make_session(), make_session()
        await store.save_session(one)
        await store.save_session(two)
        txns = [
            make_transaction(session_id=one.id, request_body=b"abc", started_at=10.0),
            make_transaction(session_id=one.id, started_at=20.0, duration_ms=1500.0),
            make_transaction(session_id=one.id, started_at=21.0, duration_ms=100.0),
            make_transaction(session_id=two.id, error="refused", started_at=5.0),
        ]
        for txn in txns:
            store.transactionCompleted(txn)
        await store.flush()

        first = await store.get_session(one.id)
        self.assertEqual(first.request_count, 3)
        self.assertEqual(
            first.total_bytes, sum(t.request_bytes + t.response_bytes for t in txns[:3])
        )
        self.assertEqual(first.last_activity, 21.5)
        second = await store.get_session(two.id)
        self.assertEqual((second.request_count, second.total_bytes), (1, 0))
        self.assertEqual(second.last_activity, 5.0425)

        store.transactionCompleted(make_transaction(session_id=one.id, started_at=1.0))
        later = await store.get_session(one.id)
        self.assertEqual((later.request_count, later.last_activity), (4, 21.5))

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

    async def test_closed_store_refuses_work(self) -> None:
        store = await self.open_store()
        await store.close()
        await self.assertFailure(
            store.transactionCompleted(make_transaction()), HistoryStoreClosed
        )
        await self.assertFailure(store.get_session("x"), HistoryStoreClosed)
        await store.flush()

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

    async def make_v1(self) -> tuple[str, Transaction]:
        """A closed database at schema version 1 holding one transaction."""
        path = self.new_path()
        store = await self.open_store(path)
        txn = make_transaction()
        await store.transactionCompleted(txn)
        await store.close()
        return path, txn

    async def test_reopen_at_current_version_is_a_no_op(self) -> None:
        path, txn = await self.make_v1()
        calls: list[str] = []
        self.patch(history, "MIGRATIONS", [lambda cursor: calls.append("v1")])
        store = await self.open_store(path)
        self.assertEqual(calls, [])
        self.assertEqual(await store.get_transaction(txn.id), expected_detail(txn))

    async def test_only_new_migrations_run(self) -> None:
        path, txn = await self.make_v1()
        calls: list[str] = []

        def add_column(cursor: Any) -> None:
            calls.append("v2")
            cursor.execute("ALTER TABLE sessions ADD COLUMN note TEXT")

        self.patch(history, "MIGRATIONS", [history._migration_1, add_column])
        store = await self.open_store(path)
        self.assertEqual(calls, ["v2"])
        self.assertEqual(await self.scalar(store, "PRAGMA user_version"), 2)
        self.assertEqual(await store.get_transaction(txn.id), expected_detail(txn))
        await store.close()
        await self.open_store(path)
        self.assertEqual(calls, ["v2"])

    async def test_failed_migration_rolls_back(self) -> None:
        path, txn = await self.make_v1()

        def broken(cursor: Any) -> None:
            cursor.execute("CREATE TABLE half_done (x)")
            raise RuntimeError("migration bug")

        self.patch(history, "MIGRATIONS", [history._migration_1, broken])
        store = SQLiteHistoryStore(path)
        self.addCleanup(store.close)
        await self.assertFailure(store.open(), RuntimeError)
        self.assertEqual(await self.scalar(store, "PRAGMA user_version"), 1)
        tables = await store._pool.runQuery("SELECT name FROM sqlite_master WHERE type='table'")
        self.assertNotIn(("half_done",), tables)

    async def test_newer_schema_is_refused_and_left_alone(self) -> None:
        path, txn = await self.make_v1()
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA user_version = 99")
        connection.close()
        store = SQLiteHistoryStore(path)
        self.addCleanup(store.close)
        await self.assertFailure(store.open(), SchemaTooNew)
        self.assertEqual(await self.scalar(store, "PRAGMA user_version"), 99)
