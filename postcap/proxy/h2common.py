"""What both HTTP/2 sides share: flow control tied to back-pressure, translation
between HTTP/2 header lists and HTTP/1.1 heads, and per-connection rate limits.

Flow control is how an HTTP/2 stream pushes back: :class:`StreamPauser` holds
back the WINDOW_UPDATE for received data while the stream's consumer is
paused (so the peer runs out of window and stops sending on that stream
only), and :class:`Outbound` queues data the peer has no window for, pausing
whatever produces it until a WINDOW_UPDATE arrives.
"""

from __future__ import annotations

from collections import deque
from http.client import responses
from typing import Any, Callable, Iterable

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, Event, StreamReset
from h2.exceptions import InvalidBodyLengthError, StreamClosedError
from h2.exceptions import ProtocolError as H2ProtocolError
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame

from postcap.proxy.framing import HOP_BY_HOP, RawHeaders, RequestHead, ResponseHead
from postcap.proxy.wire import ReasonedPause

#: Fields HTTP/2 forbids (RFC 9113 §8.2.2): connection-specific, plus Host (→ :authority).
CONNECTION_SPECIFIC = HOP_BY_HOP | {b"host"}
#: Trailer fields that must not be forwarded (they frame or route a message).
FORBIDDEN_IN_TRAILERS = frozenset(
    {b"content-length", b"transfer-encoding", b"host", b"connection", b"te", b"trailer",
     b"upgrade", b"keep-alive", b"proxy-connection"}
)
#: ALPN identifiers in preference order.
ALPN_H2 = b"h2"
ALPN_HTTP11 = b"http/1.1"


class GracefulH2Connection(H2Connection):
    """h2's connection, with two departures that keep one bad or departing stream from
    costing the others:

    - a graceful GOAWAY lets the streams already open finish (RFC 9113 §6.8): h2 itself
      stops all sending and receiving at a GOAWAY, which would fail every response still
      in flight when an origin (nginx after its ``keepalive_requests``, a gRPC server at
      its maximum connection age) or a client goes away politely;
    - a malformed message (invalid fields, a body that contradicts its content-length)
      is a stream error, as RFC 9113 §8.1.1 says: that stream is reset with
      PROTOCOL_ERROR and a :class:`~h2.events.StreamReset` reported; h2 would end the
      whole connection.  Errors of the connection itself (HPACK, flow control, frame
      sizes, stream limits, floods) still end it.
    """

    def _receive_frame(self, frame: Frame) -> list[Event]:
        try:
            return super()._receive_frame(frame)
        except (H2ProtocolError, InvalidBodyLengthError) as exc:
            if not _malformed_message(frame, exc):
                raise
            stream_id = frame.stream_id
            try:
                self.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            except H2ProtocolError:
                raise exc from None
            if isinstance(frame, DataFrame) and frame.flow_controlled_length:
                self.acknowledge_received_data(frame.flow_controlled_length, stream_id)
            return [StreamReset(stream_id=stream_id, error_code=ErrorCodes.PROTOCOL_ERROR, remote_reset=False)]

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Any], list[Event]]:
        if frame.error_code != ErrorCodes.NO_ERROR:
            return super()._receive_goaway_frame(frame)
        event = ConnectionTerminated()
        event.error_code = ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def announce_goaway(self, last_stream_id: int | None = None) -> None:
        """Send GOAWAY NO_ERROR (no new streams past the last one seen) and go on
        serving the open streams; :meth:`close_connection` ends for good later."""
        if last_stream_id is None:
            last_stream_id = self.highest_inbound_stream_id
        frame = GoAwayFrame(stream_id=0, last_stream_id=last_stream_id,
                            error_code=ErrorCodes.NO_ERROR, additional_data=b"")
        self._data_to_send += frame.serialize()


