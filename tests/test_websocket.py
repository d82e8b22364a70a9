"""The sans-IO WebSocket bridge (postcap.proxy.websocket): frames in, frames out.

Real ``wsproto`` connections stand for the browser (a client: its frames are masked)
and for the origin (a server), so every byte the bridge writes is parsed by an
independent implementation.  Hostile frames are written by hand.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from postcap.model import WebSocketMessage
from postcap.proxy.upgrade import forwarded_upgrade, switched_head, upgrade_token
from postcap.proxy.framing import ResponseHead
from postcap.proxy.websocket import CaptureBudget, Step, WebSocketBridge


def masked_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False,
                 length: int | None = None) -> bytes:
    """A client frame written by hand (``length`` lies about the payload's size)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload) if length is None else length
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    key = b"\x01\x02\x03\x04"
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Peers:
    """A browser and an origin, each a wsproto connection, around one bridge."""

    def __init__(self, capture_limit: int | None = 1024, max_message_size: int | None = None) -> None:
        self.now = 100.0
        self.bridge = WebSocketBridge("txn-1", lambda: self.now, capture_limit, max_message_size)
        self.browser = Connection(ConnectionType.CLIENT)
        self.origin = Connection(ConnectionType.SERVER)
        self.messages: list[WebSocketMessage] = []

    def browser_sends(self, *events: object) -> Step:
        data = b"".join(self.browser.send(event) for event in events)  # type: ignore[arg-type]
        return self.deliver(self.bridge.from_client(data))

    def origin_sends(self, *events: object) -> Step:
        data = b"".join(self.origin.send(event) for event in events)  # type: ignore[arg-type]
        return self.deliver(self.bridge.from_server(data))

    def deliver(self, step: Step) -> Step:
        """Hand what the bridge wrote to the peers; keep the captured messages."""
        if step.to_server:
            self.origin.receive_data(b"".join(step.to_server))
        if step.to_client:
            self.browser.receive_data(b"".join(step.to_client))
        self.messages.extend(step.messages)
        return step

    def origin_events(self) -> list[object]:
        return list(self.origin.events())

    def browser_events(self) -> list[object]:
        return list(self.browser.events())


class RelayTests(SynchronousTestCase):
    def test_text_both_ways_is_relayed_and_captured(self) -> None:
        peers = Peers()
        peers.browser_sends(TextMessage("hello"))
        self.assertEqual(peers.origin_events(), [TextMessage("hello")])
        peers.now = 101.5
        peers.origin_sends(TextMessage("héllo back"))
        self.assertEqual(peers.browser_events(), [TextMessage("héllo back")])
        self.assertEqual(
            [(m.direction, m.type, m.at, m.size, m.data, m.truncated) for m in peers.messages],
            [("client", "text", 100.0, 5, b"hello", False),
             ("server", "text", 101.5, 11, "héllo back".encode(), False)],
        )
        self.assertEqual(peers.messages[1].to_json()["text"], "héllo back")

    def test_binary_is_relayed_and_stored_as_base64(self) -> None:
        peers = Peers()
        peers.origin_sends(BytesMessage(b"\x00\xffAB"))
        self.assertEqual(peers.browser_events(), [BytesMessage(b"\x00\xffAB")])
        shape = peers.messages[0].to_json()
        self.assertEqual((shape["type"], shape["encoding"], shape["text"]), ("binary", "base64", "AP9BQg=="))

    def test_fragments_are_relayed_as_they_come_and_stored_as_one_message(self) -> None:
        peers = Peers()
        step = peers.browser_sends(TextMessage("one ", message_finished=False))
        self.assertEqual(step.messages, [])  # nothing captured until the message ends
        self.assertEqual(peers.origin_events(), [TextMessage("one ", message_finished=False)])
        peers.now = 100.2
        peers.browser_sends(Ping(b"in between"))  # control frames may interleave
        peers.browser_sends(TextMessage("two ", message_finished=False), TextMessage("three"))
        self.assertEqual(peers.origin_events(), [
            Ping(b"in between"), TextMessage("two ", message_finished=False), TextMessage("three")])
        ping, text = peers.messages
        self.assertEqual((ping.type, ping.data), ("ping", b"in between"))
        self.assertEqual((text.type, text.size, text.data, text.at), ("text", 13, b"one two three", 100.0))

    def test_multibyte_character_split_across_frames(self) -> None:
        peers = Peers()
        encoded = "€".encode()
        data = masked_frame(0x1, encoded[:1], fin=False) + masked_frame(0x0, encoded[1:])
        peers.deliver(peers.bridge.from_client(data))
        self.assertEqual("".join(e.data for e in peers.origin_events()), "€")  # type: ignore[attr-defined]
        self.assertEqual(peers.messages[0].data, encoded)

    def test_ping_and_pong_are_relayed_not_answered(self) -> None:
        peers = Peers()
        step = peers.browser_sends(Ping(b"p1"))
        self.assertEqual(step.to_client, [])  # the origin answers, not postcap
        self.assertEqual(peers.origin_events(), [Ping(b"p1")])
        peers.origin_sends(Pong(b"p1"))
        self.assertEqual(peers.browser_events(), [Pong(b"p1")])
        self.assertEqual([(m.direction, m.type) for m in peers.messages],
                         [("client", "ping"), ("server", "pong")])

    def test_a_byte_at_a_time(self) -> None:
        peers = Peers()
        for byte in peers.browser.send(TextMessage("slow")):
            peers.deliver(peers.bridge.from_client(bytes([byte])))
        self.assertEqual("".join(e.data for e in peers.origin_events()), "slow")  # type: ignore[attr-defined]
        self.assertEqual([m.data for m in peers.messages], [b"slow"])


class CloseTests(SynchronousTestCase):
    def test_close_handshake_from_the_client_keeps_code_and_reason(self) -> None:
        peers = Peers()
        step = peers.browser_sends(CloseConnection(4001, "done here"))
        self.assertFalse(step.close_client or step.close_server)
        self.assertEqual(peers.origin_events(), [CloseConnection(4001, "done here")])
        step = peers.origin_sends(CloseConnection(4001, "done here"))
        self.assertEqual(peers.browser_events(), [CloseConnection(4001, "done here")])
        self.assertTrue(step.close_client and step.close_server)
        self.assertTrue(peers.bridge.finished)
        self.assertEqual((peers.bridge.closed_by, peers.bridge.close_code), ("client", 4001))
        close = peers.messages[0]
        self.assertEqual((close.type, close.code, close.data, close.size), ("close", 4001, b"done here", 11))
        self.assertEqual(close.to_json()["code"], 4001)
        self.assertEqual(peers.browser.state, ConnectionState.CLOSED)

    def test_close_from_the_server_without_a_code(self) -> None:
        peers = Peers()
        peers.deliver(peers.bridge.from_server(b"\x88\x00"))
        self.assertEqual(peers.browser_events(), [CloseConnection(1005, "")])
        peers.browser_sends(CloseConnection(1005))
        self.assertEqual((peers.bridge.closed_by, peers.bridge.close_code), ("server", 1005))
        self.assertTrue(peers.bridge.finished)

    def test_client_lost_closes_the_server_side_with_1001(self) -> None:
        peers = Peers()
        step = peers.deliver(peers.bridge.client_lost())
        self.assertEqual(peers.origin_events(), [CloseConnection(1001, "the client went away")])
        self.assertTrue(step.close_server)
        self.assertEqual((peers.bridge.closed_by, peers.bridge.close_code), ("client", 1006))

    def test_server_lost_after_a_clean_close_changes_nothing(self) -> None:
        peers = Peers()
        peers.browser_sends(CloseConnection(1000))
        peers.origin_sends(CloseConnection(1000))
        step = peers.bridge.server_lost()
        self.assertEqual(step.to_client, [])
        self.assertEqual((peers.bridge.closed_by, peers.bridge.close_code), ("client", 1000))

    def test_going_away_closes_both_with_1001(self) -> None:
        peers = Peers()
        peers.deliver(peers.bridge.going_away())
        self.assertEqual(peers.browser_events(), [CloseConnection(1001, "postcap is shutting down")])
        self.assertEqual(peers.origin_events(), [CloseConnection(1001, "postcap is shutting down")])
        peers.browser_sends(CloseConnection(1001))
        peers.origin_sends(CloseConnection(1001))
        self.assertTrue(peers.bridge.finished)
        self.assertEqual((peers.bridge.closed_by, peers.bridge.close_code), (None, 1001))

    def test_data_after_close_is_ignored(self) -> None:
        peers = Peers()
        peers.browser_sends(CloseConnection(1000))
        peers.origin_sends(CloseConnection(1000))
        self.assertEqual(peers.bridge.from_client(b"\x81\x80abcd"), Step())


class HostileTests(SynchronousTestCase):
    def assert_closed_by_client_with(self, peers: Peers, step: Step, code: int) -> None:
        self.assertTrue(step.close_client and step.close_server)
        self.assertEqual([type(e) for e in peers.browser_events()], [CloseConnection])
        self.assertEqual(peers.origin_events(), [CloseConnection(1001, "the client broke the WebSocket protocol")])
        self.assertEqual((peers.bridge.closed_by, peers.bridge.close_code), ("client", code))
        # Whatever the client sends after is ignored.
        self.assertEqual(peers.bridge.from_client(masked_frame(0x1, b"more")), Step())

    def test_unmasked_client_frame_is_1002(self) -> None:
        peers = Peers()
        step = peers.deliver(peers.bridge.from_client(b"\x81\x02hi"))
        self.assert_closed_by_client_with(peers, step, 1002)

    def test_length_of_2_to_the_63_is_1002(self) -> None:
        peers = Peers()
        header = struct.pack("!BBQ", 0x82, 0x80 | 127, 2 ** 63) + b"\x00" * 4
        step = peers.deliver(peers.bridge.from_client(header))
        self.assert_closed_by_client_with(peers, step, 1002)

    def test_bad_utf8_text_is_1007(self) -> None:
        peers = Peers()
        step = peers.deliver(peers.bridge.from_client(masked_frame(0x1, b"\xff\xfe")))
        self.assert_closed_by_client_with(peers, step, 1007)

    def test_message_over_the_limit_is_1009_before_it_all_arrives(self) -> None:
        peers = Peers(max_message_size=1000)
        frame = masked_frame(0x2, b"x" * 600, length=100 * 1024 * 1024)
        step = peers.deliver(peers.bridge.from_client(frame))
        self.assertFalse(step.close_client)  # 600 bytes relayed as a fragment so far
        self.assertEqual(peers.origin_events(),
                         [BytesMessage(b"x" * 600, frame_finished=True, message_finished=False)])
        step = peers.deliver(peers.bridge.from_client(b"y" * 600))
        self.assert_closed_by_client_with(peers, step, 1009)
        self.assertEqual(peers.messages, [])

    def test_compressed_frame_without_negotiation_is_1002(self) -> None:
        """permessage-deflate is never negotiated: a frame with RSV1 is an error."""
        peers = Peers()
        step = peers.deliver(peers.bridge.from_client(masked_frame(0x1, b"\xf2H\xcd\xc9\xc9\x07\x00", rsv1=True)))
        self.assert_closed_by_client_with(peers, step, 1002)

    def test_bad_server_closes_server_with_code_and_client_with_1001(self) -> None:
        peers = Peers()
        step = peers.deliver(peers.bridge.from_server(b"\x81\x84abcdxxxx"))  # a masked server frame
        self.assertTrue(step.close_client and step.close_server)
        self.assertEqual(peers.browser_events(), [CloseConnection(1001, "the server broke the WebSocket protocol")])
        self.assertEqual((peers.bridge.closed_by, peers.bridge.close_code), ("server", 1002))


class CaptureTests(SynchronousTestCase):
    def test_copies_are_bounded_per_connection_and_flagged(self) -> None:
        peers = Peers(capture_limit=10)
        peers.browser_sends(TextMessage("123456"), TextMessage("abcdefgh"), TextMessage("zz"))
        self.assertEqual([e.data for e in peers.origin_events()],  # type: ignore[attr-defined]
                         ["123456", "abcdefgh", "zz"])  # all relayed in full
        self.assertEqual([(m.size, m.data, m.truncated) for m in peers.messages],
                         [(6, b"123456", False), (8, b"abcd", True), (2, b"", True)])

    def test_no_capture_when_not_recorded(self) -> None:
        peers = Peers(capture_limit=None)
        peers.browser_sends(TextMessage("x"), Ping(b"y"))
        self.assertEqual(peers.messages, [])
        self.assertEqual(len(peers.origin_events()), 2)

    def test_stop_capturing_midway(self) -> None:
        peers = Peers()
        peers.browser_sends(TextMessage("kept", message_finished=False))
        peers.bridge.stop_capturing()
        peers.browser_sends(TextMessage(" more"), CloseConnection(1000))
        self.assertEqual(peers.messages, [])
        self.assertFalse(peers.bridge.capturing)

    def test_ten_thousand_messages_keep_no_copies_in_the_bridge(self) -> None:
        peers = Peers(capture_limit=100)
        data = b"".join(peers.browser.send(TextMessage("m" * 50)) for _ in range(10_000))
        step = peers.bridge.from_client(data)
        self.assertEqual(len(step.messages), 10_000)
        self.assertEqual(sum(len(m.data) for m in step.messages), 100)
        self.assertEqual((peers.bridge.client.pieces, peers.bridge.server.pieces), ([], []))

    def test_budget(self) -> None:
        budget = CaptureBudget(5)
        self.assertEqual((budget.take(b"abc"), budget.take(b"defg"), budget.take(b"h")), (b"abc", b"de", b""))
        self.assertEqual(CaptureBudget(-1).left, 0)

    def test_event_text_is_cut(self) -> None:
        message = WebSocketMessage("t", "client", "text", 1.0, 10, False, b"0123456789")
        self.assertEqual(message.to_json(4)["text"], "0123")
        self.assertTrue(message.to_json(4)["truncated"])
        self.assertFalse(message.to_json()["truncated"])


class HandshakeTests(SynchronousTestCase):
    def test_upgrade_token_needs_connection_upgrade(self) -> None:
        self.assertEqual(upgrade_token([(b"Connection", b"keep-alive, Upgrade"), (b"Upgrade", b"WebSocket")]),
                         b"websocket")
        self.assertIsNone(upgrade_token([(b"Upgrade", b"websocket")]))
        self.assertIsNone(upgrade_token([(b"Connection", b"upgrade")]))

    def test_forwarded_handshake_drops_the_deflate_offer(self) -> None:
        sent = [(b"Host", b"h"), (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
                (b"Sec-WebSocket-Key", b"k"), (b"Sec-WebSocket-Extensions", b"permessage-deflate")]
        forwarded = forwarded_upgrade([(b"Host", b"h"), (b"Sec-WebSocket-Key", b"k"),
                                       (b"Sec-WebSocket-Extensions", b"permessage-deflate")], sent, b"websocket")
        self.assertEqual(forwarded, [(b"Host", b"h"), (b"Sec-WebSocket-Key", b"k"),
                                     (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")])
        other = forwarded_upgrade([(b"X-Offer", b"1")], [(b"Upgrade", b"h2c")], b"h2c")
        self.assertEqual(other, [(b"X-Offer", b"1"), (b"Upgrade", b"h2c"), (b"Connection", b"Upgrade")])

    def test_switched_head(self) -> None:
        head = ResponseHead(b"HTTP/1.1", 101, b"Switching Protocols",
                            [(b"Upgrade", b"websocket"), (b"Connection", b"upgrade"),
                             (b"Sec-WebSocket-Accept", b"abc"),
                             (b"Sec-WebSocket-Extensions", b"permessage-deflate")], "none", 0)
        self.assertEqual(
            switched_head(head, b"1.1 postcap"),
            b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: abc\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nVia: 1.1 postcap\r\n\r\n",
        )


class HarTests(SynchronousTestCase):
    def test_messages_as_chrome_writes_them(self) -> None:
        from postcap.export.har import entry_from_detail
        from postcap.sinks.messages import websocket_field
        from postcap.testing import make_transaction

        txn = make_transaction(kind="websocket", status=101, response_body=b"")
        messages = [
            WebSocketMessage(txn.id, "client", "text", 1700000000.25, 2, False, b"hi"),
            WebSocketMessage(txn.id, "server", "binary", 1700000000.5, 2, False, b"\x00\x01"),
            WebSocketMessage(txn.id, "server", "ping", 1700000001.0, 0, False, b""),
            WebSocketMessage(txn.id, "client", "pong", 1700000001.0, 0, False, b""),
            WebSocketMessage(txn.id, "client", "close", 1700000002.0, 5, False, b"bye", 1000),
        ]
        detail = txn.detail()
        detail["websocket"] = websocket_field([m.to_json() for m in messages], 5, ("client", 1000))
        entry = entry_from_detail(detail)
        assert entry is not None
        self.assertEqual(entry["_resourceType"], "websocket")
        self.assertEqual(entry["_webSocketMessages"], [
            {"type": "send", "time": 1700000000.25, "opcode": 1, "data": "hi"},
            {"type": "receive", "time": 1700000000.5, "opcode": 2, "data": "AAE="},
            {"type": "receive", "time": 1700000001.0, "opcode": 9, "data": ""},
            {"type": "send", "time": 1700000001.0, "opcode": 10, "data": ""},
            {"type": "send", "time": 1700000002.0, "opcode": 8, "data": "bye"},
        ])
        plain = entry_from_detail(make_transaction().detail())
        assert plain is not None
        self.assertNotIn("_webSocketMessages", plain)


class PropertyTests(SynchronousTestCase):
    """Whatever bytes arrive, the bridge answers with a Step (never an exception), and
    valid messages in any fragmentation and any read sizes come out whole."""

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.binary(max_size=64), max_size=12), st.booleans())
    def test_arbitrary_bytes_never_raise(self, chunks: list[bytes], from_client: bool) -> None:
        bridge = WebSocketBridge("t", lambda: 0.0, 100)
        feed = bridge.from_client if from_client else bridge.from_server
        for chunk in chunks:
            self.assertIsInstance(feed(chunk), Step)
        self.assertIsInstance(bridge.client_lost(), Step)
        self.assertIsInstance(bridge.server_lost(), Step)

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=40)), min_size=1, max_size=6),
        st.integers(min_value=1, max_value=4),
        st.integers(min_value=1, max_value=50),
    )
    def test_messages_survive_any_fragmentation_and_read_size(
        self, messages: list[str | bytes], pieces: int, read: int
    ) -> None:
        peers = Peers(capture_limit=10_000)
        wire = b""
        for message in messages:
            size = max(1, -(-len(message) // pieces))
            parts = [message[i:i + size] for i in range(0, len(message), size)] or [message[:0]]
            for index, part in enumerate(parts):
                kind = TextMessage if isinstance(message, str) else BytesMessage
                wire += peers.browser.send(kind(part, message_finished=index == len(parts) - 1))  # type: ignore[arg-type]
        for start in range(0, len(wire), read):
            peers.deliver(peers.bridge.from_client(wire[start:start + read]))
        received: list[str | bytes] = []
        current: list[str | bytes] = []
        for event in peers.origin_events():
            current.append(event.data)  # type: ignore[attr-defined]
            if event.message_finished:  # type: ignore[attr-defined]
                joined = "".join(current) if isinstance(current[0], str) else b"".join(current)  # type: ignore[arg-type]
                received.append(joined)
                current = []
        self.assertEqual(received, messages)
        stored = [m.data.decode("utf-8") if m.type == "text" else m.data for m in peers.messages]
        self.assertEqual(stored, messages)
