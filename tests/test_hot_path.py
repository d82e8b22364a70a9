"""The per-request capture path made lean for speed (issue 8): each shortcut gives
exactly what the general path gave before."""

from __future__ import annotations

import gc
import os
import random
import shutil
import tempfile
from datetime import datetime, timezone

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from postcap.capture import BodyCapture, Spooler
from postcap.interfaces import ICaptureSink
from postcap.model import Transaction, iso8601, new_id
from postcap.session import SessionManager
from postcap.tap import GC_YOUNG_THRESHOLD, tune_garbage_collector
from postcap.testing import MemoryHistoryStore, make_transaction, spooled_body


def _iso8601_by_datetime(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class TimestampTests(SynchronousTestCase):
    def test_iso8601_matches_datetime(self) -> None:
        chosen = random.Random(8)
        edges = [0.0, 0.0004999, 0.9994999, 0.9995, 0.9999994, 0.9999995, 0.9999996]
        stamps = [-1.5, 0.0, 1_700_000_000.0, 1_700_000_000.9999996]
        stamps += [chosen.randint(0, 2**32) + chosen.choice(edges) for _ in range(5000)]
        stamps += [chosen.uniform(0, 4e9) for _ in range(5000)]
        stamps += [1_764_690_000 + n / 1000 for n in range(3000)]  # many within one second
        for ts in stamps:
            self.assertEqual(iso8601(ts), _iso8601_by_datetime(ts), ts)
        self.assertIsNone(iso8601(None))

    def test_ids_are_distinct_hex_and_time_ordered(self) -> None:
        ids = [new_id() for _ in range(10_000)]
        self.assertEqual(len(set(ids)), len(ids))
        for value in ids:
            self.assertEqual(len(value), 20)
            int(value, 16)
        prefixes = [value[:12] for value in ids]
        self.assertEqual(prefixes, sorted(prefixes))


class BodyNowTests(SynchronousTestCase):
    def test_in_memory_copy(self) -> None:
        capture = BodyCapture(limit=4, spooler=None)
        capture.feed(b"abc")
        capture.feed(b"def")
        body = capture.body_now()
        assert body is not None
        self.assertEqual((body.size, body.captured, body.truncated, body.content),
                         (6, True, True, b"abcd"))
        self.assertEqual(self.successResultOf(capture.finish()), body)

    def test_not_capturing(self) -> None:
        capture = BodyCapture(limit=4, spooler=None, enabled=False)
        capture.feed(b"abcdef")
        self.assertEqual(capture.body_now().size, 6)  # type: ignore[union-attr]
        self.assertFalse(capture.body_now().captured)  # type: ignore[union-attr]

    def test_spooled_copy_is_not_ready_at_once(self) -> None:
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        spooler = Spooler(Clock(), directory)  # never started: writes queue, nothing runs
        capture = BodyCapture(limit=10 * 1024 * 1024, spooler=spooler)
        capture.feed(b"x" * (BodyCapture.spill_threshold + 1))
        self.assertIsNone(capture.body_now())
        capture.drop()


@implementer(ICaptureSink)
class DoneSink:
    """Finishes every transaction at once, with an already-fired Deferred."""

    name = "done"

    def __init__(self) -> None:
        self.seen: list[Transaction] = []

    def transactionCompleted(self, transaction: Transaction) -> Deferred[None]:
        self.seen.append(transaction)
        return succeed(None)

    def flush(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)


class FanOutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.manager = SessionManager(Clock(), MemoryHistoryStore())
        self.session = self.successResultOf(Deferred.fromCoroutine(self.manager.start({})))

    def test_one_ticket_per_session_state(self) -> None:
        first = self.manager.begin("GET", "http://example.test/")
        self.assertIs(self.manager.begin("POST", "http://example.test/x"), first)
        self.successResultOf(Deferred.fromCoroutine(self.manager.pause()))
        self.assertIsNone(self.manager.begin("GET", "http://example.test/"))
        self.successResultOf(Deferred.fromCoroutine(self.manager.resume()))
        again = self.manager.begin("GET", "http://example.test/")
        assert again is not None and first is not None
        self.assertEqual(again.session_id, first.session_id)

    def test_sinks_done_at_once_leave_nothing_in_flight(self) -> None:
        sink = DoneSink()
        self.manager.sinks = [sink]
        directory = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, directory)
        txn = make_transaction(session_id=self.session.id,
                               response_body=spooled_body(b"kept", directory))
        self.manager.complete(self.manager.begin("GET", txn.url), txn)
        self.assertEqual(sink.seen, [txn])
        self.assertEqual(self.manager.in_flight, 0)
        assert txn.response is not None and txn.response.body.spool_path is not None
        self.assertFalse(os.path.exists(txn.response.body.spool_path))

    def test_counters_fold_into_the_record_when_read(self) -> None:
        self.manager.sinks = [DoneSink()]
        ticket = self.manager.begin("GET", "http://example.test/")
        for started in (10.0, 30.0, 20.0):
            self.manager.complete(ticket, make_transaction(
                session_id=self.session.id, started_at=started, duration_ms=500.0,
                response_body=b"12345"))
        self.assertEqual(self.manager.active_options(self.session.id), self.session.options)
        self.assertIsNone(self.manager.active_options("another"))
        active = self.manager.active
        assert active is not None
        self.assertEqual((active.request_count, active.total_bytes, active.last_activity),
                         (3, 15, 30.5))
        self.assertIs(self.manager.active, active)  # nothing new to fold


class GarbageCollectorTests(SynchronousTestCase):
    def test_tuning_freezes_the_start_up_heap(self) -> None:
        before = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *before)
        self.addCleanup(gc.unfreeze)
        tune_garbage_collector()
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertEqual(gc.get_threshold(), (GC_YOUNG_THRESHOLD, *before[1:]))