def _malformed_message(frame: Frame, exc: Exception) -> bool:
    """Whether ``exc`` says the message on ``frame``'s stream is malformed (a stream
    error) rather than that the connection is broken."""
    if not frame.stream_id or not isinstance(frame, (HeadersFrame, DataFrame)):
        return False
    if isinstance(exc, InvalidBodyLengthError):
        return True
    return type(exc) is H2ProtocolError and exc.error_code == ErrorCodes.PROTOCOL_ERROR


class StreamPauser(ReasonedPause):
    """Pauses one HTTP/2 stream's incoming data by withholding its flow-control
    acknowledgement while any reason holds (the TransportPauser of a stream)."""

    def __init__(self, acknowledge: Callable[[int], None]) -> None:
        super().__init__()
        self._acknowledge = acknowledge
        self._unacknowledged = 0

    def received(self, flow_controlled_length: int) -> None:
        """Data of this length was consumed: acknowledge it now, or when resumed."""
        if self._reasons:
            self._unacknowledged += flow_controlled_length
        elif flow_controlled_length:
            self._acknowledge(flow_controlled_length)

    def release(self) -> None:
        """The stream is over: give the connection window back whatever held."""
        self._reasons.clear()
        self._start()

    def _start(self) -> None:
        pending, self._unacknowledged = self._unacknowledged, 0
        if pending:
            self._acknowledge(pending)


