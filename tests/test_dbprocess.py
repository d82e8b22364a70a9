"""The history's SQLite connection in a child process (postcap.sinks.dbprocess)."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import signal
import sqlite3
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from postcap.sinks.dbprocess import (
    DatabaseProcessGone,
    ProcessConnectionPool,
    RemoteError,
    _frame,
    _HEADER,
    serve,
)
from postcap.sinks.history import _configure_connection
from tests.dbprocess_calls import (
    create_table,
    insert,
    insert_then_fail,
    journal_mode,
    slow,
    unpicklable_result,
    values,
)


def _read_answers(data: bytes) -> list[tuple[bool, Any]]:
    answers, offset = [], 0
    while offset < len(data):
        (size,) = _HEADER.unpack_from(data, offset)
        answers.append(pickle.loads(data[offset + _HEADER.size:offset + _HEADER.size + size]))
        offset += _HEADER.size + size
    return answers


class ServeTests(SynchronousTestCase):
    """The child's loop, run in this process over byte streams."""

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="postcap-dbprocess-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "db.sqlite3")

    def serve(self, *calls: tuple[str, Any, tuple[Any, ...]], tail: bytes = b"") -> list[Any]:
        requests = io.BytesIO(b"".join(_frame(call) for call in calls) + tail)
        answers = io.BytesIO()
        serve(self.path, _configure_connection, requests, answers)
        return _read_answers(answers.getvalue())

    def test_calls_are_answered_in_order_and_committed(self) -> None:
        answers = self.serve(
            ("interaction", create_table, ()),
            ("interaction", insert, (1,)),
            ("interaction", insert, (2,)),
            ("interaction", values, ()),
            ("connection", journal_mode, ()),
        )
        self.assertEqual(answers, [(True, None), (True, 1), (True, 2), (True, [1, 2]),
                                   (True, "wal")])
        with sqlite3.connect(self.path) as connection:
            self.assertEqual(connection.execute("SELECT COUNT(*) FROM t").fetchone()[0], 2)

    def test_an_error_comes_back_as_itself_and_rolls_back(self) -> None:
        answers = self.serve(
            ("interaction", create_table, ()),
            ("interaction", insert_then_fail, (7,)),
            ("interaction", values, ()),
        )
        ok, error = answers[1]
        self.assertFalse(ok)
        self.assertIsInstance(error, ValueError)
        self.assertEqual(str(error), "no 7")
        self.assertEqual(answers[2], (True, []))

    def test_an_unpicklable_result_becomes_a_remote_error(self) -> None:
        answers = self.serve(("interaction", unpicklable_result, ()))
        ok, error = answers[0]
        self.assertFalse(ok)
        self.assertIsInstance(error, RemoteError)

    def test_a_cut_frame_ends_the_loop(self) -> None:
        answers = self.serve(("interaction", create_table, ()), tail=_HEADER.pack(100) + b"abc")
        self.assertEqual(answers, [(True, None)])


class PoolTests(TestCase):
    """The parent side with a real child process."""

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="postcap-dbprocess-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.pool = ProcessConnectionPool(reactor, os.path.join(directory, "db.sqlite3"))
        self.addCleanup(self.pool.close)

    async def test_runs_calls_in_order(self) -> None:
        await self.pool.runInteraction(create_table)
        answers = [self.pool.runInteraction(insert, n) for n in range(50)]
        self.assertEqual([await answer for answer in answers], list(range(50)))
        self.assertEqual(await self.pool.runInteraction(values), list(range(50)))
        self.assertEqual(await self.pool.runWithConnection(journal_mode), "wal")

    async def test_errors_fail_the_call_only(self) -> None:
        await self.pool.runInteraction(create_table)
        with self.assertRaises(ValueError):
            await self.pool.runInteraction(insert_then_fail, 3)
        self.assertEqual(await self.pool.runInteraction(values), [])

    async def test_an_unpicklable_call_fails_at_once(self) -> None:
        with self.assertRaises(Exception):
            await self.pool.runInteraction(lambda cursor: None)
        self.assertIsNone(self.pool.pid)  # nothing was sent: no child yet

    async def test_a_killed_child_fails_its_calls_and_the_next_call_starts_another(self) -> None:
        await self.pool.runInteraction(create_table)
        first = self.pool.pid
        assert first is not None
        waiting = self.pool.runInteraction(slow, 30.0)
        os.kill(first, signal.SIGKILL)
        with self.assertRaises(DatabaseProcessGone):
            await waiting
        self.assertEqual(await self.pool.runInteraction(insert, 5), 5)
        self.assertNotEqual(self.pool.pid, first)
        self.assertEqual(await self.pool.runInteraction(values), [5])

    async def test_close_answers_what_was_sent_then_the_child_exits(self) -> None:
        await self.pool.runInteraction(create_table)
        pid = self.pool.pid
        answers = [self.pool.runInteraction(insert, n) for n in range(20)]
        await self.pool.close()
        self.assertEqual([await answer for answer in answers], list(range(20)))
        self.assertIsNone(self.pool.pid)
        assert pid is not None
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)
        with self.assertRaises(DatabaseProcessGone):
            await self.pool.runInteraction(values)

    async def test_the_child_ignores_sigterm_until_its_input_ends(self) -> None:
        await self.pool.runInteraction(create_table)
        pid = self.pool.pid
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        self.assertEqual(await self.pool.runInteraction(insert, 9), 9)
        closed: Deferred[None] = self.pool.close()
        await closed
        self.assertIsNone(self.pool.pid)

    async def test_backlog_counts_what_waits_for_an_answer(self) -> None:
        await self.pool.runInteraction(create_table)
        self.assertEqual(self.pool.backlog, 0)
        self.assertTrue(self.pool.when_backlog_below(0).called)
        held = self.pool.runInteraction(slow, 0.3)
        inserts = [self.pool.runInteraction(insert, n) for n in range(10)]
        waiting = self.pool.backlog
        self.assertGreater(waiting, 0)
        below = self.pool.when_backlog_below(waiting - 1)
        empty = self.pool.when_backlog_below(0)
        self.assertFalse(below.called or empty.called)
        await held
        await below
        for insert_done in inserts:
            await insert_done
        await empty
        self.assertEqual(self.pool.backlog, 0)

