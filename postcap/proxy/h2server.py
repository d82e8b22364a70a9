"""HTTP/2 towards the client, after ALPN chose ``h2`` on intercepted TLS.

:class:`H2ServerLayer` wraps ``h2``'s sans-IO :class:`~h2.connection.H2Connection`
(bytes in, events out) for one client connection: each stream becomes an
:class:`H2ClientStream`, the :class:`~postcap.proxy.interfaces.IDownstream` of
one :class:`~postcap.proxy.exchange.Exchange`, so streams run concurrently and
an error costs its stream only.  The layer enforces the limits that keep one
connection from costing the process: concurrent streams, header list size,
and rates of resets (CVE-2023-44487), SETTINGS and PING frames; a connection
over a limit gets GOAWAY ENHANCE_YOUR_CALM and is closed.
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

from postcap.proxy.exchange import Exchange
from postcap.proxy.framing import ProtocolError, RawHeaders, RequestHead, ResponseHead
from postcap.proxy.h2common import (
    GracefulH2Connection,
    Outbound,
    RateLimit,
    StreamPauser,
    h2_fields,
    plain,
    request_head,
    trailer_fields,
)
from postcap.proxy.interfaces import IDownstream
from postcap.proxy.onboarding import ONBOARDING_HOST

if TYPE_CHECKING:
    from postcap.proxy.server import ProxyServerProtocol


@implementer(IDownstream)
class H2ClientStream:
    """One client stream: the request's source and the response's destination."""

    _log = Logger()

    def __init__(self, layer: "H2ServerLayer", stream_id: int) -> None:
        self.layer = layer
        self.stream_id = stream_id
        protocol = layer.protocol
        self.factory = protocol.factory
        self.client_address = protocol.client_address
        self.tls_info = protocol.tls_info
        self.pauser = StreamPauser(self._acknowledge)
        self.outbound = Outbound(layer.connection, stream_id, layer.flush)
        self.exchange: Exchange | None = None
        self.trailers: RawHeaders = []
        #: The exchange is over; the stream lingers while its last data waits for window.
        self.done = False

    def _acknowledge(self, size: int) -> None:
        self.layer.connection.acknowledge_received_data(size, self.stream_id)
        self.layer.flush()

    # -- IDownstream -----------------------------------------------------------------

    def send_informational(self, request_head: RequestHead, head: ResponseHead) -> None:
        """1xx responses end at the proxy (HTTP/2 clients get the final one only)."""

    def send_response_head(self, exchange: Exchange, head: ResponseHead, headers: RawHeaders) -> None:
        fields = [(b":status", b"%d" % head.status)] + h2_fields(headers)
        # No body (e.g. a gRPC trailers-only answer): the HEADERS frame ends the stream.
        bodiless = head.framing == "none"
        self.layer.send_headers(self.stream_id, fields, end_stream=bodiless)
        if bodiless:
            self.outbound.closed = True

    def send_data(self, data: bytes) -> None:
        self.outbound.send_data(data)

    def send_end(self, trailers: RawHeaders) -> None:
        self.outbound.send_end(trailer_fields(trailers))

    def register_producer(self, producer: Any) -> None:
        if self.layer.transport_paused:
            producer.pause("h2-transport")
        self.outbound.set_producer(producer)

    def unregister_producer(self) -> None:
        producer = self.outbound.producer
        if producer is not None:
            producer.resume("h2-transport")
        self.outbound.set_producer(None)

    def send_error(
        self, status: int, kind: str, message: str, keep_alive: bool = True, url: str | None = None
    ) -> None:
        """A proxy-made error as this stream's response (the connection goes on)."""
        self.factory.count_error(kind)
        if self.exchange is None:
            self.factory.tally.request_answered(status, "HTTP/2")  # else the exchange counts it
        self._log.info(
            "{status} {kind} to client {client}{for_url}: {message}",
            status=status, kind=kind, client=self.client_address.host, message=message,
            for_url="" if url is None else f" for {url}",
        )
        body = f"postcap: {message}\n".encode("utf-8")
        self.layer.send_headers(self.stream_id, [
            (b":status", b"%d" % status),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"x-postcap-error", kind.encode("ascii")),
        ])
        self.outbound.send_data(body)
        self.outbound.send_end([])
        if self.exchange is None:
            self.layer.stream_done(self)

    def cut(self) -> None:
        self.outbound.close()
        self.layer.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)

    def exchange_finished(self, exchange: Exchange) -> None:
        self.layer.stream_done(self)


