"""The client-facing proxy: connections, request dispatch, access control, errors.

:class:`ProxyServerProtocol` adapts the sans-IO parser to a connection: it
runs one :class:`~postcap.proxy.exchange.Exchange` at a time (a pipelined
next request waits in the parser), answers the errors the proxy makes itself
with a short plain-text body, and enforces the header and idle timeouts.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IHandshakeListener
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from postcap.capture import Recorder, Spooler
from postcap.metrics import Tally
from postcap.model import Address, TLSInfo
from postcap.patterns import UserPattern
from postcap.proxy.exchange import Exchange
from postcap.proxy.framing import (
    Data,
    EndOfMessage,
    Event,
    MessageParser,
    ProtocolError,
    RequestHead,
    header_values,
)
from postcap.proxy.h1downstream import HTTP11Responder
from postcap.proxy.wire import TransportPauser, format_headers
from postcap.proxy.targets import Target, parse_absolute_target, parse_connect_target
from postcap.proxy.tunnel import BlindTunnel
from postcap.proxy.connector import UpstreamConnector
from postcap.proxy.onboarding import ONBOARDING_HOST, serve_onboarding
from postcap.proxy.admission import Admission
from postcap.proxy.own import OwnEndpoints
from postcap.proxy.reverse import ReverseTarget, client_tls_creator
from postcap.proxy.upstream import Origin, UpstreamPool, send_immediately
from postcap.proxy.h2common import ALPN_H2, negotiated_protocol
from postcap.proxy.h2server import H2ServerLayer
from postcap.tls.minting import InterceptingServerCreator, LeafMinter

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_ALLOW = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
)

REASONS = {
    400: b"Bad Request",
    403: b"Forbidden",
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
    508: b"Loop Detected",
}

#: The ``X-Postcap-Error`` kind of each status a malformed request gets.
PROTOCOL_ERROR_KINDS = {
    400: "bad-request",
    414: "uri-too-long",
    431: "headers-too-large",
    505: "http-version",
}


@dataclass(slots=True)
class ProxySettings:
    """Everything the proxy is configured with (mapped from the twistd options)."""

    max_capture_body: int = 10 * 1024 * 1024
    #: A WebSocket message larger than this closes its sender's connection (1009).
    max_websocket_message: int = 64 * 1024 * 1024
    upstream_timeout: float = 60.0
    connect_timeout: float = 10.0
    header_timeout: float = 30.0
    idle_timeout: float = 120.0
    allow: Sequence[IPNetwork] = field(
        default_factory=lambda: [ipaddress.ip_network(n) for n in DEFAULT_ALLOW]
    )
    via: bytes = b"1.1 postcap"
    upstream_proxy: Origin | None = None
    insecure_upstream: bool = False
    #: CONNECT hosts matching any of these are tunnelled blind (``--ignore-hosts``).
    ignore_hosts: Sequence[UserPattern] = ()
    #: Open connections one client address may hold (``--max-client-connections``).
    max_client_connections: int = 256
    #: Open proxy client connections in all (``--max-connections``); None: no cap.
    max_connections: int | None = None
    #: A request whose Via already lists postcap this many times is looping (508).
    max_via_hops: int = 4
    #: ``--mode reverse:URL``: the one server every request goes to; None: forward proxy.
    reverse: ReverseTarget | None = None
    #: The name a ``--reverse-tls`` leaf carries when the client sends no SNI.
    reverse_listen_host: str = "localhost"

    def ignores(self, host: str) -> bool:
        return any(pattern.search(host) for pattern in self.ignore_hosts)

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allow)


def tls_info_of(transport: object) -> TLSInfo | None:
    """The client's TLS connection to postcap, as the contract reports it."""
    try:
        connection = transport.getHandle()  # type: ignore[attr-defined]
        sni = connection.get_servername()
        return TLSInfo(
            sni=None if sni is None else sni.decode("utf-8", "replace"),  # as sent: A-labels
            version=connection.get_protocol_version_name(),
            cipher=connection.get_cipher_name(),
        )
    except (AttributeError, UnicodeError):
        return None


def error_response(status: int, kind: str, message: str, keep_alive: bool) -> bytes:
    """A proxy-made response: short plain text that names postcap and the cause."""
    body = f"postcap: {message}\n".encode("utf-8")
    headers = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"%d" % len(body)),
        (b"X-Postcap-Error", kind.encode("ascii")),
        (b"Connection", b"keep-alive" if keep_alive else b"close"),
    ]
    reason = REASONS.get(status, b"Error")
    return b"HTTP/1.1 %d %s\r\n%s\r\n%s" % (status, reason, format_headers(headers), body)


