"""Upstream HTTP/1.1 connections: a raw client protocol and a keep-alive pool.

The protocol does no buffering of its own: it parses the response with
:class:`~postcap.proxy.framing.MessageParser` and hands events to the one
listener (an exchange) attached to it.  The pool keeps idle connections per
:class:`Origin`, bounded in number and idle time.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable, Protocol as TypingProtocol, Union

from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    INegotiated,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from postcap.metrics import Tally
from postcap.proxy.framing import Event, MessageParser, ProtocolError, RawHeaders
from postcap.proxy.h2common import ALPN_H2
from postcap.proxy.h2upstream import H2UpstreamConnection, H2UpstreamStream
from postcap.proxy.own import OwnEndpointRefused
from postcap.proxy.wire import TransportPauser, chunk, format_headers, last_chunk
from postcap.tls.client import describe_tls_failure


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host (without brackets) and port."""

    scheme: str
    host: str
    port: int

    @property
    def default_port(self) -> int:
        return 443 if self.scheme == "https" else 80

    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == self.default_port else f"{host}:{self.port}"


class UpstreamError(Exception):
    """An upstream failure the proxy answers itself: ``status`` 502 or 504."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def describe_connect_failure(origin: Origin, failure: Failure) -> UpstreamError:
    """Map a connection failure to the status and words the proxy answers with."""
    where = f"{origin.host}:{origin.port}"
    if failure.check(ierror.DNSLookupError):
        return UpstreamError(502, "dns", f"could not resolve host {origin.host!r}")
    if failure.check(ierror.ConnectionRefusedError):
        return UpstreamError(502, "refused", f"connection refused by {where}")
    if failure.check(ierror.TimeoutError, ierror.UserError) or failure.check(
        ierror.ConnectingCancelledError
    ):
        return UpstreamError(504, "connect-timeout", f"timed out connecting to {where}")
    if failure.check(OwnEndpointRefused):
        return UpstreamError(403, "own-endpoint", f"{where} is postcap's own control endpoint; "
                             "it is not reachable through the proxy")
    reason = failure.getErrorMessage() or failure.type.__name__
    return UpstreamError(502, "connect", f"could not connect to {where}: {reason}")


class ResponseListener(TypingProtocol):
    def upstream_events(self, events: list[Event]) -> None: ...

    def upstream_failed(self, error: UpstreamError) -> None: ...


class UpgradedReceiver(TypingProtocol):
    def from_upstream(self, data: bytes) -> None: ...

    def upstream_lost(self) -> None: ...


@implementer(IHandshakeListener)
class UpstreamProtocol(Protocol):
    """One upstream connection; serves one exchange at a time."""

    _log = Logger()

    def __init__(self, pool: "UpstreamPool", origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.parser = MessageParser(is_request=False)
        self.listener: ResponseListener | None = None
        self.requests_served = 0
        self.connected = False
        self.idle_timer: IDelayedCall | None = None
        self.connected_at: float | None = None
        self.handshake_at: float | None = None
        #: This connection's local address, registered with the pool for loop detection.
        self.local_key: ConnectionKey | None = None
        #: Why certificate verification failed, in words (set by the TLS verify callback).
        self.tls_verify_error: str | None = None
        #: Set when the origin chose HTTP/2 by ALPN: it owns the connection.
        self.h2: H2UpstreamConnection | None = None
        self._ready: Deferred[UpstreamProtocol] | None = None
        self._ready_timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self.connected = True
        self.connected_at = self.pool.now()
        send_immediately(self.transport)
        self.local_key = self.pool.own_connection_made(self.transport)

    def handshakeCompleted(self) -> None:
        """IHandshakeListener: the upstream TLS handshake finished; HTTP/2 takes
        over if the origin chose it."""
        self.handshake_at = self.pool.now()
        if getattr(self.transport, "negotiatedProtocol", None) == ALPN_H2:
            self.h2 = H2UpstreamConnection(self)
            self.h2.start()
        self._fire_ready(None)

    def when_ready(self, timeout: float) -> "Deferred[UpstreamProtocol]":
        """Fires with this protocol once its TLS handshake is done (the ALPN choice is
        known), or fails with the UpstreamError the proxy answers with."""
        if self.handshake_at is not None:
            return succeed(self)
        if not self.connected:
            return fail(UpstreamError(502, "closed", "upstream closed the connection during the TLS handshake"))
        self._ready = Deferred()
        self._ready_timer = self.pool.reactor.callLater(timeout, self._handshake_timed_out, timeout)
        return self._ready

    def _handshake_timed_out(self, timeout: float) -> None:
        self._ready_timer = None
        self._fire_ready(UpstreamError(
            504, "connect-timeout",
            f"TLS handshake with {self.origin.host}:{self.origin.port} did not finish within {timeout:g} s",
        ))
        self.transport.abortConnection()

    def _fire_ready(self, error: UpstreamError | None) -> None:
        if self._ready_timer is not None and self._ready_timer.active():
            self._ready_timer.cancel()
        self._ready_timer = None
        ready, self._ready = self._ready, None
        if ready is None:
            return
        if error is None:
            ready.callback(self)
        else:
            ready.errback(error)

    def attach(self, listener: ResponseListener, method: bytes) -> "TransportPauser":
        """IUpstreamChannel: serve ``listener``; the pauser stops reading this connection."""
        self.listener = listener
        self.requests_served += 1
        self.parser.next(method)
        return TransportPauser(self.transport)

    def detach(self) -> None:
        self.listener = None

    # -- IUpstreamChannel: the request as HTTP/1.1 bytes ----------------------------

    is_stream = False
    _chunked = False

    def send_head(self, method: bytes, target: bytes, headers: RawHeaders, framing: str) -> None:
        self._chunked = framing == "chunked"
        if self._chunked:
            headers = headers + [(b"Transfer-Encoding", b"chunked")]
        self.transport.write(b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, format_headers(headers)))

    def send_body(self, data: bytes) -> None:
        self.transport.write(chunk(data) if self._chunked else data)

    def send_end(self, trailers: RawHeaders) -> None:
        if self._chunked:
            self.transport.write(last_chunk(trailers))

    def register_producer(self, producer: object) -> None:
        self.transport.registerProducer(producer, True)

    def unregister_producer(self) -> None:
        self.transport.unregisterProducer()

    def continue_after_informational(self) -> list[Event]:
        return self.parser.continue_after_informational()

    #: After a 101, what the connection's bytes and loss go to (see :meth:`take_over`).
    upgraded: "UpgradedReceiver | None" = None

    def take_over(self, receiver: "UpgradedReceiver") -> bytes:
        """Hand the connection to ``receiver`` (after a 101): later bytes go to its
        ``from_upstream``, the loss to its ``upstream_lost``.  Returns the bytes that
        came after the 101 head."""
        self.listener = None
        self.upgraded = receiver
        return self.parser.take_buffered()

    def dataReceived(self, data: bytes) -> None:
        self.pool.tally.bytes_downstream += len(data)
        if self.upgraded is not None:
            self.upgraded.from_upstream(data)
            return
        if self.h2 is not None:
            self.h2.data_received(data)
            return
        listener = self.listener
        if listener is None:
            # Bytes while idle: the server broke framing; never reuse this connection.
            self.pool.forget(self)
            self.transport.abortConnection()
            return
        try:
            events = self.parser.feed(data)
        except ProtocolError as exc:
            self.listener = None
            self.transport.abortConnection()
            listener.upstream_failed(
                UpstreamError(502, "bad-response", f"invalid response from upstream: {exc.reason}")
            )
            return
        if events:
            listener.upstream_events(events)

    def connectionLost(self, reason: Failure = ierror.ConnectionDone()) -> None:  # type: ignore[assignment]
        self.connected = False
        self.pool.forget(self)
        self.pool.own_connection_lost(self.local_key)
        if self._ready is not None:
            self._fire_ready(UpstreamError(502, "tls", describe_tls_failure(reason, self.tls_verify_error)))
        if self.h2 is not None:
            self.h2.connection_lost()
        if self.upgraded is not None:
            self.upgraded.upstream_lost()
            return
        listener, self.listener = self.listener, None
        if listener is None:
            return
        try:
            events = self.parser.feed_eof()
        except ProtocolError:
            events = []
        if events:
            listener.upstream_events(events)
        elif self.origin.scheme == "https" and self.handshake_at is None:
            listener.upstream_failed(
                UpstreamError(502, "tls", describe_tls_failure(reason, self.tls_verify_error))
            )
        else:
            listener.upstream_failed(
                UpstreamError(502, "closed", "upstream closed the connection before the response ended")
            )


@functools.lru_cache(maxsize=4096)
def _normalised(host: str, port: int) -> tuple[str, int]:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host, port
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address), port


ConnectionKey = tuple[tuple[str, int], tuple[str, int]]
#: What the pool hands an exchange: an HTTP/1.1 connection or an HTTP/2 stream.
Channel = Union[UpstreamProtocol, H2UpstreamStream]


def _address_key(transport: object) -> ConnectionKey | None:
    """(local, remote) addresses of a connection: a TCP connection is only identified by
    both (the same local port may serve connections to different peers)."""
    try:
        local = transport.getHost()  # type: ignore[attr-defined]
        remote = transport.getPeer()  # type: ignore[attr-defined]
    except Exception:
        return None
    ends = []
    for address in (local, remote):
        host, port = getattr(address, "host", None), getattr(address, "port", None)
        if not isinstance(host, str) or not isinstance(port, int):
            return None
        ends.append(_normalised(host, port))
    return ends[0], ends[1]


EndpointFactory = Callable[[Origin], IStreamClientEndpoint]


def send_immediately(transport: object) -> None:
    """Turn off Nagle's algorithm: small writes (a TLS session ticket, then a response
    head) must not wait for the peer's delayed ACK, which costs ~40 ms a connection."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        try:
            set_no_delay(True)
        except OSError:
            pass


