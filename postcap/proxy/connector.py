"""How postcap reaches an origin: directly or through ``--upstream-proxy``, in plain
TCP or verified TLS.  Endpoints are built per origin; TLS client creators are
cached per host name (building one loads the trust store)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from postcap.proxy.framing import MessageParser, ProtocolError, ResponseHead
from postcap.proxy.own import GuardedFactory, OwnEndpoints
from postcap.proxy.upstream import Origin, quiet_factory
from postcap.tls.client import H2_AND_HTTP11, HTTP11_ONLY, InsecureClientCreator, verified_creator


class ProxyConnectError(ConnectError):
    """The upstream proxy refused or failed the CONNECT."""


class _ConnectHandshake(Protocol):
    """Speaks ``CONNECT host:port`` to an upstream proxy, then hands the connection
    to the real protocol and relays to it."""

    def __init__(self, target: Origin, inner_factory: Factory, ready: Deferred[Protocol]) -> None:
        self.target = target
        # Not ``self.factory``: Factory.buildProtocol sets that to the handshake's own factory.
        self.inner_factory = inner_factory
        self.ready = ready
        self.parser = MessageParser(is_request=False, request_method=b"CONNECT")
        self.parser.next(b"CONNECT")
        self.inner: Protocol | None = None

    def connectionMade(self) -> None:
        authority = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        authority = f"{authority}:{self.target.port}"
        self.transport.write(
            f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nVia: 1.1 postcap\r\n\r\n".encode("ascii")
        )

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        try:
            events = self.parser.feed(data)
        except ProtocolError as exc:
            self._fail(f"invalid answer from upstream proxy: {exc.reason}")
            return
        if not events:
            return
        head = events[0]
        if not isinstance(head, ResponseHead) or not 200 <= head.status < 300:
            status = getattr(head, "status", "?")
            self._fail(f"upstream proxy answered CONNECT with {status}")
            return
        rest = self.parser.take_buffered()
        self.inner = self.inner_factory.buildProtocol(self.transport.getPeer())
        self.inner.makeConnection(self.transport)
        self.ready.callback(self.inner)
        if rest:
            self.inner.dataReceived(rest)

    def _fail(self, message: str) -> None:
        self.transport.abortConnection()
        if not self.ready.called:
            self.ready.errback(ProxyConnectError(message))

    def connectionLost(self, reason: Failure) -> None:
        if self.inner is not None:
            self.inner.connectionLost(reason)
        elif not self.ready.called:
            self.ready.errback(ProxyConnectError("upstream proxy closed the connection during CONNECT"))


@implementer(IStreamClientEndpoint)
class ProxyConnectEndpoint:
    """A TCP connection to ``target`` tunnelled through an HTTP proxy's CONNECT."""

    def __init__(self, proxy_endpoint: IStreamClientEndpoint, target: Origin) -> None:
        self.proxy_endpoint = proxy_endpoint
        self.target = target

    def connect(self, protocolFactory: Factory) -> Deferred[Protocol]:
        ready: Deferred[Protocol] = Deferred()
        connecting = self.proxy_endpoint.connect(
            quiet_factory(lambda: _ConnectHandshake(self.target, protocolFactory, ready))
        )
        connecting.addErrback(lambda failure: ready.called or ready.errback(failure))
        return ready


@implementer(IStreamClientEndpoint)
class GuardedEndpoint:
    """A direct upstream endpoint that refuses to connect to postcap's own endpoints."""

    def __init__(self, inner: IStreamClientEndpoint, own: OwnEndpoints) -> None:
        self.inner = inner
        self.own = own

    def connect(self, protocolFactory: Factory) -> Deferred[Protocol]:
        return self.inner.connect(GuardedFactory(protocolFactory, self.own))


class UpstreamConnector:
    """Builds the endpoint for each origin: TLS when https, via the upstream proxy when set."""

    creator_cache_size = 256

    def __init__(
        self,
        reactor: Any,
        connect_timeout: float,
        insecure: bool = False,
        upstream_proxy: Origin | None = None,
        own: OwnEndpoints | None = None,
    ) -> None:
        self.reactor = reactor
        #: postcap's own endpoints: direct upstream connections to them are refused.
        self.own = own
        self.connect_timeout = connect_timeout
        self.insecure = insecure
        self.upstream_proxy = upstream_proxy
        self._creators: OrderedDict[str, Any] = OrderedDict()

    def _tcp(self, host: str, port: int) -> IStreamClientEndpoint:
        return HostnameEndpoint(self.reactor, host, port, timeout=self.connect_timeout)

    def _direct(self, origin: Origin) -> IStreamClientEndpoint:
        endpoint = self._tcp(origin.host, origin.port)
        return endpoint if self.own is None else GuardedEndpoint(endpoint, self.own)

    def tunnel_endpoint(self, origin: Origin) -> IStreamClientEndpoint:
        """A raw byte stream to ``origin`` (blind tunnels and the base of TLS)."""
        proxy = self.upstream_proxy
        if proxy is None:
            return self._direct(origin)
        return ProxyConnectEndpoint(self._tcp(proxy.host, proxy.port), origin)

    def endpoint(self, origin: Origin) -> IStreamClientEndpoint:
        """Where HTTP exchanges for ``origin`` go (plain HTTP via a proxy: to the proxy)."""
        if origin.scheme != "https":
            proxy = self.upstream_proxy
            if proxy is not None:
                return self._tcp(proxy.host, proxy.port)
            return self._direct(origin)
        return wrapClientTLS(self.tls_creator(origin.host), self.tunnel_endpoint(origin))

    def http11_endpoint(self, origin: Origin) -> IStreamClientEndpoint:
        """Like :meth:`endpoint`, but TLS offers ALPN ``http/1.1`` alone: for a request
        that asks to upgrade the connection (WebSocket), which HTTP/2 cannot carry."""
        if origin.scheme != "https":
            return self.endpoint(origin)
        creator = (InsecureClientCreator(origin.host, HTTP11_ONLY) if self.insecure
                   else verified_creator(origin.host, HTTP11_ONLY))
        return wrapClientTLS(creator, self.tunnel_endpoint(origin))

    def tls_creator(self, host: str) -> Any:
        creator = self._creators.get(host)
        if creator is not None:
            self._creators.move_to_end(host)
            return creator
        creator = (InsecureClientCreator(host, H2_AND_HTTP11) if self.insecure
                   else verified_creator(host, H2_AND_HTTP11))
        self._creators[host] = creator
        if len(self._creators) > self.creator_cache_size:
            self._creators.popitem(last=False)
        return creator
