"""Live events for ``GET /events``: session changes, captured transactions, cookies.

:class:`EventHub` numbers every event and keeps the newest ``buffer_size`` of
them, so a client that reconnects with ``Last-Event-ID`` gets exactly what it
missed.  Event ids are ``RUN:N``: ``RUN`` names this server run (so an id from
before a restart is recognised as such), ``N`` counts up from 1.  When the events
a client asks to resume after are no longer buffered (or came from another run),
it is told so with a ``reset`` event before the live stream goes on.
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from postcap.interfaces import ICaptureSink
from postcap.model import SessionRecord, Transaction, WebSocketMessage

EVENT_KINDS = ("session", "transaction", "cookie", "message")

#: Bytes of a WebSocket message's payload a ``message`` event carries (request.messages has all).
MESSAGE_EVENT_TEXT = 1024


class Event:
    """One published event: ``id`` as sent (``RUN:N``), ``kind``, and its payload,
    encoded as JSON (``data``) only when a client first needs it."""

    __slots__ = ("number", "id", "kind", "_payload", "_data")

    def __init__(self, number: int, id: str, kind: str, payload: Any) -> None:
        self.number = number
        self.id = id
        self.kind = kind
        self._payload = payload
        self._data: str | None = None

    @property
    def data(self) -> str:
        if self._data is None:
            payload = self._payload
            if callable(payload):  # built only once a client needs it
                payload = payload()
            self._data = json.dumps(payload, separators=(",", ":"))
            self._payload = None
        return self._data

    def encode(self) -> bytes:
        """The Server-Sent Events frame."""
        return f"id: {self.id}\nevent: {self.kind}\ndata: {self.data}\n\n".encode("utf-8")


Subscriber = Callable[[Event], None]


class EventHub:
    """Publishes events to subscribers and remembers the newest ones for resuming."""

    _log = Logger()

    def __init__(self, buffer_size: int = 10_000, run_id: str | None = None) -> None:
        self.run_id = run_id or secrets.token_hex(4)
        self._buffer: deque[Event] = deque(maxlen=max(1, buffer_size))
        self._next = 1
        self._subscribers: list[Subscriber] = []

    @property
    def last_id(self) -> str | None:
        return self._buffer[-1].id if self._buffer else None

    def publish(self, kind: str, payload: Any) -> Event:
        event = Event(self._next, f"{self.run_id}:{self._next}", kind, payload)
        self._next += 1
        self._buffer.append(event)
        for subscriber in list(self._subscribers):
            with self._log.failuresHandled("event subscriber failed on {event_id}", event_id=event.id):
                subscriber(event)
        return event

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def since(self, last_event_id: str | None) -> tuple[list[Event], str | None]:
        """Buffered events after ``last_event_id``, and why resuming is not exact
        (None when it is: nothing was missed that is not in the list)."""
        if last_event_id is None or not last_event_id.strip():
            return [], None
        run, _, number_text = last_event_id.strip().partition(":")
        if run != self.run_id or not number_text.isdigit():
            return list(self._buffer), "the event id is from an earlier run of the server"
        number = int(number_text)
        if number >= self._next:
            return [], "the event id is newer than any event sent"
        missed = [event for event in self._buffer if event.number > number]
        oldest = self._buffer[0].number if self._buffer else self._next
        if number + 1 < oldest:
            return missed, "events after that id are no longer buffered"
        return missed, None

    # -- sources -----------------------------------------------------------------------

    def session_changed(self, change: str, record: SessionRecord, now: float) -> None:
        self.publish("session", {"change": change, "session": record.to_json(now)})

    def storage_changed(self, status: dict[str, Any]) -> None:
        """A ``storage`` event: the history store became unavailable, or recovered."""
        self.publish("storage", status)

    def cookies_captured(self, cookies: Iterable[dict[str, Any]]) -> None:
        for cookie in cookies:
            self.publish("cookie", cookie)

    def message_captured(self, session_id: str, message: WebSocketMessage) -> None:
        """A ``message`` event: the message, its payload cut to :data:`MESSAGE_EVENT_TEXT`
        (shaped only when some client reads it)."""

        def payload() -> dict[str, Any]:
            shape = message.to_json(MESSAGE_EVENT_TEXT)
            shape["transaction_id"] = message.transaction_id
            shape["session_id"] = session_id
            return shape

        self.publish("message", payload)


@implementer(ICaptureSink)
class TransactionEvents:
    """A capture sink publishing each captured transaction's summary."""

    name = "events"

    def __init__(self, hub: EventHub) -> None:
        self.hub = hub

    def transactionCompleted(self, transaction: Transaction) -> None:
        self.hub.publish("transaction", transaction.summary())

    def flush(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)


__all__ = ["EVENT_KINDS", "Event", "EventHub", "TransactionEvents"]
