"""The WebSocket relay inside the proxy, in memory: the handshake through
ProxyServerProtocol and Exchange, then frames both ways over StringTransports, with
back-pressure, capture through the recorder, close timeouts, draining, and other
upgrades relayed blind."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from postcap.capture import CaptureTicket
from postcap.model import WebSocketMessage
from tests.test_proxy_unit import Client, ListRecorder, ProxyTestCase, Upstream

HANDSHAKE = (
    b"GET http://chat.test/socket HTTP/1.1\r\n"
    b"Host: chat.test\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)
FORWARDED = (
    b"GET /socket HTTP/1.1\r\n"
    b"Host: chat.test\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Via: 1.1 postcap\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"\r\n"
)
SWITCHED = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)


class MessageRecorder(ListRecorder):
    """The recorder with the WebSocket side: a settable capture state, messages, closes."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.state = "running"
        self.messages: list[WebSocketMessage] = []
        self.closes: list[tuple[str, str | None, int | None]] = []

    def message_capture(self, ticket: CaptureTicket) -> str:
        return self.state

    def message_captured(self, ticket: CaptureTicket, message: WebSocketMessage) -> None:
        self.messages.append(message)

    def websocket_closed(self, ticket: CaptureTicket, transaction_id: str,
                         closed_by: str | None, close_code: int | None) -> None:
        self.closes.append((transaction_id, closed_by, close_code))


