"""In-memory unit tests of the HTTP/2 layers (postcap.proxy.h2server, h2upstream,
h2common): frames in, frames out, with ``h2``'s own H2Connection as the peer.

Client side: a proxy client connection on a StringTransport is switched to HTTP/2
as ALPN would (``start_h2``); the test drives it with a client-side H2Connection.
Upstream side: the fake network hands out connections whose transport says ALPN
chose ``h2``; the test answers with a server-side H2Connection.
"""

from __future__ import annotations

import gc

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import INegotiated, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from postcap.proxy.h2common import GracefulH2Connection, Outbound, RateLimit, StreamPauser, request_head, response_head
from postcap.proxy.h2server import H2ServerLayer
from postcap.proxy.h2upstream import H2UpstreamStream
from postcap.proxy.interfaces import IDownstream, IUpstreamChannel
from postcap.proxy.upstream import Origin, UpstreamPool
from postcap.proxy.server import ProxyFactory, ProxySettings
from tests.test_proxy_unit import (
    Client,
    ListRecorder,
    ProxyTestCase,
    request,
)

ORIGIN = Origin("https", "example.test", 443)


class H2Peer:
    """One end of an HTTP/2 connection driven by the test (h2's own state machine)."""

    def __init__(self, client_side: bool, settings: dict[int, int] | None = None) -> None:
        # Graceful: like real peers, it reads the streams that finish after a GOAWAY.
        self.h2 = GracefulH2Connection(H2Configuration(client_side=client_side, header_encoding=None))
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.events: list[ev.Event] = []

    def take(self) -> bytes:
        return self.h2.data_to_send()

    def feed(self, data: bytes) -> list[ev.Event]:
        events = self.h2.receive_data(data)
        self.events.extend(events)
        return events

    def of(self, kind: type, stream_id: int | None = None) -> list[ev.Event]:
        return [e for e in self.events if isinstance(e, kind)
                and (stream_id is None or getattr(e, "stream_id", None) == stream_id)]

    def body(self, stream_id: int) -> bytes:
        return b"".join(e.data for e in self.of(ev.DataReceived, stream_id))


def get_fields(path: bytes = b"/", method: bytes = b"GET", extra: list | None = None) -> list:
    return [(b":method", method), (b":scheme", b"https"), (b":authority", b"example.test"),
            (b":path", path)] + (extra or [])


class H2ClientHarness:
    """A proxy client connection that ALPN switched to HTTP/2, and the client's h2 state."""

    def __init__(self, factory: ProxyFactory, settings: dict[int, int] | None = None) -> None:
        self.client = Client(factory)
        self.client.protocol.intercepted = ORIGIN
        self.client.protocol.start_h2()
        self.peer = H2Peer(client_side=True, settings=settings)
        self.exchange()

    @property
    def layer(self) -> H2ServerLayer:
        layer = self.client.protocol.h2
        assert layer is not None
        return layer

    def exchange(self) -> None:
        """Move bytes both ways until both sides are quiet."""
        for _ in range(20):
            out = self.peer.take()
            if out:
                self.client.send(out)
            back = self.client.take()
            if back:
                self.peer.feed(back)
            if not out and not back:
                return

    def request(self, fields: list, body: bytes | None = None, trailers: list | None = None) -> int:
        stream_id = self.peer.h2.get_next_available_stream_id()
        self.peer.h2.send_headers(stream_id, fields, end_stream=body is None and not trailers)
        if body is not None:
            self.peer.h2.send_data(stream_id, body, end_stream=not trailers)
        if trailers:
            self.peer.h2.send_headers(stream_id, trailers, end_stream=True)
        self.exchange()
        return stream_id


