"""Upstream HTTP/1.1 connections: a raw client protocol and a keep-alive pool.

The protocol does no buffering of its own: it parses the response with
:class:`~postcap.proxy.framing.MessageParser` and hands events to the one
listener (an exchange) attached to it.  The pool keeps idle connections per
:class:`Origin`, bounded in number and idle time.
"""

from __future__ import annotations

import functools

import ipaddress
from dataclasses import dataclass
from typing import Callable, Protocol as TypingProtocol

from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from postcap.metrics import Tally
from postcap.proxy.framing import Event, MessageParser, ProtocolError
from postcap.proxy.own import OwnEndpointRefused
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

    def connectionMade(self) -> None:
        self.connected = True
        self.connected_at = self.pool.now()
        send_immediately(self.transport)
        self.local_key = self.pool.own_connection_made(self.transport)

    def handshakeCompleted(self) -> None:
        """IHandshakeListener: the upstream TLS handshake finished."""
        self.handshake_at = self.pool.now()

    def attach(self, listener: ResponseListener, method: bytes) -> None:
        self.listener = listener
        self.requests_served += 1
        self.parser.next(method)

    def detach(self) -> None:
        self.listener = None

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

    def __init__(
        self,
        reactor: IReactorTime,
        connect_timeout: float = 10.0,
        endpoint_factory: EndpointFactory | None = None,
        tunnel_endpoint_factory: EndpointFactory | None = None,
    ) -> None:
        self._reactor = reactor
        self.connect_timeout = connect_timeout
        self._endpoint_factory = endpoint_factory or self._tcp_endpoint
        self._tunnel_endpoint_factory = tunnel_endpoint_factory or self._endpoint_factory
        self._idle: dict[Origin, list[UpstreamProtocol]] = {}
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

    def acquire(self, origin: Origin) -> Deferred[tuple[UpstreamProtocol, bool]]:
        """A connected protocol for ``origin`` and whether it is a reused one."""
        idle = self._idle.get(origin)
        while idle:
            protocol = idle.pop()
            self._cancel_idle_timer(protocol)
            if protocol.connected:
                return succeed((protocol, True))
        factory = quiet_factory(lambda: UpstreamProtocol(self, origin))
        connecting = maybeDeferred(lambda: self._endpoint_factory(origin).connect(factory))
        return connecting.addCallback(lambda protocol: (protocol, False))

    def release(self, protocol: UpstreamProtocol) -> None:
        """Return a connection whose last response ended cleanly and may persist."""
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

    def discard(self, protocol: UpstreamProtocol) -> None:
        """Close a connection that must not be reused."""
        protocol.detach()
        self.forget(protocol)
        if protocol.connected:
            protocol.transport.abortConnection()

    def forget(self, protocol: UpstreamProtocol) -> None:
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
        for idle in list(self._idle.values()):
            for protocol in list(idle):
                self.forget(protocol)
                protocol.transport.loseConnection()
        self._idle.clear()