class WebSocketRelayTests(ProxyTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_proxy(MessageRecorder())
        self.browser = Connection(ConnectionType.CLIENT)
        self.origin = Connection(ConnectionType.SERVER)

    def open(self, extra: bytes = b"") -> tuple[Client, Upstream]:
        client = self.client()
        client.send(HANDSHAKE)
        upstream = self.network.last
        self.assertEqual(upstream.sent(), FORWARDED)
        upstream.transport.clear()
        upstream.respond(SWITCHED + extra)
        head, _, rest = client.take().partition(b"\r\n\r\n")
        self.assertEqual(head + b"\r\n\r\n", (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nVia: 1.1 postcap\r\n\r\n"))
        if rest:
            self.browser.receive_data(rest)
        return client, upstream

    def browser_sends(self, client: Client, event: object) -> None:
        client.send(self.browser.send(event))  # type: ignore[arg-type]

    def origin_sends(self, upstream: Upstream, event: object) -> None:
        upstream.respond(self.origin.send(event))  # type: ignore[arg-type]

    def origin_got(self, upstream: Upstream) -> list[object]:
        self.origin.receive_data(upstream.sent())
        upstream.transport.clear()
        return list(self.origin.events())

    def browser_got(self, client: Client) -> list[object]:
        self.browser.receive_data(client.take())
        return list(self.browser.events())

    def test_handshake_is_recorded_at_once_and_frames_flow(self) -> None:
        client, upstream = self.open()
        txn = self.recorder.only()  # recorded while the connection is open
        self.assertEqual(self.factory.tally.connections["websocket"], 1)
        self.assertEqual((txn.kind, txn.status, txn.url), ("websocket", 101, "http://chat.test/socket"))
        self.assertIsNone(txn.error)
        self.clock.advance(1.0)
        self.browser_sends(client, TextMessage("hi"))
        self.assertEqual(self.origin_got(upstream), [TextMessage("hi")])
        self.origin_sends(upstream, TextMessage("hello"))
        self.assertEqual(self.browser_got(client), [TextMessage("hello")])
        self.assertEqual([(m.transaction_id, m.direction, m.data) for m in self.recorder.messages],
                         [(txn.id, "client", b"hi"), (txn.id, "server", b"hello")])
        self.assertEqual(self.recorder.messages[0].at, 1001.0)
        # The close handshake, codes kept; both connections end.
        self.browser_sends(client, CloseConnection(4000, "bye"))
        self.assertEqual(self.origin_got(upstream), [CloseConnection(4000, "bye")])
        self.origin_sends(upstream, CloseConnection(4000, "bye"))
        self.assertEqual(self.browser_got(client), [CloseConnection(4000, "bye")])
        self.assertTrue(client.closing and upstream.closed)
        client.lose()
        upstream.close()
        self.assertEqual(self.recorder.closes, [(txn.id, "client", 4000)])
        self.assertEqual(self.factory.tally.connections["websocket"], 0)
        self.assertEqual(len(self.recorder.transactions), 1)
        self.assert_serves()

    def test_frames_right_behind_the_101_are_relayed(self) -> None:
        client, upstream = self.open(extra=self.origin.send(TextMessage("welcome")))
        self.assertEqual(list(self.browser.events()), [TextMessage("welcome")])
        self.assertEqual([m.data for m in self.recorder.messages], [b"welcome"])

    def test_back_pressure_both_ways(self) -> None:
        client, upstream = self.open()
        # The client's transport is fed by the upstream, and the other way round.
        client.transport.producer.pauseProducing()
        self.assertEqual(upstream.transport.producerState, "paused")
        client.transport.producer.resumeProducing()
        self.assertEqual(upstream.transport.producerState, "producing")
        upstream.transport.producer.pauseProducing()
        self.assertEqual(client.transport.producerState, "paused")
        upstream.transport.producer.resumeProducing()
        self.assertEqual(client.transport.producerState, "producing")

    def test_a_history_behind_pauses_both_sides_until_it_caught_up(self) -> None:
        client, upstream = self.open()
        self.recorder.congested = True  # type: ignore[misc]
        self.browser_sends(client, TextMessage("one too many"))
        self.assertEqual((client.transport.producerState, upstream.transport.producerState),
                         ("paused", "paused"))
        self.assertEqual(self.origin_got(upstream), [TextMessage("one too many")])  # relayed
        self.recorder.congested = False  # type: ignore[misc]
        self.recorder.drained.callback(None)
        self.assertEqual((client.transport.producerState, upstream.transport.producerState),
                         ("producing", "producing"))

    def test_pause_skips_messages_and_stop_ends_their_capture(self) -> None:
        client, upstream = self.open()
        self.recorder.state = "paused"
        self.browser_sends(client, TextMessage("unseen"))
        self.recorder.state = "running"
        self.browser_sends(client, TextMessage("seen"))
        self.recorder.state = "ended"
        self.browser_sends(client, TextMessage("after stop"))
        self.recorder.state = "running"  # a stopped session does not come back
        self.browser_sends(client, TextMessage("still not"))
        self.assertEqual([m.data for m in self.recorder.messages], [b"seen"])
        self.assertEqual(len(self.origin_got(upstream)), 4)  # traffic went on

    def test_not_captured_still_relayed(self) -> None:
        self.make_proxy(MessageRecorder(capture=False, observes_all=False))
        client, upstream = self.open()
        self.browser_sends(client, TextMessage("x"))
        self.assertEqual(self.origin_got(upstream), [TextMessage("x")])
        self.assertEqual((self.recorder.transactions, self.recorder.messages), ([], []))
        client.lose()
        upstream.close()
        self.assertEqual(self.recorder.closes, [])

    def test_client_loss_closes_the_origin_with_1001(self) -> None:
        client, upstream = self.open()
        client.lose()
        self.assertEqual(self.origin_got(upstream), [CloseConnection(1001, "the client went away")])
        self.assertTrue(upstream.closed)
        upstream.close()
        self.assertEqual(self.recorder.closes, [(self.recorder.only().id, "client", 1006)])

    def test_unanswered_close_is_cut_after_the_timeout(self) -> None:
        client, upstream = self.open()
        self.browser_sends(client, CloseConnection(1000))
        self.clock.advance(9.0)
        self.assertFalse(upstream.closed)
        self.clock.advance(1.5)
        self.assertTrue(upstream.transport.disconnecting)
        self.assertTrue(client.transport.disconnecting)

    def test_draining_closes_websockets_with_1001(self) -> None:
        client, upstream = self.open()
        self.factory.drain(30.0)
        self.assertEqual(self.browser_got(client), [CloseConnection(1001, "postcap is shutting down")])
        self.assertEqual(self.origin_got(upstream), [CloseConnection(1001, "postcap is shutting down")])

    def test_hostile_frame_costs_only_its_connection(self) -> None:
        client, upstream = self.open()
        client.send(b"\x81\x02hi")  # unmasked
        self.assertEqual([e.code for e in self.browser_got(client)], [1002])  # type: ignore[attr-defined]
        self.assertTrue(client.closing and upstream.closed)
        self.assert_serves()

    def test_switch_without_an_upgrade_request_is_502(self) -> None:
        client = self.client()
        client.send(b"GET http://chat.test/ HTTP/1.1\r\nHost: chat.test\r\n\r\n")
        self.network.last.respond(SWITCHED)
        self.assert_error(client.received(), b"502", b"upgrade", close=False)


class OtherUpgradeTests(ProxyTestCase):
    def test_other_tokens_are_relayed_blind_and_recorded_as_a_tunnel(self) -> None:
        client = self.client()
        client.send(b"GET http://h2c.test/ HTTP/1.1\r\nHost: h2c.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
        upstream = self.network.last
        self.assertIn(b"Upgrade: h2c\r\nConnection: Upgrade\r\n", upstream.sent())
        self.assertNotIn(b"HTTP2-Settings", upstream.sent())  # named in Connection: hop-by-hop
        upstream.respond(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nPRI")
        self.assertTrue(client.received().endswith(b"\r\n\r\nPRI"))
        self.assertEqual(self.recorder.transactions, [])  # recorded when it ends
        client.send(b"opaque bytes")
        self.assertTrue(upstream.sent().endswith(b"opaque bytes"))
        upstream.close()
        self.assertTrue(client.closing)
        client.lose()
        txn = self.recorder.only()
        self.assertEqual((txn.kind, txn.status, txn.request_bytes, txn.response_bytes), ("tunnel", 101, 12, 3))
        self.assertFalse(txn.request.body.captured)
        self.assert_serves()

    def test_websocket_asked_but_other_protocol_given_is_blind(self) -> None:
        client = self.client(IPv4Address("TCP", "127.0.0.1", 40001))
        client.send(HANDSHAKE)
        upstream = self.network.last
        upstream.respond(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: other\r\nConnection: Upgrade\r\n\r\n")
        client.send(b"raw")
        self.assertTrue(upstream.sent().endswith(b"raw"))
        client.lose()
        self.assertEqual(self.recorder.only().kind, "tunnel")


class PlainInsideConnectTests(ProxyTestCase):
    """Inside a CONNECT, the first bytes decide: TLS is intercepted, anything else is
    plain HTTP to the CONNECT's host and port (how clients send ws:// through a proxy)."""

    def setUp(self) -> None:
        super().setUp()
        from postcap.tls.ca import create_ca
        from postcap.tls.minting import LeafMinter

        self.make_proxy(MessageRecorder())
        self.factory.minter = LeafMinter(create_ca())

    def test_plain_http_inside_connect(self) -> None:
        client = self.client()
        client.send(b"CONNECT chat.test:8080 HTTP/1.1\r\nHost: chat.test:8080\r\n\r\n")
        self.assertEqual(client.take(), b"HTTP/1.1 200 Connection established\r\n\r\n")
        client.send(b"GET /socket HTTP/1.1\r\nHost: chat.test:8080\r\n\r\n")
        upstream = self.network.last
        self.assertEqual(upstream.origin.scheme, "http")
        self.assertEqual((upstream.origin.host, upstream.origin.port), ("chat.test", 8080))
        self.assertEqual(upstream.sent(), b"GET /socket HTTP/1.1\r\nHost: chat.test:8080\r\nVia: 1.1 postcap\r\n\r\n")
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertTrue(client.take().endswith(b"\r\n\r\nok"))
        self.assertEqual(self.recorder.only().url, "http://chat.test:8080/socket")
        self.assertIsNone(self.recorder.only().tls)

    def test_tls_inside_connect_is_intercepted(self) -> None:
        started: list[tuple[object, bytes]] = []
        client = self.client()
        client.transport.protocol = client.protocol  # what TLS would wrap

        def start_tls(creator: object) -> None:
            started.append((creator, client.transport.value()))

        client.transport.startTLS = start_tls  # type: ignore[attr-defined]
        client.protocol.dataReceived = lambda data: started.append((None, data))  # type: ignore[method-assign]
        ProxyServer = type(client.protocol)
        ProxyServer.dataReceived(client.protocol, b"CONNECT secure.test:443 HTTP/1.1\r\nHost: secure.test:443\r\n\r\n")
        self.assertEqual(started, [])  # nothing decided before the first byte
        ProxyServer.dataReceived(client.protocol, b"\x16\x03\x01\x00\x05hello")  # a ClientHello starts
        (creator, _), (_, handed) = started
        self.assertEqual(type(creator).__name__, "InterceptingServerCreator")
        self.assertEqual(handed, b"\x16\x03\x01\x00\x05hello")  # given to the TLS layer
        self.assertEqual(self.network.attempts, [])