@implementer(IHandshakeListener)
class ProxyServerProtocol(HTTP11Responder, Protocol):
    """One client connection to the proxy."""

    _log = Logger()
    #: Pipelined bytes held while an exchange runs before the client is paused.
    max_pipelined_bytes = 64 * 1024
    #: The local address of the connection, once asked (see _own_address).
    _local: Any = None
    #: The HTTP version of the client's latest request (a metrics label).
    http_version = "HTTP/1.1"

    factory: "ProxyFactory"

    def __init__(self) -> None:
        self.parser = MessageParser(is_request=True)
        self.exchange: Exchange | None = None
        #: A CONNECT relayed blind, or a connection upgraded after a 101 (proxy/upgrade.py).
        self.tunnel: Any = None
        #: Set when the client chose HTTP/2 by ALPN on intercepted TLS: it owns the connection.
        self.h2: H2ServerLayer | None = None
        self.tls_info: TLSInfo | None = None
        #: Set once a CONNECT is intercepted: requests then arrive in origin-form over TLS.
        self.intercepted: Origin | None = None
        #: After a CONNECT is answered: the minter, until the first byte says TLS or plain HTTP.
        self._sniffing: LeafMinter | None = None
        self.client_address = Address("", 0)
        self._wait_timer: IDelayedCall | None = None
        self._waiting_for_header = False
        self._closing = False

    # -- connection lifecycle -----------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.client_address = Address(getattr(peer, "host", ""), getattr(peer, "port", 0))
        self.pauser = TransportPauser(self.transport)
        self._local = None
        send_immediately(self.transport)
        self.factory.connection_opened(self)
        if self.factory.reverse_tls is not None:
            self.transport.startTLS(self.factory.reverse_tls)
        self._await_request()

    def connectionLost(self, reason: Failure) -> None:
        self._closing = True
        self._cancel_wait_timer()
        if self.exchange is not None:
            self.exchange.client_gone()
        if self.tunnel is not None:
            self.tunnel.client_lost()
        if self.h2 is not None:
            self.h2.connection_lost()
        self.factory.connection_closed(self)

    def close(self) -> None:
        self._closing = True
        self._cancel_wait_timer()
        self.transport.loseConnection()

    # -- request parsing ------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self.factory.tally.bytes_upstream += len(data)
        if self.tunnel is not None:
            self.tunnel.from_client(data)
            return
        if self.h2 is not None:
            self.h2.data_received(data)
            return
        if self._closing:
            return
        if self._sniffing is not None and not self._sniff(data):
            return
        if self.exchange is not None and self.exchange.request_done:
            self.parser.feed(data)  # held until the exchange ends
            if self.parser.buffered > self.max_pipelined_bytes:
                self.pauser.pause("pipelined")
            return
        if self.parser.in_head and not self._waiting_for_header:
            self._arm_wait_timer(header=True)
        try:
            events = self.parser.feed(data)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        self._handle(events)

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if self._closing:
                return
            if isinstance(event, RequestHead):
                self._cancel_wait_timer()
                self._start(event)
            elif self.exchange is None:
                continue  # the rest of a request the proxy already answered
            elif isinstance(event, Data):
                self.exchange.request_data(event.data)
            elif isinstance(event, EndOfMessage):
                self.exchange.request_end(event.trailers)

    def _protocol_error(self, exc: ProtocolError) -> None:
        kind = PROTOCOL_ERROR_KINDS.get(exc.status, "bad-request")
        if self.exchange is not None and not self.exchange.finished:
            # The request body was malformed after the head was forwarded.
            self.exchange.fail_with_client_error(exc.reason)
            return
        self.send_error(exc.status, kind, exc.reason, keep_alive=False)

    def _start(self, head: RequestHead) -> None:
        self.http_version = head.version.decode("latin-1")
        loop = self._loop_reason(head)
        if loop is not None:
            self.send_error(508, "loop", loop, keep_alive=False)
            return
        reverse = self.factory.settings.reverse
        if head.method == b"CONNECT" and reverse is None:
            if self.intercepted is not None:
                self.send_error(400, "bad-request", "CONNECT inside an intercepted tunnel", keep_alive=False)
                return
            self._start_connect(head)
            return
        try:
            target = self._target(head)
        except ProtocolError as exc:
            self.send_error(exc.status, "bad-request", exc.reason, keep_alive=False)
            return
        if self._refused_target(target.origin):
            return
        if target.origin.host == ONBOARDING_HOST and reverse is None:
            serve_onboarding(self, head, target)
            return
        if target.origin.scheme != "http" and self.intercepted is None and reverse is None:
            self.send_error(501, "unsupported", "https:// URLs must be sent through CONNECT", keep_alive=False)
            return
        if (self.intercepted is not None or reverse is not None) and self.tls_info is None:
            self.tls_info = tls_info_of(self.transport)
        ticket = self.factory.recorder.begin(head.method.decode("latin-1"), target.url)
        self.exchange = Exchange(self, head, target, ticket)
        self.exchange.start()

    def _target(self, head: RequestHead) -> Target:
        """Where the request goes: in reverse mode the one upstream; else its absolute
        URL, or inside an intercepted tunnel the tunnel's origin with the origin-form path.
        Every protocol layer asks here, so reverse mode applies to all of them."""
        if self.factory.settings.reverse is not None:
            return self.factory.settings.reverse.resolve(head)
        if self.intercepted is None:
            return parse_absolute_target(head.target)
        if head.target.startswith(b"/"):
            return Target(self.intercepted, head.target)
        absolute = parse_absolute_target(head.target)
        return Target(self.intercepted, absolute.path)

    def _start_connect(self, head: RequestHead) -> None:
        try:
            origin = parse_connect_target(head.target)
        except ProtocolError as exc:
            self.send_error(exc.status, "bad-request", exc.reason, keep_alive=False)
            return
        if self._refused_target(origin):
            return
        minter = self.factory.minter
        if minter is None or self.factory.settings.ignores(origin.host):
            self.tunnel = BlindTunnel(self, head, origin)
            self.tunnel.start(self.parser.take_buffered())
            return
        self._intercept(head, origin, minter)

    def _intercept(self, head: RequestHead, origin: Origin, minter: LeafMinter) -> None:
        """Answer the CONNECT, terminate the client's TLS here and go on parsing
        the requests inside it."""
        early = self.parser.take_buffered()
        self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.intercepted = origin
        self._sniffing = minter
        self.parser = MessageParser(is_request=True)
        self._await_request()
        if early:
            self.factory.bytes_from_clients -= len(early)  # counted once already
            self.dataReceived(early)

    def _sniff(self, data: bytes) -> bool:
        """The first bytes inside a CONNECT: a TLS handshake record is intercepted (TLS
        terminated here); anything else is plain HTTP to the same host and port (how
        browsers send ws:// through a proxy).  True when ``data`` is plain HTTP to parse."""
        minter, self._sniffing = self._sniffing, None
        origin = self.intercepted
        assert minter is not None and origin is not None
        if data[:1] == b"\x16":
            self.transport.startTLS(InterceptingServerCreator(minter, origin.host))
            self.transport.protocol.dataReceived(data)
            return False
        self.intercepted = Origin("http", origin.host, origin.port)
        return True

    # -- HTTP/2 ---------------------------------------------------------------------

    def handshakeCompleted(self) -> None:
        """IHandshakeListener: the intercepted TLS is up; HTTP/2 takes over if ALPN chose it."""
        if negotiated_protocol(self.transport) == ALPN_H2:
            self.start_h2()

    def start_h2(self) -> None:
        self._cancel_wait_timer()
        self.tls_info = tls_info_of(self.transport)
        self.h2 = H2ServerLayer(self)
        self.h2.start()

    # -- loops ----------------------------------------------------------------------

    def _loop_reason(self, head: RequestHead) -> str | None:
        """Why this request is one postcap sent itself, or None."""
        own = self._own_address()
        if self.factory.pool.is_own_connection(
            (self.client_address.host, self.client_address.port),
            (getattr(own, "host", ""), getattr(own, "port", 0)),
        ):
            return "request came back to postcap from its own upstream connection"
        hops = sum(
            1 for entry in header_values(head.headers, b"via")
            if entry.split()[-1:] == self.factory.settings.via.split()[-1:]
        )
        if hops >= self.factory.settings.max_via_hops:
            return f"request already passed through postcap {hops} times (Via)"
        return None

    def _own_address(self) -> Any:
        """Where this client reached postcap (asked of the socket once per connection)."""
        if self._local is None:
            self._local = self.transport.getHost()
        return self._local

    def _refused_target(self, origin: Origin) -> bool:
        """Answer (and return True) when ``origin`` is postcap itself: its proxy port
        (a loop, 508) or another of its own endpoints such as the control port (403)."""
        refusal = self.refusal_for(origin)
        if refusal is None:
            return False
        self.send_error(*refusal, keep_alive=False)
        return True

    def refusal_for(self, origin: Origin) -> tuple[int, str, str] | None:
        """(status, kind, message) when ``origin`` is postcap itself, else None
        (every protocol layer asks here)."""
        if self._targets_self(origin):
            return 508, "loop", f"request to postcap's own address {origin.authority()}"
        if self.intercepted is None and self.factory.own.names(origin.host, origin.port):
            return (403, "own-endpoint", f"{origin.authority()} is postcap's own control "
                    "endpoint; it is not reachable through the proxy")
        return None

    def _targets_self(self, origin: Origin) -> bool:
        """Whether ``origin`` is the address this client reached postcap on."""
        own = self._own_address()
        if self.intercepted is not None or origin.port != getattr(own, "port", None):
            return False
        return origin.host in (getattr(own, "host", None), "0.0.0.0", "::")

    # -- answering ------------------------------------------------------------------

    def send_error(
        self, status: int, kind: str, message: str, keep_alive: bool, url: str | None = None
    ) -> None:
        """Answer with a proxy-made error (counted by kind and logged); close unless
        the framing allows going on."""
        self.factory.count_error(kind)
        if self.exchange is None and self.tunnel is None:
            self.factory.tally.request_answered(status, self.http_version)  # else they count it
        self._log.info(
            "{status} {kind} to client {client}{for_url}: {message}",
            status=status, kind=kind, client=self.client_address.host, message=message,
            for_url="" if url is None else f" for {url}",
        )
        self.transport.write(error_response(status, kind, message, keep_alive))
        if not keep_alive:
            self.close()

    def exchange_finished(self, exchange: Exchange) -> None:
        """Go on with the next request (keep-alive) or close."""
        if exchange is not self.exchange:
            return
        self.exchange = None
        if self._closing:
            return
        if self.factory.draining or not (exchange.client_keep_alive and exchange.request_done):
            self.close()
            return
        recorder = self.factory.recorder
        if exchange.ticket is not None and recorder.congested:
            # The history is behind: this client's next request waits until it catches up.
            self.pauser.pause("history")
            recorder.when_drained().addCallback(self._history_caught_up)
            return
        self._next_request()

    def _history_caught_up(self, _: object) -> None:
        self.pauser.resume("history")
        if not self._closing and self.exchange is None:
            self._next_request()

    def _next_request(self) -> None:
        self.pauser.resume("pipelined")
        self._await_request()
        try:
            events = self.parser.next()
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        self._handle(events)

    # -- timeouts -------------------------------------------------------------------

    def _await_request(self) -> None:
        self._arm_wait_timer(header=self.parser.buffered > 0)

    def _arm_wait_timer(self, header: bool) -> None:
        self._cancel_wait_timer()
        self._waiting_for_header = header
        settings = self.factory.settings
        delay = settings.header_timeout if header else settings.idle_timeout
        self._wait_timer = self.factory.reactor.callLater(delay, self._wait_expired)

    def _cancel_wait_timer(self) -> None:
        if self._wait_timer is not None and self._wait_timer.active():
            self._wait_timer.cancel()
        self._wait_timer = None
        self._waiting_for_header = False

    def _wait_expired(self) -> None:
        self._wait_timer = None
        if self._waiting_for_header:
            self.send_error(408, "header-timeout", "request headers not received in time", keep_alive=False)
        else:
            self.close()


