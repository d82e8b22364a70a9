"""Capture sessions: the lifecycle (``running ⇄ paused → stopped``) and the sink fan-out.

:class:`SessionManager` is the proxy's :class:`~postcap.capture.Recorder`.  It
decides per request whether the active session captures it (a
:class:`~postcap.capture.CaptureTicket`), and hands each finished transaction
to every registered :class:`~postcap.interfaces.ICaptureSink`.  A sink failure
is logged and never reaches the proxy or the other sinks; forwarding never
waits on persistence.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from postcap.capture import CaptureTicket
from postcap.filters import CaptureFilter, default_options, validate_options
from postcap.interfaces import ICaptureSink, IHistoryStore, IWebSocketHistory
from postcap.model import SessionDelta, SessionRecord, Transaction, WebSocketMessage, new_id
from postcap.metrics import Tally


class SessionError(Exception):
    """A session operation that the current state does not allow."""


class SessionAlreadyActive(SessionError):
    def __init__(self, active: SessionRecord) -> None:
        super().__init__(f"session {active.id} is already {active.state}; stop it first")
        self.active = active


class InvalidSessionState(SessionError):
    def __init__(self, record: SessionRecord, action: str) -> None:
        super().__init__(f"cannot {action} session {record.id}: it is {record.state}")
        self.record = record


class SessionNotFound(SessionError):
    def __init__(self, session_id: str | None) -> None:
        super().__init__(
            "no active session" if session_id is None else f"no session with id {session_id!r}"
        )
        self.session_id = session_id


SessionListener = Callable[[str, SessionRecord], None]
#: Called with the session id and each captured WebSocket message.
MessageListener = Callable[[str, WebSocketMessage], None]


#: Replays made while no session is running are recorded in this stopped session.
REPLAYS_SESSION_ID = "replays"


class SessionManager:
    """Owns the one active session and fans transactions out to the sinks."""

    _log = Logger()

    def __init__(self, reactor: IReactorTime, store: IHistoryStore,
                 tally: Tally | None = None) -> None:
        verifyObject(IHistoryStore, store)
        self._reactor = reactor
        #: Counts requests the running session's filters leave out (postcap.metrics).
        self.tally = tally if tally is not None else Tally()
        self.store = store
        self.sinks: list[ICaptureSink] = [store]
        # The active record as last built; the counters of transactions recorded
        # since are kept apart and folded in when somebody reads ``active``.
        self._active: SessionRecord | None = None
        self._unfolded = SessionDelta()
        self._ticket: CaptureTicket | None = None
        self._filter: CaptureFilter | None = None
        self._listeners: list[SessionListener] = []
        #: Transactions handed to sinks and not yet finished by all of them.
        self.in_flight = 0
        self._observers: list[Any] = []
        self._message_listeners: list[MessageListener] = []

    @property
    def active(self) -> SessionRecord | None:
        """The running or paused session, with its counters up to date; or None."""
        record, pending = self._active, self._unfolded
        if record is not None and pending.count:
            last = pending.last_activity
            if record.last_activity is not None:
                last = max(last, record.last_activity)  # as the store keeps it: never backwards
            record = self._active = dataclasses.replace(
                record,
                request_count=record.request_count + pending.count,
                total_bytes=record.total_bytes + pending.size,
                last_activity=last,
            )
            self._unfolded = SessionDelta()
        return record

    @active.setter
    def active(self, record: SessionRecord | None) -> None:
        self._active, self._unfolded = record, SessionDelta()

    def active_options(self, session_id: str) -> dict[str, Any] | None:
        """The options of the active session when it is ``session_id``, else None."""
        record = self._active
        return None if record is None or record.id != session_id else record.options

    # -- wiring ------------------------------------------------------------------

    def add_sink(self, sink: ICaptureSink) -> None:
        verifyObject(ICaptureSink, sink)
        self.sinks.append(sink)

    def add_observer(self, observer: Any) -> None:
        """``observer.observe(transaction)`` sees every finished transaction, captured or
        not (headers only: bodies may be gone after).  While any observer's
        ``wants_all`` is true the proxy builds transactions no session captures."""
        self._observers.append(observer)

    @property
    def observes_all(self) -> bool:
        return any(observer.wants_all for observer in self._observers)

    @property
    def congested(self) -> bool:
        """Whether the history is too far behind the captures (see the store's)."""
        return bool(self.store.congested)

    def when_drained(self) -> Deferred[None]:
        return self.store.when_drained()

    def add_listener(self, listener: SessionListener) -> None:
        """Call ``listener(event, record)`` on every lifecycle change."""
        self._listeners.append(listener)

    async def open(self) -> list[str]:
        """Open the store and stop sessions a crash left running; their ids."""
        await self.store.open()
        return await self.store.recover_interrupted()

    def now(self) -> float:
        return self._reactor.seconds()

    # -- the lifecycle --------------------------------------------------------------

    async def start(self, options: Mapping[str, Any]) -> SessionRecord:
        if self.active is not None:
            raise SessionAlreadyActive(self.active)
        validated = validate_options(options)
        record = SessionRecord(
            id=new_id(),
            name=validated["name"],
            source=validated["source"],
            state="running",
            started_at=self.now(),
            stopped_at=None,
            options=validated,
        )
        self._activate(record)
        try:
            await self.store.save_session(record)
        except BaseException:
            self._deactivate()  # not started after all
            raise
        self._notify("started", record)
        return record

    async def pause(self, session_id: str | None = None) -> SessionRecord:
        record = await self._require_active(session_id, "pause", ("running",))
        return await self._change(record, "paused", state="paused")

    async def resume(self, session_id: str | None = None) -> SessionRecord:
        record = await self._require_active(session_id, "resume", ("paused",))
        return await self._change(record, "resumed", state="running")

    async def stop(self, session_id: str | None = None) -> SessionRecord:
        record = await self._require_active(session_id, "stop", ("running", "paused"))
        return await self._change(record, "stopped", state="stopped", stopped_at=self.now())

    async def clear(self, session_id: str | None = None) -> SessionRecord:
        record = await self.get(self._resolve(session_id))
        await self.store.clear_session(record.id)
        return await self._change(
            record, "cleared", request_count=0, total_bytes=0, last_activity=None
        )

    async def update(self, session_id: str | None, changes: Mapping[str, Any]) -> SessionRecord:
        record = await self.get(self._resolve(session_id))
        validated = validate_options(changes, record.options)
        return await self._change(
            record,
            "updated",
            name=validated["name"],
            source=validated["source"],
            options=validated,
        )

    async def get(self, session_id: str) -> SessionRecord:
        if self.active is not None and self.active.id == session_id:
            return self.active
        record = await self.store.get_session(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        return record

    async def list(self, limit: int, offset: int) -> tuple[int, list[SessionRecord]]:
        total, records = await self.store.list_sessions(limit, offset)
        active = self.active
        if active is not None:
            records = [active if r.id == active.id else r for r in records]
        return total, records

    async def delete(self, session_id: str) -> bool:
        if self.active is not None and self.active.id == session_id:
            raise InvalidSessionState(self.active, "delete")
        record = await self.get(session_id)
        deleted = await self.store.delete_session(record.id)
        if deleted:
            self._notify("deleted", record)
        return deleted

    def _resolve(self, session_id: str | None) -> str:
        if session_id is not None:
            return session_id
        if self.active is None:
            raise SessionNotFound(None)
        return self.active.id

    async def _require_active(
        self, session_id: str | None, action: str, states: tuple[str, ...]
    ) -> SessionRecord:
        record = await self.get(self._resolve(session_id))
        if record.state not in states:
            raise InvalidSessionState(record, action)
        return record

    async def _change(self, record: SessionRecord, event: str, **changes: Any) -> SessionRecord:
        # Counters of the active session live here; take the newest values.
        if self.active is not None and self.active.id == record.id:
            record = self.active
        updated = dataclasses.replace(record, **changes)
        if self.active is not None and self.active.id == record.id:
            # A stopped session is no longer active, even if saving it fails.
            if updated.state == "stopped":
                self._deactivate()
            else:
                self._activate(updated)
        await self.store.save_session(updated)
        self._notify(event, updated)
        return updated

    def _activate(self, record: SessionRecord) -> None:
        self.active = record
        capture_filter = self._filter = CaptureFilter.from_options(record.options)
        self._ticket = CaptureTicket(
            record.id, bool(record.options["save_responses"]), capture_filter,
            capture_filter.filters_responses,
        )

    def _deactivate(self) -> None:
        self.active, self._filter, self._ticket = None, None, None

    def _notify(self, event: str, record: SessionRecord) -> None:
        for listener in self._listeners:
            with self._log.failuresHandled("session listener failed on {event}", event=event):
                listener(event, record)

    # -- the Recorder the proxy talks to ------------------------------------------------

    def begin(self, method: str, url: str, source: str = "proxy") -> CaptureTicket | None:
        active, ticket = self._active, self._ticket
        if active is None or ticket is None or active.state != "running":
            return None
        if active.source != source:
            return None
        if not ticket.filter.wants_request(method, url):
            self.tally.capture_filtered()
            return None
        return ticket

    def complete(self, ticket: CaptureTicket | None, transaction: Transaction) -> None:
        for observer in self._observers:
            try:
                observer.observe(transaction)
            except Exception:
                self._log.failure("transaction observer failed on {txn_id}", txn_id=transaction.id)
        active = self._active
        if ticket is None or active is None or active.id != ticket.session_id:
            transaction.discard_spools()
            return
        self.record(transaction)

    def record(self, transaction: Transaction) -> None:
        """Hand a transaction of a known session to every sink (the proxy's captures,
        and transactions postcap makes itself, such as replays)."""
        active = self._active
        if active is not None and active.id == transaction.session_id:
            self._unfolded.add(transaction)
        self._fan_out(transaction)

    def refresh_counters(self, stored: SessionRecord) -> None:
        """Take the active session's counters from the store (after deletes)."""
        active = self.active
        if active is not None and active.id == stored.id:
            self.active = dataclasses.replace(
                active, request_count=stored.request_count, total_bytes=stored.total_bytes
            )

    async def replay_target(self) -> str:
        """The session a replay is recorded in: the running one, else the stopped
        session :data:`REPLAYS_SESSION_ID` ("Replays"), created when first needed."""
        active = self.active
        if active is not None and active.state == "running":
            return active.id
        if await self.store.get_session(REPLAYS_SESSION_ID) is None:
            now = self.now()
            options = default_options()
            options["name"] = "Replays"
            await self.store.save_session(SessionRecord(
                id=REPLAYS_SESSION_ID, name="Replays", source="proxy", state="stopped",
                started_at=now, stopped_at=now, options=options,
            ))
        return REPLAYS_SESSION_ID

    def _fan_out(self, transaction: Transaction) -> None:
        """Give ``transaction`` to every sink; its spool files go once all are done."""
        waits: list[tuple[str, Deferred[Any]]] = []
        for sink in self.sinks:
            try:
                result = sink.transactionCompleted(transaction)
            except Exception:
                self._sink_failed(Failure(), sink.name, transaction)
                continue
            if isinstance(result, Deferred):
                if result.called and not result.paused and result.result is None:
                    continue  # done already, and well
                waits.append((sink.name, result))
        if not waits:
            transaction.discard_spools()
            return
        self.in_flight += 1
        remaining = [len(waits)]

        def one_done(result: object, name: str) -> None:
            if isinstance(result, Failure):
                self._sink_failed(result, name, transaction)
            remaining[0] -= 1
            if not remaining[0]:
                self.in_flight -= 1
                transaction.discard_spools()

        for name, waiting in waits:
            waiting.addBoth(one_done, name)

    def _sink_failed(self, failure: Failure, name: str, transaction: Transaction) -> None:
        self._log.failure(
            "capture sink {sink} failed on transaction {txn_id}",
            failure,
            sink=name,
            txn_id=transaction.id,
        )

    # -- WebSocket messages (the proxy's MessageRecorder, see capture.py) ------------------

    def add_message_listener(self, listener: MessageListener) -> None:
        """Call ``listener(session_id, message)`` for every captured WebSocket message."""
        self._message_listeners.append(listener)

    def message_capture(self, ticket: CaptureTicket) -> str:
        active = self._active
        if active is None or active.id != ticket.session_id:
            return "ended"
        return "running" if active.state == "running" else "paused"

    def message_captured(self, ticket: CaptureTicket, message: WebSocketMessage) -> None:
        # Called for every message of busy connections: plain try/except, no context managers.
        store = self.store
        if IWebSocketHistory.providedBy(store):
            try:
                store.append_message(message)
            except Exception:
                self._log.failure("storing WebSocket message of {txn_id} failed",
                                  txn_id=message.transaction_id)
        for listener in self._message_listeners:
            try:
                listener(ticket.session_id, message)
            except Exception:
                self._log.failure("message listener failed on {txn_id}", txn_id=message.transaction_id)

    def websocket_closed(self, ticket: CaptureTicket, transaction_id: str,
                         closed_by: str | None, close_code: int | None) -> None:
        store = self.store
        if IWebSocketHistory.providedBy(store):
            with self._log.failuresHandled("storing WebSocket close of {txn_id} failed",
                                           txn_id=transaction_id):
                store.websocket_closed(transaction_id, closed_by, close_code)

    async def flush(self) -> None:
        """Wait until every sink has made durable what it took."""
        for sink in self.sinks:
            try:
                await maybeDeferred(sink.flush)
            except Exception:
                self._log.failure("capture sink {sink} failed to flush", sink=sink.name)

    async def close(self) -> None:
        """Flush and close every sink (the store last)."""
        await self.flush()
        for sink in reversed(self.sinks):
            try:
                await maybeDeferred(sink.close)
            except Exception:
                self._log.failure("capture sink {sink} failed to close", sink=sink.name)
