"""Unit tests of SessionManager over the in-memory history store and a Clock.

No reactor runs: the store's Deferreds are already fired, so every coroutine
finishes before ``successResultOf`` looks at it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Coroutine

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.exceptions import Invalid

from postcap.capture import CaptureTicket
from postcap.filters import INVALID_OPTION, INVALID_PARAMS, OptionError
from postcap.interfaces import ICaptureSink
from postcap.model import SessionRecord, Transaction
from postcap.session import (
    InvalidSessionState,
    SessionAlreadyActive,
    SessionManager,
    SessionNotFound,
)
from postcap.testing import (
    MemoryHistoryStore,
    MemorySink,
    default_session_options,
    make_session,
    make_transaction,
    spooled_body,
)

T0 = 1_700_000_000.0


class SinkBug(Exception):
    """What the broken sinks below fail with."""


@implementer(ICaptureSink)
class RaisingSink:
    """Raises from transactionCompleted."""

    name = "raising"

    def transactionCompleted(self, transaction: Transaction) -> None:
        raise SinkBug("raised")

    def flush(self) -> Deferred[None]:
        return fail(SinkBug("flush"))

    def close(self) -> Deferred[None]:
        return succeed(None)


@implementer(ICaptureSink)
class FailingSink:
    """Returns a failed Deferred from transactionCompleted."""

    name = "failing"

    def transactionCompleted(self, transaction: Transaction) -> Deferred[None]:
        return fail(SinkBug("failed"))

    def flush(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)


@implementer(ICaptureSink)
class SlowSink:
    """Finishes each transaction only when the test fires its Deferred."""

    name = "slow"

    def __init__(self) -> None:
        self.waiting: list[Deferred[None]] = []

    def transactionCompleted(self, transaction: Transaction) -> Deferred[None]:
        self.waiting.append(Deferred())
        return self.waiting[-1]

    def flush(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)


class ManagerCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = MemoryHistoryStore()
        self.manager = SessionManager(self.clock, self.store)
        self.events: list[tuple[str, SessionRecord]] = []
        self.manager.add_listener(lambda event, record: self.events.append((event, record)))

    # -- driving coroutines synchronously ----------------------------------------------

    def done(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def fails(self, coroutine: Coroutine[Any, Any, Any], *types: type[BaseException]) -> Any:
        failure: Failure = self.failureResultOf(Deferred.fromCoroutine(coroutine), *types)
        return failure.value

    def start(self, **options: Any) -> SessionRecord:
        return self.done(self.manager.start(options))

    def stored(self, session_id: str) -> SessionRecord | None:
        return self.successResultOf(self.store.get_session(session_id))

    def capture(
        self, method: str = "GET", url: str = "http://example.test/path", **kwargs: Any
    ) -> Transaction | None:
        """One exchange through begin()/complete(); the transaction, or None if not captured."""
        ticket = self.manager.begin(method, url)
        if ticket is None:
            return None
        kwargs.setdefault("started_at", self.clock.seconds())
        txn = make_transaction(session_id=ticket.session_id, method=method, url=url, **kwargs)
        self.manager.complete(ticket, txn)
        return txn

    def event_names(self) -> list[str]:
        return [event for event, _ in self.events]


class StartTests(ManagerCase):
    def test_start_with_defaults(self) -> None:
        record = self.start()
        self.assertEqual(record.state, "running")
        self.assertEqual(record.name, "Proxy debug session")
        self.assertEqual(record.source, "proxy")
        self.assertEqual(record.options, default_session_options())
        self.assertEqual((record.started_at, record.stopped_at), (T0, None))
        self.assertEqual((record.request_count, record.total_bytes), (0, 0))
        self.assertIs(self.manager.active, record)
        self.assertEqual(self.stored(record.id), record)
        self.assertEqual(self.events, [("started", record)])

    def test_start_validates_and_normalizes_options(self) -> None:
        record = self.start(
            name="  Checkout flow ",
            source="interceptor",
            save_responses=False,
            organize_by=["domain"],
            filters={"methods": ["get", "post"], "status_codes": ["2XX", "404"]},
        )
        self.assertEqual((record.name, record.source), ("Checkout flow", "interceptor"))
        self.assertEqual(record.options["name"], "Checkout flow")
        self.assertIs(record.options["save_responses"], False)
        self.assertEqual(record.options["organize_by"], ["domain"])
        filters = record.options["filters"]
        self.assertEqual(filters["methods"], ["GET", "POST"])
        self.assertEqual(filters["status_codes"], ["2xx", 404])
        self.assertIsNone(filters["url_contains"])

    def test_bad_options_start_nothing(self) -> None:
        cases = [
            ({"filters": {"url_contains": "(unclosed"}}, INVALID_OPTION, "filters.url_contains"),
            ({"source": "browser"}, INVALID_OPTION, "source"),
            ({"save_responses": "yes"}, INVALID_PARAMS, "save_responses"),
            ({"colour": "red"}, INVALID_PARAMS, "colour"),
        ]
        for options, code, field in cases:
            error = self.fails(self.manager.start(options), OptionError)
            self.assertEqual((error.code, error.field), (code, field))
        self.assertIsNone(self.manager.active)
        self.assertEqual(self.successResultOf(self.store.list_sessions()), (0, []))
        self.assertEqual(self.events, [])

    def test_second_start_is_refused(self) -> None:
        first = self.start()
        error = self.fails(self.manager.start({}), SessionAlreadyActive)
        self.assertIs(error.active, first)
        self.done(self.manager.pause())
        error = self.fails(self.manager.start({"name": "other"}), SessionAlreadyActive)
        self.assertEqual(error.active.state, "paused")
        self.assertEqual(self.successResultOf(self.store.list_sessions())[0], 1)

    def test_start_again_after_stop(self) -> None:
        first = self.start()
        self.done(self.manager.stop())
        self.clock.advance(1)
        second = self.start(name="second")
        self.assertNotEqual(second.id, first.id)
        self.assertIs(self.manager.active, second)
        self.assertEqual(second.started_at, T0 + 1)


class LifecycleTests(ManagerCase):
    def test_pause_resume_stop(self) -> None:
        record = self.start()
        self.clock.advance(1)
        paused = self.done(self.manager.pause())
        self.assertEqual(paused.state, "paused")
        self.assertIs(self.manager.active, paused)
        self.assertEqual(self.stored(record.id), paused)
        resumed = self.done(self.manager.resume())
        self.assertEqual(resumed.state, "running")
        self.clock.advance(2)
        stopped = self.done(self.manager.stop())
        self.assertEqual((stopped.state, stopped.stopped_at), ("stopped", T0 + 3))
        self.assertIsNone(self.manager.active)
        self.assertEqual(self.stored(record.id), stopped)
        self.assertEqual(self.event_names(), ["started", "paused", "resumed", "stopped"])
        self.assertEqual([r.id for _, r in self.events], [record.id] * 4)
        self.assertEqual(self.events[-1], ("stopped", stopped))

    def test_stop_while_paused(self) -> None:
        self.start()
        self.done(self.manager.pause())
        stopped = self.done(self.manager.stop())
        self.assertEqual(stopped.state, "stopped")
        self.assertIsNone(self.manager.active)

    def test_invalid_transitions(self) -> None:
        record = self.start()
        error = self.fails(self.manager.resume(), InvalidSessionState)
        self.assertEqual(error.record.state, "running")
        self.done(self.manager.pause())
        error = self.fails(self.manager.pause(), InvalidSessionState)
        self.assertEqual(error.record.state, "paused")
        self.done(self.manager.stop())
        for action in (self.manager.pause, self.manager.resume, self.manager.stop):
            error = self.fails(action(record.id), InvalidSessionState)
            self.assertEqual((error.record.id, error.record.state), (record.id, "stopped"))
        self.assertEqual(self.stored(record.id).state, "stopped")
        self.assertEqual(self.event_names(), ["started", "paused", "stopped"])

    def test_ids_are_optional_and_name_the_active_session(self) -> None:
        record = self.start()
        self.assertEqual(self.done(self.manager.pause(record.id)).state, "paused")
        self.assertEqual(self.done(self.manager.resume(None)).id, record.id)
        self.assertEqual(self.done(self.manager.get(record.id)), self.manager.active)

    def test_without_an_active_session(self) -> None:
        calls = [
            self.manager.pause,
            self.manager.resume,
            self.manager.stop,
            self.manager.clear,
            lambda: self.manager.update(None, {"name": "x"}),
        ]
        for call in calls:
            error = self.fails(call(), SessionNotFound)
            self.assertIsNone(error.session_id)
        self.start()
        self.done(self.manager.stop())
        error = self.fails(self.manager.stop(), SessionNotFound)
        self.assertIsNone(error.session_id)

    def test_unknown_ids(self) -> None:
        self.start()
        for call in (
            self.manager.pause,
            self.manager.resume,
            self.manager.stop,
            self.manager.clear,
            self.manager.get,
            self.manager.delete,
            lambda session_id: self.manager.update(session_id, {}),
        ):
            error = self.fails(call("nope"), SessionNotFound)
            self.assertEqual(error.session_id, "nope")
        self.assertEqual(self.manager.active.state, "running")

    def test_duration_follows_the_clock(self) -> None:
        record = self.start()
        self.clock.advance(2.5)
        self.assertEqual(self.manager.active.duration_ms(self.manager.now()), 2500.0)
        self.done(self.manager.pause())
        self.clock.advance(1.5)
        self.assertEqual(self.manager.active.to_json(self.manager.now())["duration_ms"], 4000.0)
        stopped = self.done(self.manager.stop())
        self.clock.advance(60)
        self.assertEqual(stopped.to_json(self.manager.now())["duration_ms"], 4000.0)
        again = self.done(self.manager.get(record.id))
        self.assertEqual(again.duration_ms(self.manager.now()), 4000.0)

    def test_stopped_session_is_inactive_even_if_saving_fails(self) -> None:
        self.start()
        self.patch(self.store, "save_session", lambda record: fail(OSError("disk full")))
        self.fails(self.manager.stop(), OSError)
        self.assertIsNone(self.manager.active)
        self.assertIsNone(self.manager.begin("GET", "http://example.test/"))


class UpdateTests(ManagerCase):
    def test_rename(self) -> None:
        record = self.start()
        renamed = self.done(self.manager.update(None, {"name": "Login bug"}))
        self.assertEqual((renamed.id, renamed.name), (record.id, "Login bug"))
        self.assertEqual(renamed.options["name"], "Login bug")
        self.assertEqual(renamed.state, "running")
        self.assertIs(self.manager.active, renamed)
        self.assertEqual(self.stored(record.id), renamed)
        self.assertEqual(self.events[-1], ("updated", renamed))

    def test_filter_change_takes_effect_at_once(self) -> None:
        self.start(filters={"url_contains": "api"})
        self.assertIsNotNone(self.manager.begin("GET", "http://api.example.test/"))
        self.done(self.manager.update(None, {"filters": {"methods": ["POST"]}}))
        self.assertIsNone(self.manager.begin("GET", "http://api.example.test/"))
        self.assertIsNotNone(self.manager.begin("POST", "http://api.example.test/"))
        # Filters merge field by field: url_contains still applies.
        self.assertIsNone(self.manager.begin("POST", "http://www.example.test/"))
        self.assertEqual(self.manager.active.options["filters"]["url_contains"], "api")
        self.done(self.manager.update(None, {"filters": None}))
        self.assertIsNotNone(self.manager.begin("GET", "http://www.example.test/"))

    def test_update_keeps_counters(self) -> None:
        self.start()
        txn = self.capture()
        updated = self.done(self.manager.update(None, {"save_responses": False}))
        self.assertEqual((updated.request_count, updated.total_bytes), (1, txn.response_bytes))
        ticket = self.manager.begin("GET", "http://example.test/")
        self.assertIs(ticket.save_responses, False)

    def test_update_a_stopped_session(self) -> None:
        record = self.start()
        self.done(self.manager.stop())
        renamed = self.done(self.manager.update(record.id, {"name": "Archived"}))
        self.assertEqual((renamed.name, renamed.state), ("Archived", "stopped"))
        self.assertIsNone(self.manager.active)
        self.assertEqual(self.stored(record.id), renamed)

    def test_bad_update_changes_nothing(self) -> None:
        record = self.start(filters={"methods": ["GET"]})
        cases = [
            ({"filters": {"url_excludes": "[a-"}}, INVALID_OPTION, "filters.url_excludes"),
            ({"filters": {"status_codes": [700]}}, INVALID_OPTION, "filters.status_codes"),
            ({"name": ""}, INVALID_OPTION, "name"),
            ({"organize_by": "domain"}, INVALID_PARAMS, "organize_by"),
            ({"filters": {"hosts": []}}, INVALID_PARAMS, "filters.hosts"),
        ]
        for changes, code, field in cases:
            error = self.fails(self.manager.update(None, changes), OptionError)
            self.assertEqual((error.code, error.field), (code, field))
        self.assertIs(self.manager.active, record)
        self.assertEqual(self.stored(record.id), record)
        self.assertIsNotNone(self.manager.begin("GET", "http://example.test/"))
        self.assertIsNone(self.manager.begin("POST", "http://example.test/"))
        self.assertEqual(self.event_names(), ["started"])


class ClearDeleteListTests(ManagerCase):
    def test_clear_the_active_session(self) -> None:
        record = self.start()
        txns = [self.capture(url=f"http://example.test/{n}") for n in range(3)]
        self.assertEqual(self.successResultOf(self.store.list_transactions(record.id))[0], 3)

        cleared = self.done(self.manager.clear())

        self.assertEqual((cleared.request_count, cleared.total_bytes), (0, 0))
        self.assertIsNone(cleared.last_activity)
        self.assertEqual(cleared.state, "running")
        self.assertIs(self.manager.active, cleared)
        self.assertEqual(self.stored(record.id), cleared)
        self.assertEqual(self.successResultOf(self.store.list_transactions(record.id)), (0, []))
        self.assertIsNone(self.successResultOf(self.store.get_transaction(txns[0].id)))
        self.assertEqual(self.events[-1], ("cleared", cleared))

        later = self.capture()
        self.assertEqual(self.manager.active.request_count, 1)
        self.assertEqual(self.manager.active.total_bytes, later.response_bytes)

    def test_clear_a_stopped_session(self) -> None:
        record = self.start()
        self.capture()
        self.done(self.manager.stop())
        cleared = self.done(self.manager.clear(record.id))
        self.assertEqual((cleared.state, cleared.request_count), ("stopped", 0))
        self.assertIsNone(cleared.last_activity)
        self.assertEqual(self.stored(record.id), cleared)
        self.assertEqual(self.successResultOf(self.store.list_transactions(record.id)), (0, []))

    def test_delete(self) -> None:
        record = self.start()
        txn = self.capture()
        for session_id in (record.id,):
            error = self.fails(self.manager.delete(session_id), InvalidSessionState)
            self.assertEqual(error.record.id, record.id)
        self.assertEqual(self.stored(record.id).request_count, 1)
        self.done(self.manager.pause())
        self.fails(self.manager.delete(record.id), InvalidSessionState)

        stopped = self.done(self.manager.stop())
        self.assertIs(self.done(self.manager.delete(record.id)), True)

        self.assertIsNone(self.stored(record.id))
        self.assertIsNone(self.successResultOf(self.store.get_transaction(txn.id)))
        self.fails(self.manager.get(record.id), SessionNotFound)
        self.fails(self.manager.delete(record.id), SessionNotFound)
        self.assertEqual(self.events[-1], ("deleted", stopped))

    def test_list_includes_the_live_active_record(self) -> None:
        old = self.start(name="old")
        self.done(self.manager.stop())
        self.clock.advance(10)
        self.start(name="new")
        self.capture()
        total, items = self.done(self.manager.list(10, 0))
        self.assertEqual(total, 2)
        self.assertIs(items[0], self.manager.active)
        self.assertEqual(items[0].request_count, 1)
        self.assertEqual(items[1], self.stored(old.id))
        total, items = self.done(self.manager.list(1, 1))
        self.assertEqual((total, [r.id for r in items]), (2, [old.id]))

    def test_get_returns_the_live_active_record(self) -> None:
        record = self.start()
        self.capture()
        self.assertIs(self.done(self.manager.get(record.id)), self.manager.active)


class BeginTests(ManagerCase):
    def test_no_session(self) -> None:
        self.assertIsNone(self.manager.begin("GET", "http://example.test/"))

    def test_ticket_of_the_running_session(self) -> None:
        record = self.start(filters={"status_codes": ["2xx"], "exclude_resources": ["css"]})
        ticket = self.manager.begin("GET", "http://example.test/")
        self.assertIsInstance(ticket, CaptureTicket)
        self.assertEqual(ticket.session_id, record.id)
        self.assertIs(ticket.save_responses, True)
        self.assertTrue(ticket.wants_response(204, "application/json"))
        self.assertFalse(ticket.wants_response(404, "application/json"))
        self.assertFalse(ticket.wants_response(200, "text/css"))
        self.assertFalse(ticket.wants_response(None, ""))

    def test_paused_and_stopped_capture_nothing(self) -> None:
        self.start()
        self.done(self.manager.pause())
        self.assertIsNone(self.manager.begin("GET", "http://example.test/"))
        self.done(self.manager.resume())
        self.assertIsNotNone(self.manager.begin("GET", "http://example.test/"))
        self.done(self.manager.stop())
        self.assertIsNone(self.manager.begin("GET", "http://example.test/"))

    def test_request_filters(self) -> None:
        self.start(
            filters={"url_contains": r"api\.", "url_excludes": "/health", "methods": ["GET"]}
        )
        self.assertIsNotNone(self.manager.begin("GET", "http://api.example.test/users"))
        self.assertIsNotNone(self.manager.begin("get", "http://api.example.test/users"))
        self.assertIsNone(self.manager.begin("GET", "http://www.example.test/users"))
        self.assertIsNone(self.manager.begin("GET", "http://api.example.test/health"))
        self.assertIsNone(self.manager.begin("DELETE", "http://api.example.test/users"))

    def test_source_must_match(self) -> None:
        self.start(source="interceptor")
        self.assertIsNone(self.manager.begin("GET", "http://example.test/"))
        self.assertIsNone(self.manager.begin("GET", "http://example.test/", source="proxy"))
        ticket = self.manager.begin("GET", "http://example.test/", source="interceptor")
        self.assertIsNotNone(ticket)
        self.done(self.manager.update(None, {"source": "proxy"}))
        self.assertIsNone(self.manager.begin("GET", "http://example.test/", source="interceptor"))
        self.assertIsNotNone(self.manager.begin("GET", "http://example.test/"))


class CompleteTests(ManagerCase):
    def spool_dir(self) -> str:
        directory = tempfile.mkdtemp(prefix="postcap-session-")
        self.addCleanup(shutil.rmtree, directory, True)
        return directory

    def test_counts_on_the_active_record(self) -> None:
        record = self.start()
        first = self.capture(request_body=b"abc", duration_ms=500.0)
        self.clock.advance(3)
        second = self.capture(method="POST", response_body=b"0123456789", duration_ms=250.0)
        active = self.manager.active
        self.assertEqual(active.request_count, 2)
        self.assertEqual(active.total_bytes, 3 + first.response_bytes + 10)
        self.assertEqual(active.last_activity, T0 + 3.25)
        self.assertEqual(second.session_id, record.id)
        # The store counts the same transactions.
        stored = self.stored(record.id)
        self.assertEqual(
            (stored.request_count, stored.total_bytes, stored.last_activity),
            (active.request_count, active.total_bytes, active.last_activity),
        )
        self.assertEqual(self.manager.in_flight, 0)

    def test_last_activity_never_moves_back(self) -> None:
        self.start()
        self.capture(started_at=T0 + 5)
        self.capture(started_at=T0 + 1)
        self.assertEqual(self.manager.active.last_activity, T0 + 5 + 0.0425)
        self.assertEqual(self.manager.active.request_count, 2)

    def test_every_sink_gets_each_transaction(self) -> None:
        sink, other = MemorySink(), MemorySink()
        self.manager.add_sink(sink)
        self.manager.add_sink(other)
        record = self.start()
        txns = [self.capture(url=f"http://example.test/{n}") for n in range(3)]
        self.assertEqual(sink.transactions, txns)
        self.assertEqual(other.transactions, txns)
        total, items = self.successResultOf(self.store.list_transactions(record.id))
        self.assertEqual(items, [t.summary() for t in txns])

    def test_add_sink_verifies_the_interface(self) -> None:
        self.assertRaises(Invalid, self.manager.add_sink, object())
        self.assertEqual(self.manager.sinks, [self.store])

    def test_failing_sinks_are_logged_and_do_not_stop_the_others(self) -> None:
        first, last = MemorySink(), MemorySink()
        self.manager.add_sink(first)
        self.manager.add_sink(RaisingSink())
        self.manager.add_sink(FailingSink())
        self.manager.add_sink(last)
        record = self.start()

        txn = self.capture()

        self.assertEqual(len(self.flushLoggedErrors(SinkBug)), 2)
        self.assertEqual(first.transactions, [txn])
        self.assertEqual(last.transactions, [txn])
        self.assertEqual(self.successResultOf(self.store.list_transactions(record.id))[0], 1)
        self.assertEqual(self.manager.active.request_count, 1)
        self.assertEqual(self.manager.in_flight, 0)
        # The manager goes on capturing.
        self.capture()
        self.assertEqual(len(self.flushLoggedErrors(SinkBug)), 2)
        self.assertEqual(len(last.transactions), 2)

    def test_spools_are_deleted_once_every_sink_is_done(self) -> None:
        slow = SlowSink()
        self.manager.add_sink(slow)
        self.start()
        directory = self.spool_dir()
        ticket = self.manager.begin("GET", "http://example.test/")
        txn = make_transaction(
            session_id=ticket.session_id, response_body=spooled_body(b"big" * 100, directory)
        )
        self.manager.complete(ticket, txn)
        self.assertEqual(self.manager.in_flight, 1)
        self.assertEqual(len(os.listdir(directory)), 1)
        slow.waiting[0].callback(None)
        self.assertEqual(self.manager.in_flight, 0)
        self.assertEqual(os.listdir(directory), [])

    def test_transaction_of_a_stopped_session_is_dropped(self) -> None:
        sink = MemorySink()
        self.manager.add_sink(sink)
        record = self.start()
        ticket = self.manager.begin("GET", "http://example.test/")
        self.done(self.manager.stop())
        directory = self.spool_dir()
        txn = make_transaction(
            session_id=record.id, response_body=spooled_body(b"late", directory)
        )

        self.manager.complete(ticket, txn)

        self.assertEqual(sink.transactions, [])
        self.assertEqual(self.successResultOf(self.store.list_transactions(None)), (0, []))
        self.assertEqual(self.stored(record.id).request_count, 0)
        self.assertEqual(os.listdir(directory), [])

        # Nor does it count against the next session.
        self.start()
        self.manager.complete(ticket, make_transaction(session_id=record.id))
        self.assertEqual(self.manager.active.request_count, 0)
        self.assertEqual(sink.transactions, [])

    def test_transaction_without_a_ticket_is_dropped(self) -> None:
        sink = MemorySink()
        self.manager.add_sink(sink)
        self.start()
        directory = self.spool_dir()
        txn = make_transaction(session_id=None, response_body=spooled_body(b"x", directory))
        self.manager.complete(None, txn)
        self.assertEqual(sink.transactions, [])
        self.assertEqual(self.manager.active.request_count, 0)
        self.assertEqual(os.listdir(directory), [])

    def test_completes_while_paused_if_begun_while_running(self) -> None:
        record = self.start()
        ticket = self.manager.begin("GET", "http://example.test/")
        self.done(self.manager.pause())
        self.manager.complete(ticket, make_transaction(session_id=record.id))
        self.assertEqual(self.manager.active.request_count, 1)


class ListenerTests(ManagerCase):
    def test_every_change_is_announced_with_its_record(self) -> None:
        started = self.start()
        results = [
            self.done(self.manager.pause()),
            self.done(self.manager.resume()),
            self.done(self.manager.update(None, {"name": "renamed"})),
            self.done(self.manager.clear()),
            self.done(self.manager.stop()),
        ]
        self.done(self.manager.delete(started.id))
        self.assertEqual(
            self.events,
            [("started", started)]
            + list(zip(["paused", "resumed", "updated", "cleared", "stopped"], results))
            + [("deleted", results[-1])],
        )

    def test_a_failing_listener_is_logged_and_the_others_still_hear(self) -> None:
        def broken(event: str, record: SessionRecord) -> None:
            raise SinkBug(event)

        heard: list[str] = []
        self.manager.add_listener(broken)
        self.manager.add_listener(lambda event, record: heard.append(event))
        self.start()
        self.done(self.manager.stop())
        self.assertEqual(heard, ["started", "stopped"])
        self.assertEqual(len(self.flushLoggedErrors(SinkBug)), 2)
        self.assertIsNone(self.manager.active)

    def test_listeners_see_no_active_session_once_stopped(self) -> None:
        seen: list[SessionRecord | None] = []
        self.manager.add_listener(lambda event, record: seen.append(self.manager.active))
        self.start()
        self.done(self.manager.stop())
        self.assertIsNotNone(seen[0])
        self.assertIsNone(seen[1])


class OpenCloseTests(ManagerCase):
    def test_open_recovers_interrupted_sessions(self) -> None:
        running = make_session(state="running", started_at=T0 - 100, last_activity=T0 - 40)
        paused = make_session(state="paused", started_at=T0 - 50)
        stopped = make_session(state="stopped", started_at=T0 - 500, stopped_at=T0 - 400)
        for record in (running, paused, stopped):
            self.successResultOf(self.store.save_session(record))

        recovered = self.done(self.manager.open())

        self.assertEqual(sorted(recovered), sorted([running.id, paused.id]))
        self.assertEqual(self.stored(running.id).state, "stopped")
        self.assertEqual(self.stored(running.id).stopped_at, T0 - 40)
        self.assertEqual(self.stored(paused.id).stopped_at, T0 - 50)
        self.assertEqual(self.stored(stopped.id), stopped)
        self.assertIsNone(self.manager.active)
        self.assertEqual(self.start().state, "running")

    def test_recovery_after_clear_ends_at_the_start(self) -> None:
        record = self.start()
        self.clock.advance(5)
        self.capture()
        self.done(self.manager.clear())
        # A crash: a new manager over the same store.
        manager = SessionManager(self.clock, self.store)
        self.assertEqual(self.done(manager.open()), [record.id])
        self.assertEqual(self.stored(record.id).stopped_at, record.started_at)

    def test_flush_and_close_reach_every_sink(self) -> None:
        sink = MemorySink()
        self.manager.add_sink(RaisingSink())
        self.manager.add_sink(sink)
        self.done(self.manager.flush())
        self.assertEqual(sink.flushes, 1)
        self.assertEqual(len(self.flushLoggedErrors(SinkBug)), 1)
        self.done(self.manager.close())
        self.assertTrue(sink.closed)
        self.assertTrue(self.store.closed)
        self.assertEqual(len(self.flushLoggedErrors(SinkBug)), 1)
