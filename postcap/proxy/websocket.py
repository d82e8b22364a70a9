"""WebSocket relaying, sans-IO: two ``wsproto`` connections back to back.

After a ``101`` to an ``Upgrade: websocket`` request, postcap is the server of
the client's WebSocket connection and the client of the origin's.
:class:`WebSocketBridge` takes the bytes each side sends and returns a
:class:`Step`: the bytes to write to either side, the messages it captured
(fragments joined into one message), and whether a side's connection is done.
It owns no transport and no clock of its own (the time is asked of ``clock``),
so it is tested with bytes in and bytes out.

Frames stream: a data frame is relayed in the pieces it arrives in, so a large
message never sits whole in memory; only its stored copy is kept, bounded per
connection by the capture budget (``--max-capture-body``).  Messages larger than
``max_message_size`` close the sender's connection with 1009; any frame
``wsproto`` rejects (unmasked client frame, 2^63 length, bad UTF-8 text, reserved
bits) closes it with the code ``wsproto`` names (1002, 1007).  The other side then
gets a 1001 "going away" close.  ``permessage-deflate`` is never negotiated
(the relay strips the offer from the handshake), so payloads are relayed and
stored as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import CloseConnection, Event, Message, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason

from postcap.model import WebSocketMessage

CLIENT, SERVER = "client", "server"

#: States in which a close frame may still be sent on a connection.
_MAY_CLOSE = (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)
#: States in which a close frame was received (or the connection was lost).
_CLOSE_RECEIVED = (ConnectionState.REMOTE_CLOSING, ConnectionState.CLOSED)

#: The close code recorded when a connection ends without a close frame.
ABNORMAL_CLOSURE = int(CloseReason.ABNORMAL_CLOSURE)
GOING_AWAY = int(CloseReason.GOING_AWAY)
MESSAGE_TOO_BIG = int(CloseReason.MESSAGE_TOO_BIG)


@dataclass(slots=True)
class Step:
    """What one input made the bridge do."""

    to_client: list[bytes] = field(default_factory=list)
    to_server: list[bytes] = field(default_factory=list)
    messages: list[WebSocketMessage] = field(default_factory=list)
    #: Close the transport of this side once what is written to it is flushed.
    close_client: bool = False
    close_server: bool = False


class CaptureBudget:
    """The bytes of stored copies one connection may still keep."""

    __slots__ = ("left",)

    def __init__(self, limit: int) -> None:
        self.left = max(0, limit)

    def take(self, data: bytes) -> bytes:
        """The part of ``data`` that fits; what fits is spent."""
        if len(data) <= self.left:
            self.left -= len(data)
            return data
        piece = data[: self.left]
        self.left = 0
        return piece


class _Side:
    """One of the two WebSocket connections, and the message arriving on it."""

    __slots__ = ("name", "connection", "failed", "message_type", "message_at",
                 "message_size", "pieces")

    def __init__(self, name: str, connection: Connection) -> None:
        self.name = name
        self.connection = connection
        #: A protocol error ended this side: what it sends after is ignored.
        self.failed = False
        self.message_type: str | None = None
        self.message_at = 0.0
        self.message_size = 0
        self.pieces: list[bytes] = []

    @property
    def state(self) -> ConnectionState:
        return self.connection.state

    def send(self, event: Event) -> bytes:
        return self.connection.send(event)


class WebSocketBridge:
    """Relays one WebSocket connection between a client and an origin (see module docs).

    ``capture_limit`` is the byte budget of the connection's stored copies, or
    None when nothing is captured.  Close facts: :attr:`closed_by` (``"client"`` or
    ``"server"``: whose close frame, loss or protocol error came first, None while
    open or when postcap closed both) and :attr:`close_code`.
    """

    #: A message larger than this closes its sender's connection with 1009.
    max_message_size = 64 * 1024 * 1024

    def __init__(
        self,
        transaction_id: str,
        clock: Callable[[], float],
        capture_limit: int | None,
        max_message_size: int | None = None,
    ) -> None:
        self.transaction_id = transaction_id
        self._clock = clock
        self._budget = None if capture_limit is None else CaptureBudget(capture_limit)
        if max_message_size is not None:
            self.max_message_size = max_message_size
        self.client = _Side(CLIENT, Connection(ConnectionType.SERVER))
        self.server = _Side(SERVER, Connection(ConnectionType.CLIENT))
        self.closed_by: str | None = None
        self.close_code: int | None = None
        self._close_known = False

    # -- inputs ---------------------------------------------------------------------

    def from_client(self, data: bytes) -> Step:
        return self._receive(self.client, self.server, data)

    def from_server(self, data: bytes) -> Step:
        return self._receive(self.server, self.client, data)

    def client_lost(self) -> Step:
        return self._lost(self.client, self.server)

    def server_lost(self) -> Step:
        return self._lost(self.server, self.client)

    def going_away(self, reason: str = "postcap is shutting down") -> Step:
        """Close both sides with 1001 (the proxy stops); their replies still count."""
        step = Step()
        self._note_close(None, GOING_AWAY)
        for side in (self.client, self.server):
            if side.state in _MAY_CLOSE:
                self._write(step, side, side.send(CloseConnection(GOING_AWAY, reason)))
                if side.state is ConnectionState.CLOSED:
                    self._close(step, side)
        return step

    def stop_capturing(self) -> None:
        """Keep no more copies (the session stopped); messages are still relayed."""
        self._budget = None
        self.client.pieces = []
        self.server.pieces = []

    @property
    def capturing(self) -> bool:
        return self._budget is not None

    @property
    def finished(self) -> bool:
        """Both WebSocket connections are closed."""
        return (self.client.state is ConnectionState.CLOSED
                and self.server.state is ConnectionState.CLOSED)

    # -- relaying ---------------------------------------------------------------------

    def _receive(self, source: _Side, target: _Side, data: bytes) -> Step:
        step = Step()
        if source.failed or source.state is ConnectionState.CLOSED:
            return step
        source.connection.receive_data(data)
        for event in source.connection.events():
            if isinstance(event, Message):
                self._relay_data(step, source, target, event)
            elif isinstance(event, (Ping, Pong)):
                kind = "ping" if isinstance(event, Ping) else "pong"
                self._capture(step, source, kind, self._clock(), bytes(event.payload))
                if target.state is ConnectionState.OPEN:
                    self._write(step, target, target.send(event))
            elif isinstance(event, CloseConnection):
                if source.state in _CLOSE_RECEIVED:
                    self._relay_close(step, source, target, event)
                else:  # wsproto turned a protocol error into this event
                    self._fail(step, source, target, event.code, event.reason or "protocol error")
            if source.failed:
                break
        return step

    def _relay_data(self, step: Step, source: _Side, target: _Side, event: Message) -> None:
        if source.message_type is None:
            source.message_type = "text" if isinstance(event, TextMessage) else "binary"
            source.message_at = self._clock()
            source.message_size = 0
        payload = event.data.encode("utf-8") if isinstance(event, TextMessage) else bytes(event.data)
        source.message_size += len(payload)
        if source.message_size > self.max_message_size:
            self._fail(step, source, target, MESSAGE_TOO_BIG,
                       f"message larger than {self.max_message_size} bytes")
            return
        if self._budget is not None and payload:
            piece = self._budget.take(payload)
            if piece:
                source.pieces.append(piece)
        if target.state is ConnectionState.OPEN:
            self._write(step, target, target.send(event))
        if event.message_finished:
            pieces, source.pieces = source.pieces, []
            message_type, source.message_type = source.message_type, None
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            self._emit(step, source, message_type, source.message_at, source.message_size, data,
                       len(data) < source.message_size)

    def _relay_close(self, step: Step, source: _Side, target: _Side, event: CloseConnection) -> None:
        code = int(event.code)
        reason = event.reason or ""
        no_code = code == int(CloseReason.NO_STATUS_RCVD)  # an empty close frame
        raw_reason = reason.encode("utf-8")
        self._capture(step, source, "close", self._clock(), raw_reason, code,
                      size=0 if no_code else 2 + len(raw_reason))
        self._note_close(source.name, code)
        if target.state in _MAY_CLOSE:
            # A close without a code is forwarded without one.
            forwarded = CloseReason.NO_STATUS_RCVD if no_code else code
            self._write(step, target, target.send(CloseConnection(forwarded, None if no_code else reason)))
        for side in (source, target):
            if side.state is ConnectionState.CLOSED:
                self._close(step, side)

    def _lost(self, source: _Side, target: _Side) -> Step:
        """``source``'s transport is gone: end the other side too."""
        step = Step()
        if source.state is not ConnectionState.CLOSED:
            source.connection.receive_data(None)
            self._note_close(source.name, ABNORMAL_CLOSURE)
        source.pieces = []
        if target.state in _MAY_CLOSE:
            self._write(step, target, target.send(
                CloseConnection(GOING_AWAY, f"the {source.name} went away")))
        self._close(step, target)
        return step

    def _fail(self, step: Step, source: _Side, target: _Side, code: int, reason: str) -> None:
        """``source`` broke the protocol: close it with ``code``, the other with 1001."""
        source.failed = True
        source.pieces = []
        self._note_close(source.name, code)
        if source.state in _MAY_CLOSE:
            self._write(step, source, source.send(CloseConnection(code, reason[:100])))
        if target.state in _MAY_CLOSE:
            self._write(step, target, target.send(
                CloseConnection(GOING_AWAY, f"the {source.name} broke the WebSocket protocol")))
        self._close(step, source)
        self._close(step, target)

    # -- helpers ----------------------------------------------------------------------

    def _note_close(self, side: str | None, code: int) -> None:
        if not self._close_known:
            self._close_known = True
            self.closed_by, self.close_code = side, code

    def _capture(self, step: Step, source: _Side, kind: str, at: float, payload: bytes,
                 code: int | None = None, size: int | None = None) -> None:
        if self._budget is None:
            return
        kept = self._budget.take(payload)
        self._emit(step, source, kind, at, len(payload) if size is None else size, kept,
                   len(kept) < len(payload), code)

    def _emit(self, step: Step, source: _Side, kind: str, at: float, size: int, data: bytes,
              truncated: bool, code: int | None = None) -> None:
        if self._budget is None:
            return
        step.messages.append(WebSocketMessage(
            self.transaction_id, source.name, kind, at, size, truncated, data, code))

    @staticmethod
    def _write(step: Step, side: _Side, data: bytes) -> None:
        if data:
            (step.to_client if side.name == CLIENT else step.to_server).append(data)

    @staticmethod
    def _close(step: Step, side: _Side) -> None:
        if side.name == CLIENT:
            step.close_client = True
        else:
            step.close_server = True