class ClientSideTests(ProxyTestCase):
    def h2_client(self, settings: dict[int, int] | None = None) -> H2ClientHarness:
        return H2ClientHarness(self.factory, settings)

    def test_stream_provides_idownstream(self) -> None:
        harness = self.h2_client()
        self.network.hanging.add("example.test")
        stream_id = harness.request(get_fields())
        verifyObject(IDownstream, harness.layer.streams[stream_id])

    def test_get_goes_upstream_as_http11_and_answer_comes_back_with_trailers(self) -> None:
        harness = self.h2_client()
        stream_id = harness.request(get_fields(b"/path?q=1", extra=[(b"cookie", b"a=1"), (b"cookie", b"b=2"),
                                                                    (b"te", b"trailers")]))
        upstream = self.network.active()
        self.assertEqual(
            upstream.sent(),
            b"GET /path?q=1 HTTP/1.1\r\nhost: example.test\r\ncookie: a=1; b=2\r\nVia: 1.1 postcap\r\n\r\n",
        )
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                         b"Connection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: 42\r\n\r\n")
        harness.exchange()
        (response,) = harness.peer.of(ev.ResponseReceived, stream_id)
        self.assertEqual(response.headers, [(b":status", b"200"), (b"content-type", b"text/plain"),
                                            (b"via", b"1.1 postcap")])
        self.assertEqual(harness.peer.body(stream_id), b"hello")
        (trailers,) = harness.peer.of(ev.TrailersReceived, stream_id)
        self.assertEqual(trailers.headers, [(b"x-checksum", b"42")])
        self.assertEqual(len(harness.peer.of(ev.StreamEnded, stream_id)), 1)
        transaction = self.recorder.only()
        self.assertEqual(transaction.request.http_version, "HTTP/2")
        self.assertEqual(transaction.response.http_version, "HTTP/2")
        self.assertEqual(transaction.response.trailers, ((b"X-Checksum", b"42"),))
        self.assertEqual(transaction.url, "https://example.test/path?q=1")
        self.assertEqual(harness.layer.streams, {})
        self.assertEqual(self.factory.tally.requests, {("2xx", "HTTP/2"): 1})

    def test_request_body_and_trailers_go_upstream_chunked(self) -> None:
        harness = self.h2_client()
        stream_id = harness.request(get_fields(b"/up", b"POST"), body=b"abc", trailers=[(b"x-sum", b"1")])
        upstream = self.network.active()
        self.assertEqual(
            upstream.sent(),
            b"POST /up HTTP/1.1\r\nhost: example.test\r\nVia: 1.1 postcap\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nx-sum: 1\r\n\r\n",
        )
        upstream.respond(b"HTTP/1.1 204 No Content\r\n\r\n")
        harness.exchange()
        self.assertEqual(len(harness.peer.of(ev.StreamEnded, stream_id)), 1)
        self.assertEqual(self.recorder.only().request.trailers, ((b"x-sum", b"1"),))

    def test_streams_run_concurrently_and_answer_out_of_order(self) -> None:
        harness = self.h2_client()
        first = harness.request(get_fields(b"/1"))
        second = harness.request(get_fields(b"/2"))
        one, two = self.network.connections
        two.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
        harness.exchange()
        self.assertEqual(harness.peer.body(second), b"two")
        self.assertEqual(harness.peer.of(ev.StreamEnded, first), [])
        one.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        harness.exchange()
        self.assertEqual(harness.peer.body(first), b"one")

    def test_upstream_error_costs_its_stream_only(self) -> None:
        from twisted.internet.error import ConnectionRefusedError

        self.network.failures["example.test"] = ConnectionRefusedError()
        harness = self.h2_client()
        stream_id = harness.request(get_fields())
        (response,) = harness.peer.of(ev.ResponseReceived, stream_id)
        self.assertIn((b":status", b"502"), response.headers)
        self.assertIn((b"x-postcap-error", b"refused"), response.headers)
        self.assertEqual(self.factory.tally.requests, {("5xx", "HTTP/2"): 1})
        self.assertTrue(harness.peer.body(stream_id).startswith(b"postcap: "))
        del self.network.failures["example.test"]
        again = harness.request(get_fields())
        self.network.active().respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        harness.exchange()
        self.assertEqual(harness.peer.body(again), b"ok")
        self.assertFalse(harness.client.closing)

    def test_response_waits_for_client_window_and_pauses_the_upstream(self) -> None:
        harness = self.h2_client(settings={SettingCodes.INITIAL_WINDOW_SIZE: 4})
        stream_id = harness.request(get_fields())
        upstream = self.network.active()
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n0123456789")
        harness.exchange()
        self.assertEqual(harness.peer.body(stream_id), b"0123")
        self.assertEqual(upstream.transport.producerState, "paused")
        harness.peer.h2.increment_flow_control_window(100, stream_id)
        harness.exchange()
        self.assertEqual(harness.peer.body(stream_id), b"0123456789")
        self.assertEqual(upstream.transport.producerState, "producing")
        upstream.respond(b"abcdefghij")
        harness.exchange()
        self.assertEqual(harness.peer.body(stream_id), b"0123456789abcdefghij")
        self.assertEqual(len(harness.peer.of(ev.StreamEnded, stream_id)), 1)

    def test_request_data_is_acknowledged_only_as_the_upstream_takes_it(self) -> None:
        harness = self.h2_client()
        stream_id = harness.peer.h2.get_next_available_stream_id()
        harness.peer.h2.send_headers(stream_id, get_fields(b"/up", b"PUT", [(b"content-length", b"300000")]))
        harness.exchange()
        upstream = self.network.active()
        stream = harness.layer.streams[stream_id]
        self.assertIs(upstream.transport.producer, stream.pauser)
        stream.pauser.pauseProducing()  # the upstream's socket is full
        window = harness.peer.h2.local_flow_control_window(stream_id)
        for _ in range(window // 16384):
            harness.peer.h2.send_data(stream_id, b"x" * 16384)
        harness.exchange()
        self.assertEqual(harness.peer.h2.local_flow_control_window(stream_id), window % 16384)
        stream.pauser.resumeProducing()
        harness.exchange()
        self.assertEqual(harness.peer.h2.local_flow_control_window(stream_id), window)
        self.assertEqual(len(upstream.sent().split(b"\r\n\r\n", 1)[1]), window - window % 16384)

    def test_stalled_streams_do_not_hold_up_the_others(self) -> None:
        self.network.hanging.add("example.test")  # nothing is read while connecting
        harness = self.h2_client()
        peer = harness.peer.h2
        for _ in range(20):
            stream_id = peer.get_next_available_stream_id()
            peer.send_headers(stream_id, get_fields(b"/up", b"PUT", [(b"content-length", b"999999")]))
            for _ in range(H2ServerLayer.initial_window_size // 16384):
                peer.send_data(stream_id, b"x" * 16384)
            harness.exchange()
        self.assertEqual(peer.local_flow_control_window(stream_id), 0)  # this stream waits
        fresh = peer.get_next_available_stream_id()
        peer.send_headers(fresh, get_fields(b"/up", b"PUT", [(b"content-length", b"1")]))
        self.assertEqual(peer.local_flow_control_window(fresh), H2ServerLayer.initial_window_size)

    def test_client_reset_drops_the_upstream_of_that_stream_only(self) -> None:
        harness = self.h2_client()
        first = harness.request(get_fields(b"/1"))
        second = harness.request(get_fields(b"/2"))
        one, two = self.network.connections
        harness.peer.h2.reset_stream(first, ErrorCodes.CANCEL)
        harness.exchange()
        self.assertTrue(one.closed)
        self.assertFalse(two.closed)
        two.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        harness.exchange()
        self.assertEqual(harness.peer.body(second), b"ok")
        self.assertEqual(self.recorder.transactions[0].error, "client disconnected before the exchange ended")

    def test_cut_short_response_resets_the_stream(self) -> None:
        harness = self.h2_client()
        stream_id = harness.request(get_fields())
        upstream = self.network.active()
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01")
        upstream.close()
        harness.exchange()
        (reset,) = harness.peer.of(ev.StreamReset, stream_id)
        self.assertEqual(reset.error_code, ErrorCodes.INTERNAL_ERROR)
        self.assertFalse(harness.client.closing)

    def test_graceful_goaway_from_client_lets_open_streams_finish(self) -> None:
        harness = self.h2_client()
        stream_id = harness.request(get_fields())
        harness.peer.h2.announce_goaway()
        harness.exchange()
        self.assertFalse(harness.client.closing)
        self.network.active().respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        harness.exchange()
        self.assertEqual(harness.peer.body(stream_id), b"ok")
        self.assertTrue(harness.client.closing)

    def test_error_goaway_from_client_closes_at_once(self) -> None:
        harness = self.h2_client()
        harness.request(get_fields())
        harness.peer.h2.close_connection(ErrorCodes.INTERNAL_ERROR)
        harness.exchange()
        self.assertTrue(harness.client.closing)

    def test_drain_sends_goaway(self) -> None:
        harness = self.h2_client()
        self.factory.drain(5.0)
        harness.exchange()
        goaways = harness.peer.of(ev.ConnectionTerminated)
        self.assertEqual([g.error_code for g in goaways], [ErrorCodes.NO_ERROR] * 2)
        self.assertTrue(harness.client.closing)

    def test_drain_lets_open_streams_finish_and_refuses_new_ones(self) -> None:
        harness = self.h2_client()
        stream_id = harness.request(get_fields(b"/1"))
        self.factory.drain(5.0)
        harness.exchange()
        self.assertFalse(harness.client.closing)
        self.assertEqual(len(harness.peer.of(ev.ConnectionTerminated)), 1)  # announced at once
        refused = harness.request(get_fields(b"/2"))
        (reset,) = harness.peer.of(ev.StreamReset, refused)
        self.assertEqual(reset.error_code, ErrorCodes.REFUSED_STREAM)
        self.network.active().respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        harness.exchange()
        self.assertEqual(harness.peer.body(stream_id), b"ok")
        self.assertEqual([g.error_code for g in harness.peer.of(ev.ConnectionTerminated)],
                         [ErrorCodes.NO_ERROR] * 2)
        self.assertTrue(harness.client.closing)

    def test_idle_connection_is_closed(self) -> None:
        harness = self.h2_client()
        self.clock.advance(self.settings.idle_timeout + 1)
        harness.exchange()
        self.assertTrue(harness.client.closing)

    def test_missing_pseudo_header_is_a_stream_error(self) -> None:
        harness = self.h2_client()
        stream_id = harness.request([(b":method", b"CONNECT"), (b":authority", b"x.test:443")])
        (response,) = harness.peer.of(ev.ResponseReceived, stream_id)
        self.assertIn((b":status", b"400"), response.headers)
        self.assertEqual(self.network.attempts, [])
        self.assertFalse(harness.client.closing)


class HostileClientTests(ProxyTestCase):
    def assert_calmed(self, harness: H2ClientHarness, code: ErrorCodes = ErrorCodes.ENHANCE_YOUR_CALM) -> None:
        (goaway,) = harness.peer.of(ev.ConnectionTerminated)
        self.assertEqual(goaway.error_code, code)
        self.assertTrue(harness.client.closing)
        harness.client.lose()
        self.assert_serves()

    def test_rapid_reset_gets_goaway(self) -> None:
        self.network.hanging.add("example.test")
        harness = H2ClientHarness(self.factory)
        for _ in range(H2ServerLayer.max_resets + 1):
            stream_id = harness.peer.h2.get_next_available_stream_id()
            harness.peer.h2.send_headers(stream_id, get_fields())
            harness.peer.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
            if harness.client.closing:
                break
            harness.exchange()
        harness.exchange()
        self.assertLessEqual(len(self.recorder.begun), H2ServerLayer.max_resets + 1)
        self.assert_calmed(harness)

    def test_settings_flood_gets_goaway(self) -> None:
        harness = H2ClientHarness(self.factory)
        for _ in range(H2ServerLayer.max_settings + 1):
            harness.peer.h2.update_settings({SettingCodes.MAX_FRAME_SIZE: 16384})
        harness.exchange()
        self.assert_calmed(harness)

    def test_ping_flood_gets_goaway(self) -> None:
        harness = H2ClientHarness(self.factory)
        for index in range(H2ServerLayer.max_pings + 1):
            harness.peer.h2.ping(b"%08d" % index)
        harness.exchange()
        self.assert_calmed(harness)

    def test_more_streams_than_advertised_is_a_connection_error(self) -> None:
        self.network.hanging.add("example.test")
        harness = H2ClientHarness(self.factory)
        self.assertEqual(harness.peer.h2.remote_settings.max_concurrent_streams,
                         H2ServerLayer.max_concurrent_streams)
        # Ignore the advertised limit, as an attacker would.
        harness.peer.h2.remote_settings[SettingCodes.MAX_CONCURRENT_STREAMS] = 1000
        harness.peer.h2.remote_settings.acknowledge()
        for _ in range(H2ServerLayer.max_concurrent_streams):
            harness.peer.h2.send_headers(harness.peer.h2.get_next_available_stream_id(), get_fields())
        harness.exchange()
        harness.peer.h2.send_headers(harness.peer.h2.get_next_available_stream_id(), get_fields())
        harness.exchange()
        self.assertEqual(len(self.recorder.begun), H2ServerLayer.max_concurrent_streams)
        self.assert_calmed(harness, ErrorCodes.PROTOCOL_ERROR)

    def test_huge_header_list_is_refused(self) -> None:
        harness = H2ClientHarness(self.factory)
        big = [(b"x-big-%d" % i, b"v" * 1000) for i in range(100)]
        harness.peer.h2.send_headers(1, get_fields(extra=big), end_stream=True)
        harness.exchange()
        self.assertEqual(self.recorder.begun, [])
        self.assert_calmed(harness)

    def test_malformed_requests_cost_their_stream_only(self) -> None:
        harness = H2ClientHarness(self.factory)
        # A body shorter than its content-length.
        short = harness.request(get_fields(b"/up", b"POST", [(b"content-length", b"10")]), body=b"abc")
        # Fields HTTP/2 forbids (upper case, connection-specific), from a peer that does not check.
        harness.peer.h2.config.validate_outbound_headers = False
        harness.peer.h2.config.normalize_outbound_headers = False
        bad = harness.request(get_fields(extra=[(b"X-Upper", b"1"), (b"connection", b"keep-alive")]))
        for stream_id in (short, bad):
            (reset,) = harness.peer.of(ev.StreamReset, stream_id)
            self.assertEqual(reset.error_code, ErrorCodes.PROTOCOL_ERROR)
        self.assertFalse(harness.client.closing)
        self.assertEqual(harness.layer.streams, {})
        good = harness.request(get_fields(b"/ok"))
        self.network.active().respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        harness.exchange()
        self.assertEqual(harness.peer.body(good), b"ok")

    def test_broken_header_compression_is_a_connection_error(self) -> None:
        from hyperframe.frame import HeadersFrame

        harness = H2ClientHarness(self.factory)
        frame = HeadersFrame(1)
        frame.data = b"\xff\xff\xff\xff\xff"  # an HPACK index far out of range
        frame.flags.add("END_HEADERS")
        harness.client.send(frame.serialize())
        self.assertTrue(harness.client.closing)
        self.assertEqual(self.factory.errors["h2-protocol"], 1)

    def test_garbage_instead_of_the_preface_closes_the_connection(self) -> None:
        client = Client(self.factory)
        client.protocol.intercepted = ORIGIN
        client.protocol.start_h2()
        client.send(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
        self.assertTrue(client.closing)
        self.assertEqual(self.factory.errors["h2-protocol"], 1)


# -- upstream HTTP/2 ---------------------------------------------------------------


@implementer(INegotiated)
class NegotiatedTransport(StringTransport):
    negotiatedProtocol: bytes | None = b"h2"


@implementer(IStreamClientEndpoint)
class H2Endpoint:
    def __init__(self, network: "H2Network", origin: Origin) -> None:
        self.network, self.origin = network, origin

    def connect(self, factory: Factory) -> Deferred:
        protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.80", 443))
        transport = NegotiatedTransport(peerAddress=IPv4Address("TCP", "192.0.2.80", 443), lenient=True)
        transport.negotiatedProtocol = self.network.alpn
        protocol.makeConnection(transport)
        if not self.network.hold_handshakes:
            protocol.handshakeCompleted()  # ALPN chose h2
        peer = H2Peer(client_side=False)
        self.network.origins.append((protocol, transport, peer))
        return succeed(protocol)


class H2Network:
    def __init__(self) -> None:
        self.origins: list = []
        self.alpn: bytes | None = b"h2"
        self.hold_handshakes = False

    def __call__(self, origin: Origin) -> IStreamClientEndpoint:
        return H2Endpoint(self, origin)

    def exchange(self, index: int = -1) -> H2Peer:
        protocol, transport, peer = self.origins[index]
        for _ in range(20):
            sent = transport.value()
            transport.clear()
            if sent:
                peer.feed(sent)
            back = peer.take()
            if back:
                protocol.dataReceived(back)
            if not sent and not back:
                break
        return peer


class UpstreamSideTests(SynchronousTestCase):
    def setUp(self) -> None:
        from twisted.internet.testing import MemoryReactorClock

        self.addCleanup(gc.collect)
        self.clock = MemoryReactorClock()
        self.network = H2Network()
        self.recorder = ListRecorder()
        self.pool = UpstreamPool(self.clock, endpoint_factory=self.network)
        self.factory = ProxyFactory(self.clock, ProxySettings(), self.recorder, pool=self.pool)

    def h1_client(self) -> Client:
        client = Client(self.factory)
        client.protocol.intercepted = ORIGIN
        return client

    def test_h1_client_to_h2_origin_with_trailers(self) -> None:
        client = self.h1_client()
        client.send(request(b"POST", b"/rpc", (b"Host: example.test", b"Connection: keep-alive",
                                               b"TE: trailers", b"Content-Length: 3"), b"abc"))
        peer = self.network.exchange()
        (received,) = peer.of(ev.RequestReceived)
        self.assertEqual(received.headers, [
            (b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"example.test"),
            (b":path", b"/rpc"), (b"content-length", b"3"), (b"via", b"1.1 postcap"), (b"te", b"trailers"),
        ])
        self.assertEqual(peer.body(received.stream_id), b"abc")
        self.assertEqual(len(peer.of(ev.StreamEnded)), 1)
        peer.h2.send_headers(received.stream_id, [(b":status", b"200"), (b"content-type", b"application/x")])
        peer.h2.send_data(received.stream_id, b"hello")
        peer.h2.send_headers(received.stream_id, [(b"grpc-status", b"0")], end_stream=True)
        self.network.exchange()
        self.assertEqual(
            client.take(),
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x\r\nVia: 1.1 postcap\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n",
        )
        transaction = self.recorder.only()
        self.assertEqual(transaction.request.http_version, "HTTP/1.1")
        self.assertEqual(transaction.response.http_version, "HTTP/2")
        self.assertEqual(transaction.response.trailers, ((b"grpc-status", b"0"),))

    def test_concurrent_exchanges_share_one_connection(self) -> None:
        clients = [self.h1_client() for _ in range(3)]
        for index, client in enumerate(clients):
            client.send(request(b"GET", b"/%d" % index, (b"Host: example.test",)))
        self.assertEqual(len(self.network.origins), 1)
        peer = self.network.exchange()
        received = peer.of(ev.RequestReceived)
        self.assertEqual([r.stream_id for r in received], [1, 3, 5])
        for event in reversed(received):
            peer.h2.send_headers(event.stream_id, [(b":status", b"200"), (b"content-length", b"1")])
            peer.h2.send_data(event.stream_id, b"k", end_stream=True)
        self.network.exchange()
        for client in clients:
            self.assertTrue(client.take().endswith(b"\r\n\r\nk"))
        self.assertEqual(len(self.recorder.transactions), 3)
        # The next request reuses the connection too.
        client = clients[0]
        client.send(request(b"GET", b"/again", (b"Host: example.test",)))
        self.assertEqual(len(self.network.origins), 1)
        stream = client.protocol.exchange.upstream
        verifyObject(IUpstreamChannel, stream)
        self.assertIsInstance(stream, H2UpstreamStream)

    def test_exchanges_wait_for_the_first_connection_and_share_it(self) -> None:
        self.network.hold_handshakes = True
        clients = [self.h1_client() for _ in range(3)]
        for client in clients:
            client.send(request(b"GET", b"/", (b"Host: example.test",)))
        self.assertEqual(len(self.network.origins), 1)
        self.network.origins[0][0].handshakeCompleted()
        peer = self.network.exchange()
        self.assertEqual([r.stream_id for r in peer.of(ev.RequestReceived)], [1, 3, 5])

    def test_waiters_open_their_own_connections_when_the_origin_speaks_http11(self) -> None:
        self.network.hold_handshakes = True
        self.network.alpn = b"http/1.1"
        clients = [self.h1_client() for _ in range(3)]
        for client in clients:
            client.send(request(b"GET", b"/", (b"Host: example.test",)))
        self.assertEqual(len(self.network.origins), 1)
        self.network.origins[0][0].handshakeCompleted()
        for protocol, _, _ in self.network.origins[1:]:
            protocol.handshakeCompleted()
        self.assertEqual(len(self.network.origins), 3)
        for protocol, transport, _ in self.network.origins:
            self.assertTrue(transport.value().startswith(b"GET / HTTP/1.1\r\n"))
        # Known now: the next connection to it does not wait.
        self.network.hold_handshakes = False
        late = self.h1_client()
        late.send(request(b"GET", b"/late", (b"Host: example.test",)))
        self.assertEqual(len(self.network.origins), 4)

    def test_waiters_fail_with_the_first_connection(self) -> None:
        self.network.hold_handshakes = True
        clients = [self.h1_client() for _ in range(2)]
        for client in clients:
            client.send(request(b"GET", b"/", (b"Host: example.test",)))
        protocol, transport, _ = self.network.origins[0]
        protocol.connectionLost(Failure(ConnectionDone()))
        for client in clients:
            answer = client.take()
            self.assertTrue(answer.startswith(b"HTTP/1.1 502 Bad Gateway"), answer)
            self.assertIn(b"X-Postcap-Error: tls", answer)
        self.assertEqual(len(self.network.origins), 1)

    def test_stream_limit_of_the_origin_opens_another_connection(self) -> None:
        first = self.h1_client()
        first.send(request(b"GET", b"/1", (b"Host: example.test",)))
        peer = self.network.exchange()
        peer.h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        self.network.exchange()
        second = self.h1_client()
        second.send(request(b"GET", b"/2", (b"Host: example.test",)))
        self.assertEqual(len(self.network.origins), 2)

    def test_upstream_reset_is_a_502_for_that_exchange(self) -> None:
        client = self.h1_client()
        client.send(request(b"GET", b"/", (b"Host: example.test",)))
        peer = self.network.exchange()
        (received,) = peer.of(ev.RequestReceived)
        peer.h2.reset_stream(received.stream_id, ErrorCodes.REFUSED_STREAM)
        self.network.exchange()
        answer = client.take()
        self.assertTrue(answer.startswith(b"HTTP/1.1 502 Bad Gateway"), answer)
        self.assertIn(b"REFUSED_STREAM", answer)

    def test_graceful_goaway_lets_streams_in_flight_finish(self) -> None:
        client = self.h1_client()
        client.send(request(b"GET", b"/", (b"Host: example.test",)))
        peer = self.network.exchange()
        (received,) = peer.of(ev.RequestReceived)
        peer.h2.announce_goaway()
        self.network.exchange()
        peer.h2.send_headers(received.stream_id, [(b":status", b"200"), (b"content-length", b"2")])
        peer.h2.send_data(received.stream_id, b"ok", end_stream=True)
        self.network.exchange()
        self.assertTrue(client.take().endswith(b"\r\n\r\nok"))
        other = self.h1_client()
        other.send(request(b"GET", b"/", (b"Host: example.test",)))
        self.assertEqual(len(self.network.origins), 2)

    def test_goaway_fails_streams_the_origin_never_saw_and_stops_reuse(self) -> None:
        client = self.h1_client()
        client.send(request(b"GET", b"/", (b"Host: example.test",)))
        peer = self.network.exchange()
        peer.h2.announce_goaway(last_stream_id=0)
        self.network.exchange()
        self.assertIn(b"502", client.take())
        other = self.h1_client()
        other.send(request(b"GET", b"/", (b"Host: example.test",)))
        self.assertEqual(len(self.network.origins), 2)

    def test_client_gone_resets_the_upstream_stream(self) -> None:
        client = self.h1_client()
        client.send(request(b"GET", b"/", (b"Host: example.test",)))
        peer = self.network.exchange()
        client.lose()
        self.network.exchange()
        (reset,) = peer.of(ev.StreamReset)
        self.assertEqual(reset.error_code, ErrorCodes.CANCEL)

    def test_response_body_is_acknowledged_as_the_client_takes_it(self) -> None:
        client = self.h1_client()
        client.send(request(b"GET", b"/", (b"Host: example.test",)))
        peer = self.network.exchange()
        (received,) = peer.of(ev.RequestReceived)
        stream_id = received.stream_id
        peer.h2.send_headers(stream_id, [(b":status", b"200")])
        self.network.exchange()
        client.transport.producer.pauseProducing()  # the client's socket is full
        window = peer.h2.local_flow_control_window(stream_id)
        for _ in range(window // 16384):
            peer.h2.send_data(stream_id, b"x" * 16384)
        self.network.exchange()
        self.assertEqual(peer.h2.local_flow_control_window(stream_id), window % 16384)
        client.transport.producer.resumeProducing()
        self.network.exchange()
        self.assertEqual(peer.h2.local_flow_control_window(stream_id), window)


class SansIOPieceTests(SynchronousTestCase):
    def test_request_head_translation(self) -> None:
        head = request_head([(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"a.test"),
                             (b":path", b"/x"), (b"content-length", b"2"), (b"cookie", b"a=1"),
                             (b"cookie", b"b=2")], stream_ended=False)
        self.assertEqual((head.method, head.target, head.version, head.framing, head.length),
                         (b"POST", b"/x", b"HTTP/2", "length", 2))
        self.assertEqual(head.headers, [(b"host", b"a.test"), (b"content-length", b"2"), (b"cookie", b"a=1; b=2")])
        self.assertEqual(request_head(get_fields(), stream_ended=False).framing, "chunked")
        self.assertEqual(request_head(get_fields(), stream_ended=True).framing, "none")
        with self.assertRaises(ValueError):
            request_head([(b":path", b"/")], stream_ended=True)

    def test_response_head_translation(self) -> None:
        head = response_head([(b":status", b"404"), (b"content-type", b"text/plain")], stream_ended=True)
        self.assertEqual((head.status, head.reason, head.framing), (404, b"Not Found", "none"))

    def test_stream_pauser_holds_acknowledgements(self) -> None:
        acked: list[int] = []
        pauser = StreamPauser(acked.append)
        pauser.received(5)
        pauser.pause("a")
        pauser.pauseProducing()
        pauser.received(7)
        pauser.received(1)
        pauser.resume("a")
        self.assertEqual(acked, [5])
        pauser.resumeProducing()
        self.assertEqual(acked, [5, 8])
        pauser.pause("b")
        pauser.received(3)
        pauser.release()
        self.assertEqual(acked, [5, 8, 3])

    def test_outbound_waits_for_window_then_sends_end(self) -> None:
        peer = H2Peer(client_side=True, settings={SettingCodes.INITIAL_WINDOW_SIZE: 3})
        server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        server.initiate_connection()
        server.receive_data(peer.take())
        peer.feed(server.data_to_send())
        server.receive_data(peer.take())
        peer.h2.send_headers(1, get_fields(), end_stream=True)
        server.receive_data(peer.take())
        server.send_headers(1, [(b":status", b"200")])
        producer = StreamPauser(lambda size: None)
        outbound = Outbound(server, 1, lambda: None)
        outbound.set_producer(producer)
        outbound.send_data(b"abcdef")
        outbound.send_end([(b"x", b"1")])
        self.assertTrue(producer.paused_for("h2-window"))
        peer.feed(server.data_to_send())
        self.assertEqual(peer.body(1), b"abc")
        peer.h2.increment_flow_control_window(10, 1)
        server.receive_data(peer.take())
        outbound.window_opened()
        peer.feed(server.data_to_send())
        self.assertEqual(peer.body(1), b"abcdef")
        self.assertEqual(len(peer.of(ev.TrailersReceived, 1)), 1)
        self.assertFalse(producer.paused)

    def test_rate_limit_window(self) -> None:
        now = [0.0]
        limit = RateLimit(2, 10.0, lambda: now[0])
        self.assertEqual([limit.hit(), limit.hit(), limit.hit()], [False, False, True])
        now[0] = 11.0
        self.assertFalse(limit.hit())


