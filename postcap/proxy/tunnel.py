"""CONNECT as a blind tunnel: bytes relayed both ways, only sizes and times recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from postcap.model import Address, Body, Request, Response, Timings, Transaction, new_id
from postcap.proxy.exchange import TransportPauser
from postcap.proxy.framing import RequestHead
from postcap.proxy.upstream import Origin, describe_connect_failure, quiet_factory

if TYPE_CHECKING:
    from postcap.proxy.server import ProxyServerProtocol


class _TunnelUpstream(Protocol):
    def __init__(self, tunnel: "BlindTunnel") -> None:
        self.tunnel = tunnel
        self.pool = tunnel.client.factory.pool
        self.local_key: object = None

    def connectionMade(self) -> None:
        self.local_key = self.pool.own_connection_made(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.pool.tally.bytes_downstream += len(data)
        self.tunnel.from_upstream(data)

    def connectionLost(self, reason: Failure) -> None:
        self.pool.own_connection_lost(self.local_key)
        self.tunnel.upstream_lost()


class BlindTunnel:
    """Relays a CONNECT'ed connection without looking inside it."""

    _log = Logger()

    def __init__(self, client: "ProxyServerProtocol", head: RequestHead, origin: Origin) -> None:
        self.client = client
        self.head = head
        self.origin = origin
        self.reactor = client.factory.reactor
        self.id = new_id()
        self.started_at = self.reactor.seconds()
        self.connected_at: float | None = None
        self.upstream: _TunnelUpstream | None = None
        self.sent = 0
        self.received = 0
        self._pending: list[bytes] = []
        self.finished = False
        host = f"[{origin.host}]" if ":" in origin.host else origin.host
        self.url = f"{host}:{origin.port}"

    def start(self, buffered: bytes) -> None:
        if buffered:
            self._pending.append(buffered)
            self.sent += len(buffered)
        self.client.pauser.pause("connecting")
        endpoint = self.client.factory.pool.endpoint_for(self.origin)
        connecting = endpoint.connect(quiet_factory(lambda: _TunnelUpstream(self)))
        connecting.addCallbacks(self._connected, self._failed)

    def _connected(self, upstream: _TunnelUpstream) -> None:
        if self.finished:
            upstream.transport.loseConnection()
            return
        self.upstream = upstream
        self.connected_at = self.reactor.seconds()
        tally = self.client.factory.tally
        tally.request_answered(200, self.client.http_version)
        tally.connection_opened("tunnel")
        self.client.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for data in self._pending:
            upstream.transport.write(data)
        self._pending = []
        upstream.transport.registerProducer(self.client.pauser, True)
        self.client.transport.registerProducer(TransportPauser(upstream.transport), True)
        self.client.pauser.resume("connecting")

    def _failed(self, failure: Failure) -> None:
        self.client.pauser.resume("connecting")
        if self.finished:
            return
        error = describe_connect_failure(self.origin, failure)
        tally = self.client.factory.tally
        tally.request_answered(error.status, self.client.http_version)
        tally.upstream_error(error.kind)
        self.client.send_error(error.status, error.kind, error.message, keep_alive=False)
        self._finish(error.message, status=None)

    def from_client(self, data: bytes) -> None:
        self.sent += len(data)
        if self.upstream is None:
            self._pending.append(data)
        else:
            self.upstream.transport.write(data)

    def from_upstream(self, data: bytes) -> None:
        self.received += len(data)
        self.client.transport.write(data)

    def client_lost(self) -> None:
        if self.upstream is None:
            if not self.finished:
                self.client.factory.tally.request_answered(None, self.client.http_version)
            # Ends with an error: a transaction carries a response or an error.
            self._finish("client disconnected before the tunnel was established", status=None)
            return
        self.upstream.transport.loseConnection()
        self._finish(None, status=200)

    def upstream_lost(self) -> None:
        self.client.transport.loseConnection()
        self._finish(None, status=200)

    def _finish(self, error: str | None, status: int | None) -> None:
        if self.finished:
            return
        self.finished = True
        factory = self.client.factory
        factory.transactions += 1
        if self.connected_at is not None:
            factory.tally.connection_closed("tunnel")
        ticket = factory.recorder.begin("CONNECT", self.url)
        if ticket is None and not factory.recorder.observes_all:
            return
        end = self.reactor.seconds()
        response = None
        if status is not None:
            response = Response(200, "Connection established", "HTTP/1.1", (),
                                Body(size=self.received))
        transaction = Transaction(
            id=self.id,
            session_id=None if ticket is None else ticket.session_id,
            started_at=self.started_at,
            duration_ms=(end - self.started_at) * 1000.0,
            url=self.url,
            scheme="tunnel",
            client=self.client.client_address,
            server=Address(self.origin.host, self.origin.port),
            request=Request("CONNECT", self.head.target, self.head.version.decode("ascii"),
                            tuple(self.head.headers), Body(size=self.sent)),
            response=response,
            error=error,
            timings=Timings(
                connect_ms=-1.0 if self.connected_at is None else (self.connected_at - self.started_at) * 1000.0,
            ),
            kind="tunnel",
        )
        factory.recorder.complete(ticket, transaction)
