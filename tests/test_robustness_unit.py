"""Unit tests (StringTransport, MemoryReactorClock) of the proxy's robustness features:
loop detection, the per-client connection cap, counters, and property-based tests that
drive :class:`ProxyServerProtocol` itself with arbitrary and with valid requests."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from postcap.proxy.framing import RawHeaders, RequestHead, end_to_end
from tests.test_framing import _chunk_soup, _cuts, valid_requests
from tests.test_proxy_unit import OK_HELLO, Client, ProxyTestCase, request

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class LoopTests(ProxyTestCase):
    def far_end_of(self, upstream: StringTransport) -> Client:
        """A client connection whose two ends are those of ``upstream`` swapped."""
        client = Client.__new__(Client)
        client.protocol = self.factory.buildProtocol(upstream.getHost())
        client.transport = StringTransport(
            hostAddress=upstream.getPeer(), peerAddress=upstream.getHost(), lenient=True
        )
        client.protocol.makeConnection(client.transport)
        return client

    def test_same_local_port_to_another_peer_is_not_a_loop(self) -> None:
        self.network.hanging.add("example.test")
        outer = self.client()
        outer.send(request())
        upstream = self.network.pending[0].complete()
        local = upstream.transport.getHost()
        other = self.client(IPv4Address("TCP", local.host, local.port))
        other.send(request(target=b"http://other.test/"))
        self.assertEqual(len(self.network.attempts), 2)

    def test_request_from_own_upstream_connection_is_508(self) -> None:
        self.network.hanging.add("example.test")
        outer = self.client()
        outer.send(request())
        upstream = self.network.pending[0].complete()
        inner = self.far_end_of(upstream.transport)
        inner.send(request(target=b"http://example.test/"))
        self.assert_error(inner.received(), b"508", b"loop")
        self.assertIn(b"came back to postcap", inner.received())
        self.assertEqual(len(self.network.attempts), 1)
        self.assertEqual(self.factory.errors["loop"], 1)

    def test_address_reused_after_upstream_closed_is_not_a_loop(self) -> None:
        client = self.client()
        client.send(request(headers=(b"Connection: close",)))
        upstream = self.network.last
        upstream.respond(OK_HELLO)
        upstream.close()
        reused = self.far_end_of(upstream.transport)
        reused.send(request(target=b"http://other.test/"))
        self.assertEqual(len(self.network.attempts), 2)

    def test_via_hops(self) -> None:
        client = self.client()
        client.send(request(headers=(b"Via: 1.1 postcap, 1.1 squid, 1.1 postcap, 1.1 postcap",)))
        self.assertEqual(len(self.network.attempts), 1)
        looping = self.client(IPv4Address("TCP", "127.0.0.1", 40001))
        looping.send(request(headers=(b"Via: 1.1 postcap, 1.1 postcap", b"Via: 1.0 postcap, 1.1 postcap")))
        self.assert_error(looping.received(), b"508", b"loop")
        self.assertIn(b"4 times", looping.received())

    def test_target_is_own_listening_address(self) -> None:
        client = self.client()
        own = client.transport.getHost()
        client.send(request(target=b"http://%s:%d/" % (own.host.encode(), own.port)))
        self.assert_error(client.received(), b"508", b"loop")
        self.assertEqual(self.network.attempts, [])


class ConnectionCapTests(ProxyTestCase):
    def test_cap_per_address(self) -> None:
        self.make_proxy(max_client_connections=2)
        first = self.client(IPv4Address("TCP", "10.0.0.7", 1))
        self.client(IPv4Address("TCP", "10.0.0.7", 2))
        third = self.client(IPv4Address("TCP", "10.0.0.7", 3))
        self.assert_error(third.received(), b"503", b"too-many-connections")
        self.assertTrue(third.closing)
        other = self.client(IPv4Address("TCP", "10.0.0.8", 1))
        self.assertEqual(other.received(), b"")
        first.lose()
        fourth = self.client(IPv4Address("TCP", "10.0.0.7", 4))
        self.assertEqual(fourth.received(), b"")
        self.assertEqual(self.factory.refused, 1)
        self.assertEqual(self.factory.errors["too-many-connections"], 1)


class CounterTests(ProxyTestCase):
    def test_counters(self) -> None:
        client = self.client()
        client.send(request())
        self.network.last.respond(OK_HELLO)
        bad = self.client(IPv4Address("TCP", "127.0.0.1", 40002))
        bad.send(b"GET http://example.test/ HTTP/1.1\r\nX: \x00\r\n\r\n")
        counters = self.factory.counters()
        self.assertEqual(counters["open_connections"], 2)
        self.assertEqual(counters["transactions"], 1)
        self.assertEqual(counters["errors"], {"bad-request": 1})
        self.assertEqual(counters["refused_clients"], 0)
        self.assertEqual(counters["bytes_from_clients"], len(request()) + 43)
        self.assertEqual(counters["bytes_from_upstreams"], len(OK_HELLO))


# -- properties of the whole protocol ---------------------------------------------------------


class ArbitraryBytesToProtocol(ProxyTestCase):
    @PROPERTY
    @given(
        data=st.one_of(st.binary(max_size=400), _chunk_soup),
        positions=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
        upstream_bytes=st.one_of(st.none(), st.binary(max_size=200), _chunk_soup),
    )
    def test_never_raises_and_keeps_serving(
        self, data: bytes, positions: list[int], upstream_bytes: bytes | None
    ) -> None:
        """Whatever a client (and then an upstream) sends, nothing raises out of the
        protocol, and a new client is still served."""
        self.make_proxy()
        client = self.client()
        for piece in _cuts(data, positions):
            client.send(piece)
        if upstream_bytes is not None and self.network.connections:
            self.network.last.respond(upstream_bytes)
        self.clock.advance(1000.0)  # every timer fires
        client.lose()
        self.network.connections.clear()
        self.assert_serves()


def _expected_head(head: RequestHead) -> bytes:
    headers: RawHeaders = []
    host_seen = False
    for name, value in end_to_end(head.headers):
        if name.lower() == b"host":
            if host_seen:
                continue
            host_seen, value = True, b"example.com"
        headers.append((name, value))
    if not host_seen:
        headers.insert(0, (b"Host", b"example.com"))
    headers.append((b"Via", b"1.1 postcap"))
    if head.framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
    path = head.target[len(b"http://example.com"):]
    return b"%s %s HTTP/1.1\r\n%s\r\n" % (head.method, path, b"".join(b"%s: %s\r\n" % h for h in headers))


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    """The payload of a chunked body and what follows its last chunk."""
    payload = b""
    while True:
        line, _, data = data.partition(b"\r\n")
        size = int(line, 16)
        if size == 0:
            return payload, data
        payload, data = payload + data[:size], data[size + 2:]


class ValidRequestsRoundTrip(ProxyTestCase):
    @PROPERTY
    @given(request_=valid_requests(), positions=st.lists(st.integers(0, 10_000), max_size=20))
    def test_forwarded_byte_for_byte(self, request_: tuple[bytes, RequestHead, bytes], positions: list[int]) -> None:
        """What the upstream receives is the request in origin-form with exactly its
        end-to-end headers in order (Host set, Via added) and exactly its body."""
        wire, head, body = request_
        if head.method == b"CONNECT":
            return
        self.make_proxy()
        client = self.client()
        for piece in _cuts(wire, positions):
            client.send(piece)
        sent = self.network.last.sent()
        expected_head = _expected_head(head)
        self.assertEqual(sent[: len(expected_head)], expected_head)
        rest = sent[len(expected_head):]
        if head.framing == "chunked":
            payload, after = _dechunk(rest)
            self.assertEqual((payload, after), (body, b"\r\n"))
        else:
            self.assertEqual(rest, body)
        self.network.last.respond(OK_HELLO)
        answer = client.received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nhello"), answer)
