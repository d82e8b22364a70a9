"""The session side of WebSocket capture: which messages a session takes (running,
paused, stopped), where they go (store, listeners, events), failures kept apart."""

from __future__ import annotations

import json
from typing import Any, Coroutine

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from postcap.events import EventHub
from postcap.model import WebSocketMessage
from postcap.session import SessionManager
from postcap.testing import MemoryHistoryStore, make_transaction


class WebSocketSessionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryHistoryStore()
        self.sessions = SessionManager(Clock(), self.store)
        self.wait(self.sessions.open())

    def wait(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def handshake(self) -> tuple[Any, str]:
        ticket = self.sessions.begin("GET", "http://chat.test/socket")
        assert ticket is not None
        txn = make_transaction(session_id=ticket.session_id, kind="websocket", status=101,
                               url="http://chat.test/socket", response_body=b"")
        self.sessions.complete(ticket, txn)
        return ticket, txn.id

    def message(self, txn_id: str, text: bytes) -> WebSocketMessage:
        return WebSocketMessage(txn_id, "client", "text", 5.0, len(text), False, text)

    def test_capture_follows_the_session_state(self) -> None:
        self.wait(self.sessions.start({"name": "ws"}))
        ticket, _ = self.handshake()
        self.assertEqual(self.sessions.message_capture(ticket), "running")
        self.wait(self.sessions.pause())
        self.assertEqual(self.sessions.message_capture(ticket), "paused")
        self.wait(self.sessions.resume())
        self.assertEqual(self.sessions.message_capture(ticket), "running")
        self.wait(self.sessions.stop())
        self.assertEqual(self.sessions.message_capture(ticket), "ended")
        self.wait(self.sessions.start({"name": "next"}))
        self.assertEqual(self.sessions.message_capture(ticket), "ended")  # another session

    def test_messages_reach_the_store_and_the_events(self) -> None:
        hub = EventHub(run_id="run")
        self.sessions.add_message_listener(hub.message_captured)
        self.wait(self.sessions.start({"name": "ws"}))
        ticket, txn_id = self.handshake()
        self.sessions.message_captured(ticket, self.message(txn_id, b"x" * 5000))
        self.sessions.websocket_closed(ticket, txn_id, "server", 4000)
        total, items = self.successResultOf(self.store.list_messages(txn_id))
        self.assertEqual((total, items[0]["size"], len(items[0]["text"])), (1, 5000, 5000))
        detail = self.successResultOf(self.store.get_transaction(txn_id))
        self.assertEqual((detail["websocket"]["closed_by"], detail["websocket"]["close_code"]), ("server", 4000))
        (event,) = [e for e in hub.since("other:0")[0] if e.kind == "message"]
        data = json.loads(event.data)
        self.assertEqual((data["transaction_id"], data["session_id"]), (txn_id, ticket.session_id))
        self.assertEqual((len(data["text"]), data["truncated"], data["size"]), (1024, True, 5000))

    def test_a_failing_listener_is_logged_and_harms_nothing(self) -> None:
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        heard: list[WebSocketMessage] = []

        def broken(session_id: str, message: WebSocketMessage) -> None:
            raise RuntimeError("listener on fire")

        self.sessions.add_message_listener(broken)
        self.sessions.add_message_listener(lambda _, message: heard.append(message))
        self.wait(self.sessions.start({"name": "ws"}))
        ticket, txn_id = self.handshake()
        self.sessions.message_captured(ticket, self.message(txn_id, b"hi"))
        self.assertEqual(len(heard), 1)
        self.assertEqual(self.successResultOf(self.store.list_messages(txn_id))[0], 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(any("message listener failed" in str(e.get("log_format")) for e in observer))