@implementer(IPushProducer)
class H2ServerLayer:
    """The HTTP/2 server side of one client connection."""

    _log = Logger()
    max_concurrent_streams = 100
    max_header_list_size = 64 * 1024
    #: Per-stream receive window: what one paused stream may hold in memory.
    initial_window_size = 256 * 1024
    #: Receive window of the whole connection: room for every stream's window, so that
    #: streams whose readers stall (unacknowledged data) never hold up the others.
    connection_window_size = max_concurrent_streams * initial_window_size
    #: Stream resets by the client allowed per ``rate_period`` (rapid reset, CVE-2023-44487).
    max_resets = 200
    #: SETTINGS frames and PINGs allowed per ``rate_period``.
    max_settings = 100
    max_pings = 100
    rate_period = 10.0

    def __init__(self, protocol: "ProxyServerProtocol") -> None:
        self.protocol = protocol
        reactor = protocol.factory.reactor
        self.reactor = reactor
        connection = GracefulH2Connection(H2Configuration(
            client_side=False, header_encoding=None,
            # What goes out is built by h2_fields from parsed, validated HTTP/1 heads.
            validate_outbound_headers=False,
        ))
        connection.local_settings = Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: self.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: self.max_header_list_size,
            SettingCodes.INITIAL_WINDOW_SIZE: self.initial_window_size,
        })
        connection.decoder.max_header_list_size = self.max_header_list_size
        self.connection = connection
        self.streams: dict[int, H2ClientStream] = {}
        self.transport_paused = False
        self.closing = False
        self._reset_rate = RateLimit(self.max_resets, self.rate_period, reactor.seconds)
        self._settings_rate = RateLimit(self.max_settings, self.rate_period, reactor.seconds)
        self._ping_rate = RateLimit(self.max_pings, self.rate_period, reactor.seconds)
        self._idle_timer: IDelayedCall | None = None

    def start(self) -> None:
        connection = self.connection
        connection.initiate_connection()
        connection.increment_flow_control_window(
            self.connection_window_size - connection.inbound_flow_control_window
        )
        self.protocol.transport.registerProducer(self, True)
        self.flush()
        self._arm_idle_timer()

    # -- bytes in ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.protocol._closing:
            return
        try:
            events = self.connection.receive_data(data)
        except H2ProtocolError as exc:
            self._log.info("HTTP/2 protocol error from client {client}: {error}",
                           client=self.protocol.client_address.host, error=str(exc) or type(exc).__name__)
            self.protocol.factory.count_error("h2-protocol")
            self.flush()  # h2 queued the GOAWAY
            self.protocol.close()
            return
        for event in events:
            if self.protocol._closing:
                return
            self._dispatch(event)
        self.flush()

    def _dispatch(self, event: ev.Event) -> None:
        if isinstance(event, ev.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is None or stream.exchange is None:
                self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                return
            stream.exchange.request_data(event.data)
            stream.pauser.received(event.flow_controlled_length)
        elif isinstance(event, ev.RequestReceived):
            self._request(event)
        elif isinstance(event, ev.TrailersReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.trailers = plain(event.headers)
        elif isinstance(event, ev.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.exchange is not None:
                stream.exchange.request_end(stream.trailers)
        elif isinstance(event, ev.WindowUpdated):
            self._window_updated(event.stream_id)
        elif isinstance(event, ev.StreamReset):
            self._stream_reset(event.stream_id)
        elif isinstance(event, ev.RemoteSettingsChanged):
            if self._settings_rate.hit():
                self._calm_down("SETTINGS flood")
            else:
                self._window_updated(0)
        elif isinstance(event, ev.PingReceived):
            if self._ping_rate.hit():
                self._calm_down("PING flood")
        elif isinstance(event, ev.ConnectionTerminated):
            # The client goes away: a graceful GOAWAY lets its open streams finish.
            self.closing = True
            if event.error_code == ErrorCodes.NO_ERROR:
                self._close_if_done()
            else:
                self.protocol.close()

    def _request(self, event: ev.RequestReceived) -> None:
        stream_id = event.stream_id
        if self.closing:
            self.reset(stream_id, ErrorCodes.REFUSED_STREAM)  # draining: the client may retry elsewhere
            return
        stream = H2ClientStream(self, stream_id)
        self.streams[stream_id] = stream
        self._cancel_idle_timer()
        try:
            head = request_head(plain(event.headers), event.stream_ended)
        except ValueError as exc:
            stream.send_error(400, "bad-request", str(exc))
            return
        protocol = self.protocol
        loop = protocol._loop_reason(head)
        if loop is not None:
            stream.send_error(508, "loop", loop)
            return
        try:
            target = protocol._target(head)  # the tunnel's origin, or reverse mode's upstream
        except ProtocolError as exc:
            stream.send_error(exc.status, "bad-request", exc.reason)
            return
        refusal = protocol.refusal_for(target.origin)
        if refusal is not None:
            stream.send_error(*refusal)
            return
        if target.origin.host == ONBOARDING_HOST and protocol.factory.settings.reverse is None:
            stream.send_error(421, "misdirected", "the certificate page is served over HTTP/1.1")
            return
        ticket = protocol.factory.recorder.begin(head.method.decode("latin-1"), target.url)
        exchange = Exchange(stream, head, target, ticket)
        stream.exchange = exchange
        exchange.start()
        if event.stream_ended and not exchange.request_done:
            exchange.request_end([])

    def _window_updated(self, stream_id: int) -> None:
        streams = [self.streams.get(stream_id)] if stream_id else list(self.streams.values())
        for stream in streams:
            if stream is None:
                continue
            stream.outbound.window_opened()
            if stream.done and not stream.outbound.waiting:
                self.stream_done(stream)

    def _stream_reset(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if self._reset_rate.hit():
            self._calm_down("too many stream resets (rapid reset)")
        if stream is None:
            return
        stream.outbound.close()
        stream.pauser.release()
        if stream.exchange is not None:
            stream.exchange.client_gone()
        self._arm_idle_timer()

    def _calm_down(self, why: str) -> None:
        """A peer over one of the rate limits: GOAWAY ENHANCE_YOUR_CALM and close."""
        self._log.warn("HTTP/2 client {client} closed: {why}", client=self.protocol.client_address.host, why=why)
        self.protocol.factory.count_error("h2-flood")
        try:
            self.connection.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, why.encode("ascii"))
        except H2ProtocolError:
            pass
        self.flush()
        self.protocol.close()

    # -- bytes out ----------------------------------------------------------------------

    def flush(self) -> None:
        data = self.connection.data_to_send()
        if data:
            self.protocol.transport.write(data)

    def send_headers(self, stream_id: int, fields: RawHeaders, end_stream: bool = False) -> None:
        try:
            self.connection.send_headers(stream_id, fields, end_stream=end_stream)
        except H2ProtocolError:
            return
        self.flush()

    def reset(self, stream_id: int, code: ErrorCodes) -> None:
        try:
            self.connection.reset_stream(stream_id, code)
        except H2ProtocolError:
            pass
        self.flush()

    def stream_done(self, stream: H2ClientStream) -> None:
        """The stream's exchange ended: forget it once its last data is out."""
        stream.done = True
        stream.pauser.release()
        if stream.outbound.waiting:
            return
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
        self._close_if_done()
        self._arm_idle_timer()

    # -- IPushProducer: the client's TCP connection is full ----------------------------

    def pauseProducing(self) -> None:
        self.transport_paused = True
        for stream in list(self.streams.values()):
            if stream.outbound.producer is not None:
                stream.outbound.producer.pause("h2-transport")  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:
        self.transport_paused = False
        for stream in list(self.streams.values()):
            if stream.outbound.producer is not None:
                stream.outbound.producer.resume("h2-transport")  # type: ignore[attr-defined]

    def stopProducing(self) -> None:
        """connectionLost follows."""

    # -- lifecycle ----------------------------------------------------------------------

    def drain(self) -> None:
        """Graceful stop: GOAWAY now, close once the open streams are done."""
        if not self.closing:
            self.closing = True
            self.connection.announce_goaway()
            self.flush()
        self._close_if_done()

    def _close_if_done(self) -> None:
        if self.closing and not self.streams and not self.protocol._closing:
            try:
                self.connection.close_connection(ErrorCodes.NO_ERROR)
            except H2ProtocolError:
                pass
            self.flush()
            self.protocol.close()

    def connection_lost(self) -> None:
        self._cancel_idle_timer()
        streams, self.streams = list(self.streams.values()), {}
        for stream in streams:
            stream.outbound.close()
            if stream.exchange is not None:
                stream.exchange.client_gone()

    def _arm_idle_timer(self) -> None:
        if self.streams or self.protocol._closing:
            return
        self._cancel_idle_timer()
        self._idle_timer = self.reactor.callLater(
            self.protocol.factory.settings.idle_timeout, self._idle_expired
        )

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = None

    def _idle_expired(self) -> None:
        self._idle_timer = None
        if not self.streams:
            self.drain()
