"""HTTP/1.1 ``Upgrade``: the handshake forwarded, and the connection handed over after a 101.

A request whose ``Connection`` names ``upgrade`` keeps its ``Upgrade`` header on
the way up (both are hop-by-hop, so the exchange would otherwise drop them).  For
``websocket`` the ``Sec-WebSocket-Extensions`` offer is left out, so that frames
are relayed and captured uncompressed.  When the origin answers ``101``, the
exchange ends and both connections go to a relay: a
:class:`~postcap.proxy.wsrelay.WebSocketRelay` for ``websocket`` (the handshake is
recorded at once, as a ``websocket`` transaction), an :class:`UpgradedTunnel`
for any other token (relayed blind and recorded as a ``tunnel`` when it closes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from postcap.proxy.framing import RawHeaders, ResponseHead, connection_tokens, end_to_end, header_values

if TYPE_CHECKING:
    from postcap.proxy.exchange import Exchange
    from postcap.proxy.upstream import UpstreamProtocol

WEBSOCKET = b"websocket"
#: Offers of WebSocket extensions (permessage-deflate): never forwarded.
_EXTENSIONS = b"sec-websocket-extensions"


def upgrade_token(headers: RawHeaders) -> bytes | None:
    """The protocol a request asks to upgrade to (lower-cased first ``Upgrade`` token),
    or None when its ``Connection`` does not name ``upgrade``."""
    if b"upgrade" not in connection_tokens(headers):
        return None
    tokens = header_values(headers, b"upgrade")
    return tokens[0].lower() if tokens else None


def forwarded_upgrade(headers: RawHeaders, sent: RawHeaders, token: bytes) -> RawHeaders:
    """``headers`` (end-to-end already) with the upgrade hop put back: ``Upgrade`` as the
    client ``sent`` it and ``Connection: Upgrade``; for WebSocket no extension offer."""
    upgrade = _raw_upgrade(sent)
    kept = headers
    if token == WEBSOCKET:
        kept = [(k, v) for k, v in headers if k.lower() != _EXTENSIONS]
    return kept + upgrade + [(b"Connection", b"Upgrade")]


def _raw_upgrade(headers: RawHeaders) -> RawHeaders:
    return [(k, v) for k, v in headers if k.lower() == b"upgrade"]


def switched_head(head: ResponseHead, via: bytes) -> bytes:
    """The ``101`` sent to the client: the origin's, hop-by-hop fields put back.  An
    extension the origin accepts although none was offered is not passed on (its frames
    would then be refused as the protocol errors they are)."""
    headers = [(k, v) for k, v in end_to_end(head.headers) if k.lower() != _EXTENSIONS]
    headers += _raw_upgrade(head.headers)
    headers += [(b"Connection", b"Upgrade"), (b"Via", via)]
    fields = b"".join(b"%s: %s\r\n" % pair for pair in headers)
    return b"HTTP/1.1 101 %s\r\n%s\r\n" % (head.reason or b"Switching Protocols", fields)


def close_transport(transport: Any) -> None:
    """Close after what is written is sent.  The producer goes first: a TLS transport
    would otherwise wait for it to unregister before it shuts down."""
    transport.unregisterProducer()
    transport.loseConnection()


def hand_over(exchange: "Exchange", upstream: "UpstreamProtocol", head: ResponseHead) -> None:
    """After a 101: write it to the client and give both connections to a relay."""
    from postcap.proxy.wsrelay import WebSocketRelay  # it imports exchange.py, which imports this

    client = exchange.client
    client.transport.write(switched_head(head, exchange.settings.via))
    client_early = client.parser.take_buffered()
    client.pauser.resume("pipelined")
    client.exchange = None  # the exchange no longer reads this connection
    offered = exchange.upgrade
    accepted = header_values(head.headers, b"upgrade")
    if offered == WEBSOCKET and accepted and accepted[0].lower() == WEBSOCKET:
        exchange.kind = "websocket"
        relay: WebSocketRelay | UpgradedTunnel = WebSocketRelay(client, upstream, exchange.id)
        client.tunnel = relay
        upstream_early = upstream.take_over(relay)
        exchange.finish_handshake()  # recorded now, visible while the connection is open
        relay.start(exchange.recorded_ticket, client_early, upstream_early)
        return
    exchange.kind = "tunnel"
    tunnel = UpgradedTunnel(exchange, upstream)
    client.tunnel = tunnel
    tunnel.start(client_early, upstream.take_over(tunnel))


class UpgradedTunnel:
    """A connection upgraded to a protocol other than WebSocket, relayed blind.

    Only sizes are counted (as the exchange's request and response body sizes); the
    exchange is recorded, as a ``tunnel`` with status 101, when either side closes.
    """

    def __init__(self, exchange: "Exchange", upstream: "UpstreamProtocol") -> None:
        self.exchange = exchange
        self.client = exchange.client
        self.upstream = upstream
        self.ended = False
        exchange.request_capture.drop()
        exchange.response_capture.drop()

    def start(self, client_early: bytes, upstream_early: bytes) -> None:
        from postcap.proxy.exchange import TransportPauser  # exchange.py imports this module

        self.upstream.transport.registerProducer(self.client.pauser, True)
        self.client.transport.registerProducer(TransportPauser(self.upstream.transport), True)
        if client_early:
            self.from_client(client_early)
        if upstream_early:
            self.from_upstream(upstream_early)

    def from_client(self, data: bytes) -> None:
        self.exchange.request_capture.feed(data)
        self.upstream.transport.write(data)

    def from_upstream(self, data: bytes) -> None:
        self.exchange.response_capture.feed(data)
        self.client.transport.write(data)

    def client_lost(self) -> None:
        self._end(self.upstream.transport)

    def upstream_lost(self) -> None:
        self._end(self.client.transport)

    def going_away(self) -> None:
        """Draining: a blind tunnel has no polite close; it is aborted with the rest."""

    def _end(self, other: object) -> None:
        """One side is gone: close the other (once) and record the exchange."""
        if not self.ended:
            self.ended = True
            close_transport(other)
            self.exchange.finish_handshake()