def quiet_factory(build: Callable[[], Protocol]) -> Factory:
    """A client factory for one connection, without the "Starting factory" log lines
    that every upstream connection would otherwise write."""
    factory = Factory.forProtocol(build)
    factory.noisy = False
    return factory


class UpstreamPool:
    """Keep-alive connections per origin, with bounds on idle count and time."""

    _log = Logger()
    #: As many as a busy client keeps open: a lower bound than the clients' own
    #: concurrency makes every release past it close a connection that the next
    #: request then opens again (a TCP and maybe a TLS handshake per request).
    max_idle_per_origin = 256
    idle_timeout = 30.0
    #: Origins whose ALPN choice is remembered.
    max_known_origins = 1024

    def __init__(
        self,
        reactor: IReactorTime,
        connect_timeout: float = 10.0,
        endpoint_factory: EndpointFactory | None = None,
        tunnel_endpoint_factory: EndpointFactory | None = None,
        http11_endpoint_factory: EndpointFactory | None = None,
    ) -> None:
        self._reactor = reactor
        self.reactor = reactor
        self.connect_timeout = connect_timeout
        self._endpoint_factory = endpoint_factory or self._tcp_endpoint
        self._tunnel_endpoint_factory = tunnel_endpoint_factory or self._endpoint_factory
        #: Connections that must speak HTTP/1.1 (an Upgrade request: HTTP/2 has none).
        self._http11_endpoint_factory = http11_endpoint_factory or self._endpoint_factory
        self._idle: dict[Origin, list[UpstreamProtocol]] = {}
        #: Upstream HTTP/2 connections per origin, shared by concurrent exchanges.
        self._shared: dict[Origin, list[UpstreamProtocol]] = {}
        #: Whether each recently reached HTTPS origin chose HTTP/2 by ALPN.
        self._speaks_h2: OrderedDict[Origin, bool] = OrderedDict()
        #: Exchanges waiting for the first connection to an origin whose ALPN is not known yet.
        self._waiting: dict[Origin, list[Deferred[None]]] = {}
        self._closing = False
        #: Local (host, port) of every open upstream connection, to recognise loops.
        self._own_addresses: set[ConnectionKey] = set()
        #: Running totals (bytes received from upstreams); the proxy gives its own.
        self.tally = Tally()

    def _tcp_endpoint(self, origin: Origin) -> IStreamClientEndpoint:
        return HostnameEndpoint(self._reactor, origin.host, origin.port, timeout=self.connect_timeout)

    def now(self) -> float:
        return self._reactor.seconds()

    def own_connection_made(self, transport: object) -> ConnectionKey | None:
        """Remember the local address of an upstream connection postcap opened; returns
        the key to give :meth:`own_connection_lost` (the address is gone by then)."""
        key = _address_key(transport)
        if key is not None:
            self._own_addresses.add(key)
        return key

    def own_connection_lost(self, key: ConnectionKey | None) -> None:
        if key is not None:
            self._own_addresses.discard(key)

    def is_own_connection(self, client: tuple[str, int], local: tuple[str, int]) -> bool:
        """Whether the client connection ``client`` → ``local`` is the far end of one of
        postcap's own upstream connections (a request that looped back to the proxy)."""
        return (_normalised(*client), _normalised(*local)) in self._own_addresses

    def endpoint_for(self, origin: Origin) -> IStreamClientEndpoint:
        """A raw endpoint to ``origin`` outside the pool (for tunnels)."""
        return self._tunnel_endpoint_factory(origin)

    def acquire(self, origin: Origin, http11_only: bool = False) -> Deferred[tuple[Channel, bool]]:
        """A channel to ``origin`` (a connection, or a stream of a shared HTTP/2
        connection) and whether its connection is a reused one.  ``http11_only``:
        an HTTP/1.1 connection, never a stream (for requests that upgrade it)."""
        if not http11_only:
            for shared in self._shared.get(origin, ()):
                if shared.h2 is not None and shared.h2.has_room:
                    return succeed((shared.h2.open_stream(), True))
        idle = self._idle.get(origin)
        while idle:
            protocol = idle.pop()
            self._cancel_idle_timer(protocol)
            if protocol.connected:
                return succeed((protocol, True))
        if http11_only:
            factory = quiet_factory(lambda: UpstreamProtocol(self, origin))
            connecting = maybeDeferred(
                lambda: self._http11_endpoint_factory(origin).connect(factory))
            return connecting.addCallback(self._http11_channel)
        if origin.scheme == "https" and self._speaks_h2.get(origin) is not False:
            waiting = self._waiting.get(origin)
            if waiting is not None:
                # The first connection to it may turn out HTTP/2 and carry this exchange too.
                later: Deferred[None] = Deferred()
                waiting.append(later)
                return later.addCallback(lambda _: self.acquire(origin))
            self._waiting[origin] = []
            return self._connect(origin).addBoth(self._first_settled, origin)
        return self._connect(origin)

    def _connect(self, origin: Origin) -> Deferred[tuple[Channel, bool]]:
        factory = quiet_factory(lambda: UpstreamProtocol(self, origin))
        connecting = maybeDeferred(lambda: self._endpoint_factory(origin).connect(factory))
        return connecting.addCallback(self._first_channel)

    def _first_settled(self, result: Any, origin: Origin) -> Any:
        """The first connection to ``origin`` is up (or failed): the exchanges that
        waited for it acquire again (or fail the same way)."""
        for waiting in self._waiting.pop(origin, []):
            if isinstance(result, Failure):
                waiting.errback(result)
            else:
                waiting.callback(None)
        return result

    def _http11_channel(self, protocol: UpstreamProtocol) -> Any:
        """A connection opened with ALPN ``http/1.1`` alone, once its TLS is up
        (it says nothing of whether the origin speaks HTTP/2)."""
        if not INegotiated.providedBy(protocol.transport):
            return (protocol, False)
        return protocol.when_ready(self.connect_timeout).addCallback(lambda ready: (ready, False))

    def _first_channel(self, protocol: UpstreamProtocol) -> Any:
        if not INegotiated.providedBy(protocol.transport):
            return self._channel_of(protocol)
        # TLS: the origin's ALPN choice (HTTP/2 or not) is known once the handshake is done.
        return protocol.when_ready(self.connect_timeout).addCallback(self._channel_of)

    def _channel_of(self, protocol: UpstreamProtocol) -> tuple[Channel, bool]:
        speaks_h2 = self._speaks_h2
        speaks_h2[protocol.origin] = protocol.h2 is not None
        speaks_h2.move_to_end(protocol.origin)
        if len(speaks_h2) > self.max_known_origins:
            speaks_h2.popitem(last=False)
        if protocol.h2 is None:
            return (protocol, False)
        self._shared.setdefault(protocol.origin, []).append(protocol)
        return (protocol.h2.open_stream(), False)

    def release(self, protocol: Channel) -> None:
        """Return a connection whose last response ended cleanly and may persist."""
        if protocol.is_stream:
            protocol.finish(reset=False)  # type: ignore[union-attr]
            return
        assert isinstance(protocol, UpstreamProtocol)
        if protocol.parser.buffered:
            # Bytes past the end of the response: the server broke framing, and they
            # would be taken for the start of the next response.
            self.discard(protocol)
            return
        protocol.detach()
        idle = self._idle.setdefault(protocol.origin, [])
        if self._closing or not protocol.connected or len(idle) >= self.max_idle_per_origin:
            protocol.transport.loseConnection()
            return
        idle.append(protocol)
        protocol.idle_timer = self._reactor.callLater(
            self.idle_timeout, self._expire, protocol
        )

    def discard(self, protocol: Channel) -> None:
        """Close a connection that must not be reused (reset a stream)."""
        if protocol.is_stream:
            protocol.finish(reset=True)  # type: ignore[union-attr]
            return
        assert isinstance(protocol, UpstreamProtocol)
        protocol.detach()
        self.forget(protocol)
        if protocol.connected:
            protocol.transport.abortConnection()

    def forget(self, protocol: UpstreamProtocol) -> None:
        shared = self._shared.get(protocol.origin)
        if shared and protocol in shared:
            shared.remove(protocol)
        self._cancel_idle_timer(protocol)
        idle = self._idle.get(protocol.origin)
        if idle and protocol in idle:
            idle.remove(protocol)

    def _expire(self, protocol: UpstreamProtocol) -> None:
        protocol.idle_timer = None
        self.forget(protocol)
        protocol.transport.loseConnection()

    @staticmethod
    def _cancel_idle_timer(protocol: UpstreamProtocol) -> None:
        if protocol.idle_timer is not None and protocol.idle_timer.active():
            protocol.idle_timer.cancel()
        protocol.idle_timer = None

    @property
    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def close(self) -> None:
        """Close every idle connection and stop pooling."""
        self._closing = True
        for shared in list(self._shared.values()):
            for protocol in list(shared):
                if protocol.h2 is not None:
                    protocol.h2.close()
        for idle in list(self._idle.values()):
            for protocol in list(idle):
                self.forget(protocol)
                protocol.transport.loseConnection()
        self._idle.clear()