class Outbound:
    """Sends one stream's body within the peer's flow-control window; what does not
    fit waits here and the registered producer is paused until the window opens."""

    #: Pause reason given to the producer while data waits for window.
    reason = "h2-window"

    def __init__(self, connection: H2Connection, stream_id: int, flush: Callable[[], None]) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self._flush = flush
        self._waiting: deque[bytes] = deque()
        self._end: RawHeaders | None = None
        self._ending = False
        self.producer: object | None = None
        self.closed = False

    @property
    def waiting(self) -> bool:
        return bool(self._waiting)

    def send_data(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if self._waiting:
            self._waiting.append(data)
            return
        self._push(data)
        self._flush()

    def send_end(self, trailers: RawHeaders) -> None:
        if self.closed:
            return
        if self._waiting:
            self._ending, self._end = True, trailers
            return
        self._finish(trailers)
        self._flush()

    def window_opened(self) -> None:
        if self.closed or not self._waiting:
            return
        data = b"".join(self._waiting)
        self._waiting.clear()
        self._push(data)
        if not self._waiting:
            self._set_paused(False)
            if self._ending:
                self._ending = False
                self._finish(self._end or [])
        self._flush()

    def set_producer(self, producer: object | None) -> None:
        if producer is None and self.producer is not None:
            self._set_paused(False)
        self.producer = producer
        if producer is not None and self._waiting:
            self._set_paused(True)

    def _push(self, data: bytes) -> None:
        connection, stream_id = self.connection, self.stream_id
        view = memoryview(data)
        try:
            while view:
                size = min(connection.local_flow_control_window(stream_id),
                           connection.max_outbound_frame_size)
                if size <= 0:
                    self._waiting.append(view.tobytes())
                    self._set_paused(True)
                    return
                connection.send_data(stream_id, view[:size].tobytes())
                view = view[size:]
        except (StreamClosedError, H2ProtocolError):
            self.close()

    def _finish(self, trailers: RawHeaders) -> None:
        try:
            if trailers:
                self.connection.send_headers(self.stream_id, trailers, end_stream=True)
            else:
                self.connection.end_stream(self.stream_id)
        except (StreamClosedError, H2ProtocolError):
            pass
        self.close()

    def _set_paused(self, paused: bool) -> None:
        producer = self.producer
        if producer is None:
            return
        if paused:
            producer.pause(self.reason)  # type: ignore[attr-defined]
        else:
            producer.resume(self.reason)  # type: ignore[attr-defined]

    def close(self) -> None:
        """Nothing more goes out on this stream (ended or reset)."""
        self.closed = True
        self._waiting.clear()
        self._set_paused(False)


def h2_fields(headers: RawHeaders, drop: frozenset[bytes] = CONNECTION_SPECIFIC) -> RawHeaders:
    """HTTP/1 header pairs as HTTP/2 fields: lower-case names, connection-specific ones
    dropped (``te`` survives only as ``trailers``)."""
    fields: RawHeaders = []
    for name, value in headers:
        lower = name.lower()
        if lower == b"te":
            if value.strip().lower() == b"trailers":
                fields.append((b"te", b"trailers"))
            continue
        if lower not in drop:
            fields.append((lower, value))
    return fields


def plain(fields: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """``h2``'s header tuples as plain pairs (what the capture model stores)."""
    return [(bytes(name), bytes(value)) for name, value in fields]


def trailer_fields(trailers: RawHeaders) -> RawHeaders:
    return [(name.lower(), value) for name, value in trailers
            if name.lower() not in FORBIDDEN_IN_TRAILERS and not name.startswith(b":")]


def request_head(fields: RawHeaders, stream_ended: bool) -> RequestHead:
    """An HTTP/2 request's fields as an HTTP/1-style head (``version`` ``HTTP/2``):
    ``:authority`` becomes ``Host``, split cookies are joined again (RFC 9113 §8.2.3).
    Raises ValueError when a pseudo-header is missing."""
    pseudo: dict[bytes, bytes] = {}
    headers: RawHeaders = []
    cookies: list[bytes] = []
    length = -1
    for name, value in fields:
        if name.startswith(b":"):
            pseudo[name] = value
        elif name == b"cookie":
            cookies.append(value)
        else:
            if name == b"content-length" and value.isdigit():
                length = int(value)
            headers.append((name, value))
    method = pseudo.get(b":method")
    if not method:
        raise ValueError("request without :method")
    authority = pseudo.get(b":authority")
    if authority is not None:
        headers.insert(0, (b"host", authority))
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    if method == b"CONNECT":
        raise ValueError("CONNECT over HTTP/2 is not supported")
    path = pseudo.get(b":path")
    if not path:
        raise ValueError("request without :path")
    if stream_ended:
        framing, length = "none", 0
    elif length >= 0:
        framing = "length"
    else:
        framing, length = "chunked", 0
    return RequestHead(method, path, b"HTTP/2", headers, framing, length)


def response_head(fields: RawHeaders, stream_ended: bool) -> ResponseHead:
    """An HTTP/2 response's fields as an HTTP/1-style head; the reason phrase is the
    standard one (HTTP/2 has none)."""
    status = 0
    headers: RawHeaders = []
    length = -1
    for name, value in fields:
        if name == b":status":
            status = int(value)
        elif not name.startswith(b":"):
            if name == b"content-length" and value.isdigit():
                length = int(value)
            headers.append((name, value))
    reason = responses.get(status, "").encode("ascii")
    if stream_ended:
        framing, length = "none", 0
    elif length >= 0:
        framing = "length"
    else:
        framing, length = "chunked", 0
    return ResponseHead(b"HTTP/2", status, reason, headers, framing, length)


class RateLimit:
    """Counts events in a sliding window of ``period`` seconds (a fixed-size bucket
    per period: cheap and good enough to spot a flood)."""

    def __init__(self, limit: int, period: float, now: Callable[[], float]) -> None:
        self.limit = limit
        self.period = period
        self._now = now
        self._start = now()
        self._count = 0

    def hit(self) -> bool:
        """Count one event; True when the limit is exceeded."""
        now = self._now()
        if now - self._start >= self.period:
            self._start, self._count = now, 0
        self._count += 1
        return self._count > self.limit


def negotiated_protocol(transport: object) -> bytes | None:
    """The ALPN protocol of a TLS connection, or None."""
    try:
        return transport.getHandle().get_alpn_proto_negotiated() or None  # type: ignore[attr-defined]
    except AttributeError:
        return None