class RefusedClientProtocol(Protocol):
    """Answers a refused client (see :mod:`postcap.proxy.admission`) and hangs up."""

    def __init__(self, status: int = 403, kind: str = "client-refused",
                 message: str = "your address is not allowed to use this proxy") -> None:
        self.answer = error_response(status, kind, message, False)

    def connectionMade(self) -> None:
        self.transport.write(self.answer)
        self.transport.loseConnection()


class ProxyFactory(ServerFactory):
    """Builds client connections and holds what they share."""

    _log = Logger()
    protocol = ProxyServerProtocol

    def __init__(
        self,
        reactor,  # type: ignore[no-untyped-def]
        settings: ProxySettings,
        recorder: Recorder,
        pool: UpstreamPool | None = None,
        spooler: Spooler | None = None,
        minter: LeafMinter | None = None,
        tally: Tally | None = None,
        own: OwnEndpoints | None = None,
    ) -> None:
        self.reactor = reactor
        #: Running totals for the metrics (see postcap.metrics).
        self.tally = tally if tally is not None else Tally()
        self.settings = settings
        self.recorder = recorder
        #: postcap's own listening endpoints (control, metrics): never a proxy target.
        self.own = own if own is not None else OwnEndpoints()
        #: Builds upstream endpoints with the proxy's TLS and --upstream-proxy rules.
        self.connector = UpstreamConnector(
            reactor,
            settings.connect_timeout,
            insecure=settings.insecure_upstream,
            upstream_proxy=settings.upstream_proxy,
            own=self.own,
        )
        if pool is None:
            pool = UpstreamPool(
                reactor,
                settings.connect_timeout,
                endpoint_factory=self.connector.endpoint,
                tunnel_endpoint_factory=self.connector.tunnel_endpoint,
                http11_endpoint_factory=self.connector.http11_endpoint,
            )
        self.pool = pool
        pool.tally = self.tally
        self.spooler = spooler
        #: Mints certificates for intercepted hosts; None tunnels every CONNECT blind.
        self.minter = minter
        #: TLS towards reverse-mode clients (``--certs``/``--reverse-tls``); None: plain.
        self.reverse_tls = client_tls_creator(settings.reverse, minter, settings.reverse_listen_host)
        self.connections: set[ProxyServerProtocol] = set()
        #: Who may connect: --allow, the per-address and the global connection caps.
        self.admission = Admission(reactor, settings)
        self.errors: Counter[str] = Counter()
        self.refused = 0
        self.transactions = 0
        self.draining = False
        self._drained: list[Deferred[None]] = []

    def buildProtocol(self, addr: IAddress) -> Protocol | None:
        refusal = self.admission.refusal(getattr(addr, "host", ""), len(self.connections))
        if refusal is None:
            return super().buildProtocol(addr)
        self.refused += 1
        if refusal.kind != "client-refused":
            self.count_error(refusal.kind)
        protocol = RefusedClientProtocol(refusal.status, refusal.kind, refusal.message)
        protocol.factory = self
        return protocol

    def count_error(self, kind: str) -> None:
        self.errors[kind] += 1

    def counters(self) -> dict[str, object]:
        """Running totals for ``server.info``: connections, exchanges, errors by kind, bytes."""
        return {
            "open_connections": len(self.connections),
            "transactions": self.transactions,
            "errors": dict(sorted(self.errors.items())),
            "refused_clients": self.refused,
            "bytes_from_clients": self.tally.bytes_upstream,
            "bytes_from_upstreams": self.tally.bytes_downstream,
        }

    def connection_opened(self, protocol: ProxyServerProtocol) -> None:
        self.connections.add(protocol)
        self.admission.opened(protocol.client_address.host)
        self.tally.connection_opened("client")

    def connection_closed(self, protocol: ProxyServerProtocol) -> None:
        if protocol in self.connections:
            self.tally.connection_closed("client")
            self.admission.closed(protocol.client_address.host)
        self.connections.discard(protocol)
        if not self.connections:
            drained, self._drained = self._drained, []
            for waiting in drained:
                waiting.callback(None)

    def drain(self, timeout: float) -> Deferred[None]:
        """Close idle connections, let busy ones finish, abort what is left after ``timeout``."""
        self.draining = True
        for protocol in list(self.connections):
            if protocol.h2 is not None:
                protocol.h2.drain()
            elif protocol.exchange is None and protocol.tunnel is None:
                protocol.close()
            elif getattr(protocol.tunnel, "going_away", None) is not None:
                protocol.tunnel.going_away()  # WebSockets get a 1001 close
        if not self.connections:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._drained.append(waiting)

        def abort_rest() -> None:
            for protocol in list(self.connections):
                protocol.transport.abortConnection()

        timer = self.reactor.callLater(timeout, abort_rest)
        waiting.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return waiting
