"""HTTP/2 towards an origin that chose ``h2`` by ALPN.

One :class:`H2UpstreamConnection` per such TLS connection carries many
exchanges at once: each gets an :class:`H2UpstreamStream`, the
:class:`~postcap.proxy.interfaces.IUpstreamChannel` an
:class:`~postcap.proxy.exchange.Exchange` writes its request to (translated
from the HTTP/1-style head: ``Host`` becomes ``:authority``,
connection-specific fields go) and reads its response from (as
:mod:`~postcap.proxy.framing` events).  The pool hands out streams of a
connection while it has room under the origin's SETTINGS_MAX_CONCURRENT_STREAMS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import h2.events as ev
from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.settings import SettingCodes, Settings
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from postcap.proxy.framing import Data, EndOfMessage, Event, RawHeaders
from postcap.proxy.h2common import (
    GracefulH2Connection,
    Outbound,
    StreamPauser,
    h2_fields,
    plain,
    response_head,
    trailer_fields,
)
from postcap.proxy.interfaces import IUpstreamChannel

if TYPE_CHECKING:
    from postcap.proxy.upstream import ResponseListener, UpstreamProtocol

#: Stream ids left when a connection stops taking new streams (ids are never reused).
_LAST_STREAM_ID = 2**31 - 1 - 1000


@implementer(IUpstreamChannel)
class H2UpstreamStream:
    """One request/response stream on a shared upstream HTTP/2 connection."""

    is_stream = True

    def __init__(self, connection: "H2UpstreamConnection") -> None:
        self.connection = connection
        protocol = connection.protocol
        self.connected_at = protocol.connected_at
        self.handshake_at = protocol.handshake_at
        self.origin = protocol.origin
        self.stream_id: int | None = None
        self.listener: ResponseListener | None = None
        self.pauser = StreamPauser(self._acknowledge)
        self.outbound: Outbound | None = None
        self.trailers: RawHeaders = []
        self.response_ended = False
        self.closed = False

    def _acknowledge(self, size: int) -> None:
        if self.stream_id is not None:
            self.connection.h2.acknowledge_received_data(size, self.stream_id)
            self.connection.flush()

    # -- IUpstreamChannel -----------------------------------------------------------

    def attach(self, listener: "ResponseListener", method: bytes) -> StreamPauser:
        self.listener = listener
        return self.pauser

    def send_head(self, method: bytes, target: bytes, headers: RawHeaders, framing: str) -> None:
        connection = self.connection
        authority = next((v for k, v in headers if k.lower() == b"host"),
                         self.origin.authority().encode("ascii"))
        fields = [
            (b":method", method),
            (b":scheme", self.origin.scheme.encode("ascii")),
            (b":authority", authority),
            (b":path", target),
        ] + h2_fields(headers)
        stream_id = connection.h2.get_next_available_stream_id()
        self.stream_id = stream_id
        connection.by_id[stream_id] = self
        self.outbound = Outbound(connection.h2, stream_id, connection.flush)
        try:
            connection.h2.send_headers(stream_id, fields, end_stream=framing == "none")
        except H2ProtocolError as exc:
            self.outbound.close()
            connection.flush()
            self._failed(502, "h2-protocol", f"could not send the request over HTTP/2: {exc}")
            return
        if framing == "none":
            self.outbound.closed = True
        connection.flush()

    def send_body(self, data: bytes) -> None:
        if self.outbound is not None:
            self.outbound.send_data(data)

    def send_end(self, trailers: RawHeaders) -> None:
        if self.outbound is not None:
            self.outbound.send_end(trailer_fields(trailers))

    def register_producer(self, producer: Any) -> None:
        if self.outbound is None:
            return
        if self.connection.transport_paused:
            producer.pause("h2-transport")
        self.outbound.set_producer(producer)

    def unregister_producer(self) -> None:
        if self.outbound is None:
            return
        producer = self.outbound.producer
        if producer is not None:
            producer.resume("h2-transport")
        self.outbound.set_producer(None)

    def continue_after_informational(self) -> list[Event]:
        return []

    # -- ending --------------------------------------------------------------------

    def finish(self, reset: bool) -> None:
        """The exchange is done with this stream; reset it if it is still open."""
        if self.closed:
            return
        self.closed = True
        self.listener = None
        if self.outbound is not None:
            self.outbound.close()
        if reset and not self.response_ended and self.stream_id is not None:
            self.connection.reset(self.stream_id)
        self.pauser.release()
        self.connection.stream_closed(self)

    def _failed(self, status: int, kind: str, message: str) -> None:
        from postcap.proxy.upstream import UpstreamError

        listener, self.listener = self.listener, None
        if listener is not None:
            listener.upstream_failed(UpstreamError(status, kind, message))

    def _events(self, events: list[Event]) -> None:
        if self.listener is not None:
            self.listener.upstream_events(events)


@implementer(IPushProducer)
class H2UpstreamConnection:
    """The HTTP/2 client side of one upstream TLS connection, shared by many exchanges."""

    _log = Logger()
    #: Streams postcap opens at once on one connection (fewer if the origin says so).
    max_streams = 100
    #: Per-stream receive window: what one exchange with a stalled client may hold.
    initial_window_size = 256 * 1024
    #: Room for every stream's window: stalled streams never hold up the others.
    connection_window_size = max_streams * initial_window_size
    max_header_list_size = 256 * 1024

    def __init__(self, protocol: "UpstreamProtocol") -> None:
        self.protocol = protocol
        h2 = GracefulH2Connection(H2Configuration(
            client_side=True, header_encoding=None,
            # What goes out is built by h2_fields from parsed, validated HTTP/1 heads.
            validate_outbound_headers=False,
        ))
        h2.local_settings = Settings(client=True, initial_values={
            SettingCodes.ENABLE_PUSH: 0,
            SettingCodes.INITIAL_WINDOW_SIZE: self.initial_window_size,
            SettingCodes.MAX_HEADER_LIST_SIZE: self.max_header_list_size,
        })
        h2.decoder.max_header_list_size = self.max_header_list_size
        self.h2 = h2
        #: Streams handed out and not yet finished (some may not have an id yet).
        self.streams: set[H2UpstreamStream] = set()
        self.by_id: dict[int, H2UpstreamStream] = {}
        self.transport_paused = False
        self.closing = False
        self._idle_timer: IDelayedCall | None = None

    def start(self) -> None:
        h2 = self.h2
        h2.initiate_connection()
        h2.increment_flow_control_window(self.connection_window_size - h2.inbound_flow_control_window)
        self.protocol.transport.registerProducer(self, True)
        self.flush()

    @property
    def has_room(self) -> bool:
        return (
            not self.closing
            and self.protocol.connected
            and len(self.streams) < min(self.h2.remote_settings.max_concurrent_streams, self.max_streams)
            and self.h2.highest_outbound_stream_id < _LAST_STREAM_ID
        )

    def open_stream(self) -> H2UpstreamStream:
        self._cancel_idle_timer()
        stream = H2UpstreamStream(self)
        self.streams.add(stream)
        return stream

    # -- bytes in --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except H2ProtocolError as exc:
            self.flush()
            if self.closing and not self.streams:
                self.protocol.transport.loseConnection()  # late frames after our GOAWAY
                return
            self._log.info("HTTP/2 protocol error from upstream {origin}: {error}",
                           origin=self.protocol.origin.authority(), error=str(exc) or type(exc).__name__)
            self.protocol.transport.loseConnection()
            self._fail_all(f"invalid HTTP/2 from upstream: {exc}")
            return
        for event in events:
            self._dispatch(event)
        self.flush()

    def _dispatch(self, event: ev.Event) -> None:
        stream_id = getattr(event, "stream_id", 0)
        stream = self.by_id.get(stream_id) if stream_id else None
        if isinstance(event, ev.DataReceived):
            if stream is None or stream.listener is None:
                self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
                return
            stream._events([Data(event.data)])
            stream.pauser.received(event.flow_controlled_length)
        elif isinstance(event, (ev.ResponseReceived, ev.InformationalResponseReceived)):
            if stream is not None:
                ended = isinstance(event, ev.ResponseReceived) and event.stream_ended is not None
                stream._events([response_head(plain(event.headers), ended)])
        elif isinstance(event, ev.TrailersReceived):
            if stream is not None:
                stream.trailers = plain(event.headers)
        elif isinstance(event, ev.StreamEnded):
            if stream is not None:
                stream.response_ended = True
                stream._events([EndOfMessage(stream.trailers)])
        elif isinstance(event, ev.StreamReset):
            if stream is not None:
                stream.response_ended = True
                code = _code_name(event.error_code)
                stream._failed(502, "reset", f"upstream reset the HTTP/2 stream ({code})")
        elif isinstance(event, ev.WindowUpdated):
            targets = [stream] if stream_id else list(self.by_id.values())
            for target in targets:
                if target is not None and target.outbound is not None:
                    target.outbound.window_opened()
        elif isinstance(event, ev.RemoteSettingsChanged):
            for target in list(self.by_id.values()):
                if target.outbound is not None:
                    target.outbound.window_opened()
        elif isinstance(event, ev.ConnectionTerminated):
            self._goaway(event.last_stream_id, event.error_code)

    def _goaway(self, last_stream_id: int | None, error_code: Any) -> None:
        """The origin stops taking streams: those it never saw fail; after a graceful
        GOAWAY the rest finish, after an error GOAWAY they fail too."""
        self.closing = True
        self.protocol.pool.forget(self.protocol)
        graceful = error_code == ErrorCodes.NO_ERROR
        for stream in list(self.streams):
            unseen = stream.stream_id is None or (
                last_stream_id is not None and stream.stream_id > last_stream_id)
            if unseen or not graceful:
                stream._failed(502, "goaway",
                               f"upstream closed the HTTP/2 connection (GOAWAY {_code_name(error_code)})")
        self._close_if_done()

    # -- bytes out --------------------------------------------------------------------

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.protocol.connected:
            self.protocol.transport.write(data)

    def reset(self, stream_id: int) -> None:
        try:
            self.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
        except H2ProtocolError:
            pass
        self.flush()

    def stream_closed(self, stream: H2UpstreamStream) -> None:
        self.streams.discard(stream)
        if stream.stream_id is not None:
            self.by_id.pop(stream.stream_id, None)
        self._close_if_done()
        if not self.streams and not self.closing:
            self._arm_idle_timer()

    def _close_if_done(self) -> None:
        if self.closing and not self.streams and self.protocol.connected:
            try:
                self.h2.close_connection(ErrorCodes.NO_ERROR)  # no-op after the origin's GOAWAY
            except H2ProtocolError:
                pass
            self.flush()
            self.protocol.transport.loseConnection()

    # -- IPushProducer: the upstream's TCP connection is full -------------------------

    def pauseProducing(self) -> None:
        self.transport_paused = True
        for stream in list(self.by_id.values()):
            if stream.outbound is not None and stream.outbound.producer is not None:
                stream.outbound.producer.pause("h2-transport")  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:
        self.transport_paused = False
        for stream in list(self.by_id.values()):
            if stream.outbound is not None and stream.outbound.producer is not None:
                stream.outbound.producer.resume("h2-transport")  # type: ignore[attr-defined]

    def stopProducing(self) -> None:
        """connectionLost follows."""

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Take no new streams; GOAWAY and close once the streams in flight are done
        (h2 sends nothing after a GOAWAY, so it waits for them)."""
        if self.closing:
            return
        self.closing = True
        self._close_if_done()

    def connection_lost(self) -> None:
        self._cancel_idle_timer()
        self.closing = True
        self._fail_all("upstream closed the HTTP/2 connection before the response ended")

    def _fail_all(self, message: str) -> None:
        self.closing = True
        for stream in list(self.streams):
            stream._failed(502, "closed", message)

    def _arm_idle_timer(self) -> None:
        self._cancel_idle_timer()
        pool = self.protocol.pool
        self._idle_timer = pool.reactor.callLater(pool.idle_timeout, self._idle_expired)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = None

    def _idle_expired(self) -> None:
        self._idle_timer = None
        if not self.streams:
            self.protocol.pool.forget(self.protocol)
            self.close()


def _code_name(code: Any) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)
