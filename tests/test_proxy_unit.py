"""In-memory unit tests of the forward proxy (postcap.proxy.server, exchange, upstream,
tunnel) and of body capture: no sockets and no global reactor.

The harness wires a real :class:`ProxyFactory` to a :class:`MemoryReactorClock` and to an
:class:`UpstreamPool` whose ``endpoint_factory`` is :class:`FakeNetwork`: each connect
attempt is recorded and, per host, fails, hangs until the test completes it, or
"connects" a :class:`StringTransport` at once.  Clients are protocols built by the
factory on their own ``StringTransport``: bytes go in with ``dataReceived`` and come out
with ``value()``.  ``StringTransport`` never reports a closed connection by itself, so
tests deliver ``connectionLost`` where the reactor would.  Transports are ``lenient``:
like real TCP and TLS transports, they accept ``resumeProducing`` after a close.  Each
test collects garbage before it ends, so that an unhandled error in a Deferred fails
the test that caused it.
"""

from __future__ import annotations

import gc
import ipaddress
from io import BytesIO
from typing import IO, Callable
from dataclasses import dataclass, field

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
    TimeoutError,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from postcap.capture import BodyCapture, CaptureTicket, Spooler
from postcap.filters import CaptureFilter
from postcap.model import Address, Body, Timings, Transaction
from postcap.proxy.exchange import TransportPauser
from postcap.proxy.server import ProxyFactory, ProxyServerProtocol, ProxySettings, error_response
from postcap.proxy.upstream import Origin, UpstreamPool

SESSION = "session-1"
CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)

OK_HELLO = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
OK_HELLO_TO_CLIENT = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
    b"Via: 1.1 postcap\r\n\r\nhello"
)


# -- the harness ----------------------------------------------------------------------


def setup_module() -> None:
    # Objects that exist before the tests are never garbage here: leave them out of
    # the collection each test runs at its end, which keeps the file fast.
    gc.collect()
    gc.freeze()


def teardown_module() -> None:
    gc.unfreeze()


def request(
    method: bytes = b"GET",
    target: bytes = b"http://example.test/",
    headers: tuple[bytes, ...] = (),
    body: bytes = b"",
    version: bytes = b"HTTP/1.1",
) -> bytes:
    """A request: start line, raw header lines, blank line, then ``body`` verbatim."""
    return b"%s %s %s\r\n%s\r\n%s" % (
        method, target, version, b"".join(h + b"\r\n" for h in headers), body,
    )


def forwarded(
    method: bytes = b"GET",
    path: bytes = b"/",
    headers: tuple[bytes, ...] = (b"Host: example.test",),
    body: bytes = b"",
) -> bytes:
    """What the upstream should receive: origin-form, the given headers, then Via."""
    return b"%s %s HTTP/1.1\r\n%sVia: 1.1 postcap\r\n\r\n%s" % (
        method, path, b"".join(h + b"\r\n" for h in headers), body,
    )


@dataclass
class Upstream:
    """One fake upstream connection: what the proxy sent it and how it answers."""

    origin: Origin
    protocol: Protocol
    transport: StringTransport

    def sent(self) -> bytes:
        return self.transport.value()

    def respond(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def close(self) -> None:
        """The upstream closes its side (a clean FIN)."""
        self.transport.loseConnection()
        self.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting or self.transport.disconnected)


@dataclass
class PendingConnect:
    network: "FakeNetwork"
    origin: Origin
    factory: Factory
    deferred: Deferred = field(default_factory=Deferred)

    def complete(self) -> Upstream:
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.80", self.origin.port))
        transport = StringTransport(
            peerAddress=IPv4Address("TCP", "192.0.2.80", self.origin.port), lenient=True
        )
        protocol.makeConnection(transport)
        upstream = Upstream(self.origin, protocol, transport)
        self.network.connections.append(upstream)
        if self in self.network.pending:
            self.network.pending.remove(self)
        self.deferred.callback(protocol)
        return upstream

    def fail(self, exception: Exception) -> None:
        self.network.pending.remove(self)
        self.deferred.errback(Failure(exception))


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    def __init__(self, network: "FakeNetwork", origin: Origin) -> None:
        self.network = network
        self.origin = origin

    def connect(self, protocolFactory: Factory) -> Deferred:
        return self.network.connect(self.origin, protocolFactory)


class FakeNetwork:
    """The pool's ``endpoint_factory``: records every connect attempt; a host in
    :attr:`failures` fails with that exception, one in :attr:`hanging` waits in
    :attr:`pending` for the test, any other connects at once."""

    def __init__(self) -> None:
        self.attempts: list[Origin] = []
        self.failures: dict[str, Exception] = {}
        self.hanging: set[str] = set()
        self.connections: list[Upstream] = []
        self.pending: list[PendingConnect] = []

    def __call__(self, origin: Origin) -> IStreamClientEndpoint:
        return FakeEndpoint(self, origin)

    def connect(self, origin: Origin, factory: Factory) -> Deferred:
        self.attempts.append(origin)
        if origin.host in self.failures:
            return fail(self.failures[origin.host])
        pending = PendingConnect(self, origin, factory)
        self.pending.append(pending)
        if origin.host not in self.hanging:
            pending.complete()
        return pending.deferred

    @property
    def last(self) -> Upstream:
        return self.connections[-1]

    def active(self) -> Upstream:
        """The one upstream connection an exchange is attached to."""
        (busy,) = [u for u in self.connections if getattr(u.protocol, "listener", None) is not None]
        return busy


class ListRecorder:
    """The Recorder: hands out tickets (or None) and collects finished transactions."""

    def __init__(
        self,
        capture: bool = True,
        observes_all: bool = True,
        save_responses: bool = True,
        capture_filter: CaptureFilter | None = None,
    ) -> None:
        self.capture = capture
        self.observes_all = observes_all
        self.save_responses = save_responses
        self.filter = capture_filter or CaptureFilter()
        self.begun: list[tuple[str, str]] = []
        self.completed: list[tuple[CaptureTicket | None, Transaction]] = []

    def begin(self, method: str, url: str) -> CaptureTicket | None:
        self.begun.append((method, url))
        if not self.capture:
            return None
        return CaptureTicket(SESSION, self.save_responses, self.filter)

    def complete(self, ticket: CaptureTicket | None, transaction: Transaction) -> None:
        self.completed.append((ticket, transaction))

    congested = False

    def when_drained(self) -> Deferred[None]:
        self.drained = Deferred()
        return self.drained

    @property
    def transactions(self) -> list[Transaction]:
        return [t for _, t in self.completed]

    def only(self) -> Transaction:
        (transaction,) = self.transactions
        return transaction


class Client:
    """A client connection to the proxy, on a StringTransport."""

    def __init__(self, factory: ProxyFactory, address: IPv4Address = CLIENT) -> None:
        self.protocol = factory.buildProtocol(address)
        assert self.protocol is not None
        self.transport = StringTransport(peerAddress=address, lenient=True)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def received(self) -> bytes:
        return self.transport.value()

    def take(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def lose(self, reason: Exception | None = None) -> None:
        """The connection is gone (what the reactor reports after a close or a reset)."""
        self.transport.disconnecting = True
        self.protocol.connectionLost(Failure(reason or ConnectionDone()))

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)


class ProxyTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.addCleanup(gc.collect)
        self.make_proxy()

    def make_proxy(self, recorder: ListRecorder | None = None, **settings: object) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1000.0)
        self.network = FakeNetwork()
        self.recorder = recorder or ListRecorder()
        self.settings = ProxySettings(**settings)  # type: ignore[arg-type]
        self.pool = UpstreamPool(self.clock, endpoint_factory=self.network)
        self.factory = ProxyFactory(self.clock, self.settings, self.recorder, pool=self.pool)

    def client(self, address: IPv4Address = CLIENT) -> Client:
        return Client(self.factory, address)

    def assert_serves(self) -> None:
        """A new client connection on the same factory gets a normal answer."""
        client = self.client(IPv4Address("TCP", "127.0.0.1", 40999))
        client.send(request(target=b"http://alive.test/"))
        upstream = self.network.active()
        self.assertEqual(upstream.sent()[-len(forwarded(headers=(b"Host: alive.test",))):],
                         forwarded(headers=(b"Host: alive.test",)))
        upstream.respond(OK_HELLO)
        self.assertEqual(client.received(), OK_HELLO_TO_CLIENT)
        self.assertFalse(client.closing)

    def assert_error(self, data: bytes, status: bytes, kind: bytes, close: bool = True) -> None:
        """``data`` is one proxy-made error answer: plain text naming postcap."""
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0][: len(b"HTTP/1.1 ") + 3], b"HTTP/1.1 " + status)
        self.assertIn(b"Content-Type: text/plain; charset=utf-8", lines)
        self.assertIn(b"Content-Length: %d" % len(body), lines)
        self.assertIn(b"X-Postcap-Error: " + kind, lines)
        self.assertIn(b"Connection: close" if close else b"Connection: keep-alive", lines)
        self.assertTrue(body.startswith(b"postcap: "), body)
        self.assertTrue(body.endswith(b"\n"))


class HarnessTests(ProxyTestCase):
    def test_fake_endpoint_provides_interface(self) -> None:
        verifyObject(IStreamClientEndpoint, self.network(Origin("http", "example.test", 80)))

    def test_error_response_bytes(self) -> None:
        self.assertEqual(
            error_response(502, "refused", "connection refused by example.test:80", False),
            b"HTTP/1.1 502 Bad Gateway\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 47\r\n"
            b"X-Postcap-Error: refused\r\n"
            b"Connection: close\r\n"
            b"\r\n"
            b"postcap: connection refused by example.test:80\n",
        )


# -- forwarding ---------------------------------------------------------------------------


class ForwardingTests(ProxyTestCase):
    def test_simple_get(self) -> None:
        self.network.hanging.add("example.test")
        client = self.client()
        client.send(
            b"GET http://example.test/path?q=1 HTTP/1.1\r\n"
            b"Host: wrong.example\r\n"
            b"user-agent: UA/1\r\n"
            b"Connection: keep-alive, X-Hop\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"Proxy-Connection: keep-alive\r\n"
            b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
            b"TE: trailers\r\n"
            b"Upgrade: h2c\r\n"
            b"X-Hop: secret\r\n"
            b"ACCEPT: */*\r\n"
            b"X-Multi: 1\r\n"
            b"X-Multi: 2\r\n"
            b"\r\n"
        )
        self.assertEqual(self.network.attempts, [Origin("http", "example.test", 80)])
        # Reading from the client waits while the upstream connects.
        self.assertEqual(client.transport.producerState, "paused")
        self.clock.advance(0.25)
        upstream = self.network.pending[0].complete()
        self.assertEqual(client.transport.producerState, "producing")
        self.assertEqual(
            upstream.sent(),
            b"GET /path?q=1 HTTP/1.1\r\n"
            b"Host: example.test\r\n"
            b"user-agent: UA/1\r\n"
            b"ACCEPT: */*\r\n"
            b"X-Multi: 1\r\n"
            b"X-Multi: 2\r\n"
            b"Via: 1.1 postcap\r\n"
            b"\r\n",
        )
        self.clock.advance(0.5)
        upstream.respond(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
            b"Keep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\nhel"
        )
        self.assertEqual(self.recorder.completed, [])
        self.clock.advance(0.125)
        upstream.respond(b"lo")
        self.assertEqual(client.received(), OK_HELLO_TO_CLIENT)
        self.assertFalse(client.closing)
        self.assertFalse(upstream.closed)
        self.assertEqual(self.pool.idle_count, 1)

        ticket, txn = self.recorder.completed[0]
        self.assertEqual(self.recorder.begun, [("GET", "http://example.test/path?q=1")])
        self.assertIsNotNone(ticket)
        self.assertEqual(txn.session_id, SESSION)
        self.assertEqual(txn.url, "http://example.test/path?q=1")
        self.assertEqual(txn.scheme, "http")
        self.assertEqual(txn.kind, "http")
        self.assertEqual(txn.client, Address("127.0.0.1", 40000))
        self.assertEqual(txn.server, Address("example.test", 80))
        self.assertEqual(txn.started_at, 1000.0)
        self.assertEqual(txn.duration_ms, 875.0)
        self.assertEqual(txn.request.method, "GET")
        self.assertEqual(txn.request.target, b"http://example.test/path?q=1")
        self.assertEqual(txn.request.http_version, "HTTP/1.1")
        self.assertEqual(txn.request.headers[0], (b"Host", b"wrong.example"))
        self.assertEqual(len(txn.request.headers), 12)  # as received, hop-by-hop included
        self.assertEqual(txn.request.body, Body(size=0, captured=True, content=b""))
        assert txn.response is not None
        self.assertEqual(txn.status, 200)
        self.assertEqual(txn.response.reason, "OK")
        self.assertEqual(txn.response.http_version, "HTTP/1.1")
        self.assertEqual(
            txn.response.headers,
            (
                (b"Content-Type", b"text/plain"),
                (b"Content-Length", b"5"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Connection", b"keep-alive"),
            ),
        )
        self.assertEqual(txn.response.body, Body(size=5, captured=True, content=b"hello"))
        self.assertEqual(txn.request_bytes, 0)
        self.assertEqual(txn.response_bytes, 5)
        self.assertEqual(txn.content_type, "text/plain")
        self.assertIsNone(txn.error)
        self.assertIsNone(txn.tls)
        self.assertEqual(
            txn.timings,
            Timings(connect_ms=250.0, tls_ms=-1.0, send_ms=0.0, wait_ms=500.0, receive_ms=125.0),
        )

    def test_host_added_with_port_and_query_only_target(self) -> None:
        client = self.client()
        client.send(request(target=b"http://Example.Test:8080?x=1", headers=(b"Accept: a",)))
        self.assertEqual(self.network.attempts, [Origin("http", "example.test", 8080)])
        self.assertEqual(
            self.network.last.sent(),
            forwarded(path=b"/?x=1", headers=(b"Host: example.test:8080", b"Accept: a")),
        )
        self.network.last.respond(OK_HELLO)
        self.assertEqual(client.received(), OK_HELLO_TO_CLIENT)
        self.assertEqual(self.recorder.only().url, "http://example.test:8080/?x=1")

    def test_response_hop_by_hop_headers_removed(self) -> None:
        client = self.client()
        client.send(request())
        self.network.last.respond(
            b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=1\r\n"
            b"Proxy-Authenticate: Basic\r\nSet-Cookie: a=b\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertEqual(
            client.received(),
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\nContent-Length: 0\r\nVia: 1.1 postcap\r\n\r\n",
        )


class KeepAliveTests(ProxyTestCase):
    def test_sequential_requests_reuse_upstream(self) -> None:
        client = self.client()
        client.send(request(target=b"http://example.test/one"))
        upstream = self.network.last
        upstream.respond(OK_HELLO)
        self.assertEqual(client.take(), OK_HELLO_TO_CLIENT)
        client.send(request(target=b"http://example.test/two"))
        upstream.respond(OK_HELLO)
        self.assertEqual(client.take(), OK_HELLO_TO_CLIENT)
        self.assertEqual(len(self.network.attempts), 1)
        self.assertEqual(
            upstream.sent(), forwarded(path=b"/one") + forwarded(path=b"/two")
        )
        first, second = self.recorder.transactions
        self.assertEqual((first.url, second.url), ("http://example.test/one", "http://example.test/two"))
        self.assertEqual(first.timings.connect_ms, 0.0)
        self.assertEqual(second.timings.connect_ms, -1.0)  # reused: no connect phase
        self.assertFalse(client.closing)
        self.assertFalse(upstream.closed)

    def test_pipelined_request_waits_for_first_response(self) -> None:
        client = self.client()
        client.send(
            request(target=b"http://example.test/one") + request(target=b"http://example.test/two")
        )
        upstream = self.network.last
        self.assertEqual(upstream.sent(), forwarded(path=b"/one"))
        self.assertEqual(len(self.recorder.begun), 1)
        upstream.respond(OK_HELLO[:-2])
        self.assertEqual(upstream.sent(), forwarded(path=b"/one"))
        upstream.respond(OK_HELLO[-2:])
        self.assertEqual(upstream.sent(), forwarded(path=b"/one") + forwarded(path=b"/two"))
        upstream.respond(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(
            client.received(),
            OK_HELLO_TO_CLIENT + b"HTTP/1.1 204 No Content\r\nVia: 1.1 postcap\r\n\r\n",
        )
        self.assertEqual(len(self.network.attempts), 1)
        self.assertEqual([t.status for t in self.recorder.transactions], [200, 204])

    def test_http10_keep_alive_client(self) -> None:
        client = self.client()
        client.send(request(version=b"HTTP/1.0", headers=(b"Connection: keep-alive",)))
        self.network.last.respond(OK_HELLO)
        self.assertEqual(
            client.take(),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
            b"Via: 1.1 postcap\r\nConnection: keep-alive\r\n\r\nhello",
        )
        self.assertFalse(client.closing)

    def test_client_connection_close(self) -> None:
        client = self.client()
        client.send(request(headers=(b"Connection: close",)))
        self.network.last.respond(OK_HELLO)
        self.assertEqual(
            client.received(),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
            b"Via: 1.1 postcap\r\nConnection: close\r\n\r\nhello",
        )
        self.assertTrue(client.closing)
        # The upstream side persists independently of the client's choice.
        self.assertEqual(self.pool.idle_count, 1)

    def test_idle_upstream_expires_from_pool(self) -> None:
        client = self.client()
        client.send(request())
        upstream = self.network.last
        upstream.respond(OK_HELLO)
        self.assertEqual(self.pool.idle_count, 1)
        self.clock.advance(self.pool.idle_timeout)
        self.assertEqual(self.pool.idle_count, 0)
        self.assertTrue(upstream.transport.disconnecting)

    def test_concurrent_clients_keep_their_upstream_connections(self) -> None:
        # Twenty clients at once: each upstream connection goes idle when its response
        # ends and serves the next request; none is closed and opened again.
        clients = [self.client() for _ in range(20)]
        for client in clients:
            client.send(request())
        self.assertEqual(len(self.network.attempts), 20)
        for upstream in self.network.connections:
            upstream.respond(OK_HELLO)
        self.assertEqual(self.pool.idle_count, 20)
        for client in clients:
            client.send(request())
        self.assertEqual(len(self.network.attempts), 20)

    def test_upstream_closed_while_idle_is_not_reused(self) -> None:
        client = self.client()
        client.send(request())
        first = self.network.last
        first.respond(OK_HELLO)
        first.close()
        client.send(request())
        self.assertEqual(len(self.network.attempts), 2)
        self.network.last.respond(OK_HELLO)
        self.assertEqual(client.received(), OK_HELLO_TO_CLIENT * 2)

    def test_bytes_from_idle_upstream_prevent_reuse(self) -> None:
        client = self.client()
        client.send(request())
        first = self.network.last
        first.respond(OK_HELLO)
        self.assertEqual(self.pool.idle_count, 1)
        first.respond(b"junk")  # while idle, before the close is reported
        self.assertTrue(first.transport.disconnected)
        self.assertEqual(self.pool.idle_count, 0)
        client.send(request())
        self.assertEqual(len(self.network.attempts), 2)

    def test_extra_bytes_after_response_prevent_reuse(self) -> None:
        # Bytes past the end of a response mean the upstream broke framing: reusing the
        # connection would serve them as the start of the next response.
        client = self.client()
        client.send(request())
        first = self.network.last
        first.respond(OK_HELLO + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!")
        self.assertEqual(client.take(), OK_HELLO_TO_CLIENT)
        self.assertTrue(first.closed)
        self.assertEqual(self.pool.idle_count, 0)
        client.send(request())
        self.assertEqual(len(self.network.attempts), 2)
        second = self.network.last
        self.assertIsNot(second, first)
        second.respond(OK_HELLO)
        self.assertEqual(client.take(), OK_HELLO_TO_CLIENT)


class RequestBodyTests(ProxyTestCase):
    def test_content_length_body(self) -> None:
        client = self.client()
        client.send(
            request(b"POST", b"http://example.test/submit",
                    (b"Content-Type: text/plain", b"Content-Length: 11"), b"hello")
        )
        upstream = self.network.last
        # Reading the request body from the client pauses when the upstream pushes back.
        self.assertIs(upstream.transport.producer, client.protocol.pauser)
        client.send(b" world")
        self.assertIsNone(upstream.transport.producer)
        self.assertEqual(
            upstream.sent(),
            forwarded(b"POST", b"/submit",
                      (b"Host: example.test", b"Content-Type: text/plain", b"Content-Length: 11"),
                      b"hello world"),
        )
        upstream.respond(OK_HELLO)
        self.assertEqual(client.received(), OK_HELLO_TO_CLIENT)
        txn = self.recorder.only()
        self.assertEqual(txn.request.body, Body(size=11, captured=True, content=b"hello world"))

    def _forwards_one_content_length(self, lengths: tuple[bytes, ...]) -> None:
        client = self.client()
        client.send(request(b"POST", b"http://example.test/submit", lengths, b"hello"))
        upstream = self.network.last
        self.assertEqual(
            upstream.sent(),
            forwarded(b"POST", b"/submit", (b"Host: example.test", b"Content-Length: 5"), b"hello"),
        )
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok")
        self.assertEqual(
            client.received(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 postcap\r\n\r\nok",
        )

    def test_content_length_list_forwarded_as_one_value(self) -> None:
        self._forwards_one_content_length((b"Content-Length: 5, 5",))

    def test_repeated_content_length_forwarded_once(self) -> None:
        self._forwards_one_content_length((b"Content-Length: 5", b"Content-Length: 5"))

    def test_differing_content_lengths_refused_with_400(self) -> None:
        client = self.client()
        client.send(request(b"POST", b"http://example.test/submit",
                            (b"Content-Length: 5, 6",), b"hello"))
        self.assertTrue(client.received().startswith(b"HTTP/1.1 400 "))
        self.assertEqual(self.network.attempts, [])

    def test_chunked_body_rechunked_with_trailers(self) -> None:
        client = self.client()
        client.send(
            request(b"PUT", b"http://example.test/up",
                    (b"Transfer-Encoding: chunked", b"Trailer: X-Sum"),
                    b"5\r\nhello\r\n3;ext=1\r\nabc\r\n")
        )
        client.send(b"0\r\nX-Sum: 42\r\n\r\n")
        upstream = self.network.last
        self.assertEqual(
            upstream.sent(),
            b"PUT /up HTTP/1.1\r\nHost: example.test\r\nVia: 1.1 postcap\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n3\r\nabc\r\n0\r\nX-Sum: 42\r\n\r\n",
        )
        upstream.respond(OK_HELLO)
        self.assertEqual(client.received(), OK_HELLO_TO_CLIENT)
        self.assertEqual(self.recorder.only().request.body,
                         Body(size=8, captured=True, content=b"helloabc"))

    def test_body_sent_while_connecting_is_held(self) -> None:
        self.network.hanging.add("example.test")
        client = self.client()
        client.send(request(b"POST", headers=(b"Content-Length: 4",), body=b"ab"))
        client.send(b"cd")
        upstream = self.network.pending[0].complete()
        self.assertEqual(
            upstream.sent(),
            forwarded(b"POST", headers=(b"Host: example.test", b"Content-Length: 4"), body=b"abcd"),
        )
        self.assertIsNone(upstream.transport.producer)

    def test_expect_100_continue_relayed(self) -> None:
        client = self.client()
        client.send(
            request(b"POST", b"http://example.test/form",
                    (b"Expect: 100-continue", b"Content-Length: 4"))
        )
        upstream = self.network.last
        self.assertEqual(
            upstream.sent(),
            forwarded(b"POST", b"/form",
                      (b"Host: example.test", b"Expect: 100-continue", b"Content-Length: 4")),
        )
        upstream.respond(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertEqual(client.take(), b"HTTP/1.1 100 Continue\r\n\r\n")
        client.send(b"data")
        self.assertTrue(upstream.sent().endswith(b"\r\n\r\ndata"))
        upstream.respond(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(
            client.take(),
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nVia: 1.1 postcap\r\n\r\nok",
        )
        txn = self.recorder.only()
        self.assertEqual(txn.status, 201)
        self.assertEqual(txn.request.body.content, b"data")
        self.assertIsNone(txn.error)

    def test_informational_and_final_in_one_read(self) -> None:
        client = self.client()
        client.send(request())
        self.network.last.respond(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK_HELLO
        )
        self.assertEqual(
            client.received(),
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK_HELLO_TO_CLIENT,
        )
        self.assertEqual(self.recorder.only().status, 200)

    def test_slow_upload_is_not_an_upstream_timeout(self) -> None:
        # The upstream waits for the whole body; the client sends it slowly but steadily.
        self.make_proxy(upstream_timeout=60.0)
        client = self.client()
        client.send(request(b"POST", headers=(b"Content-Length: 50",)))
        upstream = self.network.last
        for _ in range(5):
            self.clock.advance(40.0)
            client.send(b"0123456789")
        self.assertEqual(client.received(), b"")
        self.assertFalse(upstream.closed)
        self.clock.advance(59.0)
        upstream.respond(OK_HELLO)
        self.assertEqual(client.received(), OK_HELLO_TO_CLIENT)
        self.assertIsNone(self.recorder.only().error)

    def test_malformed_chunk_after_head_forwarded(self) -> None:
        client = self.client()
        client.send(request(b"POST", headers=(b"Transfer-Encoding: chunked",), body=b"5\r\nhello\r\n"))
        upstream = self.network.last
        client.send(b"zz\r\n")
        self.assert_error(client.received(), b"400", b"bad-request")
        self.assertTrue(client.closing)
        self.assertTrue(upstream.transport.disconnected)
        txn = self.recorder.only()
        self.assertIsNone(txn.response)
        self.assertEqual(txn.error, "malformed request: invalid chunk size")
        self.assert_serves()


class ResponseFramingTests(ProxyTestCase):
    def test_close_delimited_to_http11_client_is_chunked(self) -> None:
        client = self.client()
        client.send(request())
        upstream = self.network.last
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc")
        upstream.respond(b"defg")
        upstream.close()
        self.assertEqual(
            client.received(),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nVia: 1.1 postcap\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
        )
        self.assertFalse(client.closing)
        txn = self.recorder.only()
        self.assertIsNone(txn.error)
        self.assertEqual(txn.response.body, Body(size=7, captured=True, content=b"abcdefg"))  # type: ignore[union-attr]
        self.assertEqual(self.pool.idle_count, 0)

    def test_close_delimited_to_http10_client(self) -> None:
        client = self.client()
        client.send(request(version=b"HTTP/1.0"))
        upstream = self.network.last
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc")
        self.assertFalse(client.closing)
        upstream.close()
        self.assertEqual(
            client.received(),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nVia: 1.1 postcap\r\n"
            b"Connection: close\r\n\r\nabc",
        )
        self.assertTrue(client.closing)
        self.assertIsNone(self.recorder.only().error)

    def test_chunked_response_with_trailers_to_http11(self) -> None:
        client = self.client()
        client.send(request())
        self.network.last.respond(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
            b"2\r\nab\r\n0\r\nX-T: 1\r\n\r\n"
        )
        self.assertEqual(
            client.received(),
            b"HTTP/1.1 200 OK\r\nVia: 1.1 postcap\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nab\r\n0\r\nX-T: 1\r\n\r\n",
        )
        self.assertEqual(self.pool.idle_count, 1)

    def test_chunked_response_to_http10_client(self) -> None:
        client = self.client()
        client.send(request(version=b"HTTP/1.0", headers=(b"Connection: keep-alive",)))
        self.network.last.respond(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"
        )
        self.assertEqual(
            client.received(),
            b"HTTP/1.1 200 OK\r\nVia: 1.1 postcap\r\nConnection: close\r\n\r\nab",
        )
        self.assertTrue(client.closing)

    def test_content_length_dropped_when_upstream_chunks(self) -> None:
        # Both framings from upstream: chunked wins, and the client must not see a
        # Content-Length that disagrees with the body it gets.
        for version, expected in (
            (b"HTTP/1.1", b"HTTP/1.1 200 OK\r\nVia: 1.1 postcap\r\nTransfer-Encoding: chunked\r\n"
                          b"\r\n2\r\nab\r\n0\r\n\r\n"),
            (b"HTTP/1.0", b"HTTP/1.1 200 OK\r\nVia: 1.1 postcap\r\nConnection: close\r\n\r\nab"),
        ):
            client = self.client()
            client.send(request(version=version))
            self.network.active().respond(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\nab\r\n0\r\n\r\n"
            )
            self.assertEqual(client.received(), expected)

    def test_early_response_before_request_body_ends(self) -> None:
        client = self.client()
        client.send(request(b"POST", headers=(b"Content-Length: 10",), body=b"abc"))
        upstream = self.network.last
        upstream.respond(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(
            client.received(),
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nVia: 1.1 postcap\r\n"
            b"Connection: close\r\n\r\n",
        )
        self.assertTrue(client.closing)
        self.assertTrue(upstream.closed)  # the rest of the body would desynchronize it
        txn = self.recorder.only()
        self.assertEqual(txn.status, 413)
        self.assertEqual(txn.request.body.size, 3)

    def test_head_has_no_body(self) -> None:
        client = self.client()
        client.send(request(b"HEAD"))
        upstream = self.network.last
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        self.assertEqual(
            client.received(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nVia: 1.1 postcap\r\n\r\n",
        )
        self.assertIsNone(client.transport.producer)
        txn = self.recorder.only()
        self.assertEqual(txn.response.body.size, 0)  # type: ignore[union-attr]
        self.assertIsNone(txn.error)
        self.assertEqual(self.pool.idle_count, 1)
        # The connection stays in step: the next response is parsed as GET's.
        client.send(request())
        upstream.respond(OK_HELLO)
        self.assertTrue(client.received().endswith(OK_HELLO_TO_CLIENT))

    def test_204_and_304_have_no_body(self) -> None:
        client = self.client()
        for status in (b"204 No Content", b"304 Not Modified"):
            client.take()
            client.send(request())
            self.network.last.respond(b"HTTP/1.1 %s\r\nETag: x\r\n\r\n" % status)
            self.assertEqual(
                client.received(), b"HTTP/1.1 %s\r\nETag: x\r\nVia: 1.1 postcap\r\n\r\n" % status
            )
        self.assertEqual([t.status for t in self.recorder.transactions], [204, 304])
        self.assertEqual(len(self.network.attempts), 1)

    def test_upstream_connection_close_not_reused(self) -> None:
        client = self.client()
        client.send(request())
        first = self.network.last
        first.respond(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(
            client.take(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 postcap\r\n\r\nok"
        )
        self.assertFalse(client.closing)
        self.assertTrue(first.closed)
        self.assertEqual(self.pool.idle_count, 0)
        client.send(request())
        self.assertEqual(len(self.network.attempts), 2)

    def test_http10_upstream_without_keep_alive_not_reused(self) -> None:
        client = self.client()
        client.send(request())
        first = self.network.last
        first.respond(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertTrue(first.closed)
        self.assertEqual(self.pool.idle_count, 0)


# -- errors the proxy makes ---------------------------------------------------------------


class ConnectErrorTests(ProxyTestCase):
    def _fails(self, exception: Exception, status: bytes, kind: bytes, message: str) -> None:
        self.network.failures["down.test"] = exception
        client = self.client()
        client.send(request(target=b"http://down.test/x"))
        data = client.received()
        self.assert_error(data, status, kind)
        self.assertEqual(data.partition(b"\r\n\r\n")[2], b"postcap: %s\n" % message.encode())
        self.assertTrue(client.closing)
        txn = self.recorder.only()
        self.assertEqual(txn.url, "http://down.test/x")
        self.assertIsNone(txn.response)
        self.assertEqual(txn.error, message)
        self.assertEqual(self.factory.errors[kind.decode()], 1)
        client.lose()
        self.assertEqual(self.factory.connections, set())
        self.assert_serves()

    def test_refused(self) -> None:
        self._fails(ConnectionRefusedError(), b"502", b"refused", "connection refused by down.test:80")

    def test_dns_failure(self) -> None:
        self._fails(DNSLookupError("down.test"), b"502", b"dns", "could not resolve host 'down.test'")

    def test_connect_timeout(self) -> None:
        self._fails(TimeoutError(), b"504", b"connect-timeout", "timed out connecting to down.test:80")

    def test_late_failure_keeps_client_connection(self) -> None:
        # The request was complete when the connect failed: the client may go on.
        self.network.hanging.add("down.test")
        client = self.client()
        client.send(request(target=b"http://down.test/"))
        self.network.pending[0].fail(ConnectionRefusedError())
        self.assert_error(client.take(), b"502", b"refused", close=False)
        self.assertFalse(client.closing)
        client.send(request())
        self.network.last.respond(OK_HELLO)
        self.assertEqual(client.take(), OK_HELLO_TO_CLIENT)


class UpstreamTimeoutTests(ProxyTestCase):
    def test_silent_upstream(self) -> None:
        self.make_proxy(upstream_timeout=30.0)
        client = self.client()
        client.send(request())
        upstream = self.network.last
        self.clock.advance(29.9)
        self.assertEqual(client.received(), b"")
        self.clock.advance(0.2)
        data = client.take()
        self.assert_error(data, b"504", b"timeout", close=False)
        self.assertIn(b"did not answer within 30 s", data)
        self.assertTrue(upstream.transport.disconnected)
        txn = self.recorder.only()
        self.assertIsNone(txn.response)
        self.assertEqual(txn.error, "upstream example.test did not answer within 30 s")
        # The upstream answering late changes nothing.
        upstream.respond(OK_HELLO)
        self.assertEqual(client.received(), b"")
        self.assertEqual(len(self.recorder.transactions), 1)
        self.assert_serves()

    def test_stall_mid_response(self) -> None:
        self.make_proxy(upstream_timeout=30.0)
        client = self.client()
        client.send(request())
        upstream = self.network.last
        self.clock.advance(20.0)
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        self.clock.advance(20.0)  # progress re-armed the timer
        self.assertFalse(client.closing)
        self.clock.advance(10.0)
        self.assertTrue(client.closing)
        self.assertTrue(upstream.transport.disconnected)
        self.assertEqual(
            client.received(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nVia: 1.1 postcap\r\n\r\n01234",
        )
        txn = self.recorder.only()
        self.assertEqual(txn.status, 200)
        self.assertEqual(txn.response.body.size, 5)  # type: ignore[union-attr]
        self.assertEqual(txn.error, "upstream stalled in the middle of the response")


class ClientErrorTests(ProxyTestCase):
    def _rejected(self, data: bytes, status: bytes, kind: bytes = b"bad-request") -> bytes:
        client = self.client()
        client.send(data)
        answer = client.received()
        self.assert_error(answer, status, kind)
        self.assertTrue(client.closing)
        self.assertEqual(self.network.attempts, [])
        client.lose()
        self.assert_serves()
        return answer

    def test_malformed_request(self) -> None:
        answer = self._rejected(b"GET http://example.test/ HTTP/1.1\r\nBad Header\r\n\r\n", b"400")
        self.assertTrue(answer.endswith(b"\r\n\r\npostcap: malformed header field\n"))
        self.assertEqual(self.factory.errors["bad-request"], 1)
        self.assertEqual(len(self.recorder.transactions), 1)  # only the one from assert_serves

    def test_ambiguous_framing(self) -> None:
        self._rejected(
            request(b"POST", headers=(b"Content-Length: 3", b"Transfer-Encoding: chunked")), b"400"
        )

    def test_request_line_too_long(self) -> None:
        self._rejected(b"GET http://example.test/" + b"a" * (16 * 1024 + 10), b"414", b"uri-too-long")

    def test_complete_request_line_too_long(self) -> None:
        self._rejected(request(target=b"http://example.test/" + b"a" * (16 * 1024)), b"414", b"uri-too-long")

    def test_header_section_too_large(self) -> None:
        headers = tuple(b"X-Fill-%d: %s" % (i, b"v" * 1000) for i in range(70))
        self._rejected(request(headers=headers), b"431", b"headers-too-large")

    def test_header_section_too_large_incomplete(self) -> None:
        self._rejected(request()[:-2] + b"X-Fill: " + b"v" * (90 * 1024), b"431", b"headers-too-large")

    def test_too_many_header_fields(self) -> None:
        headers = tuple(b"X-F%d: v" % i for i in range(501))
        answer = self._rejected(request(headers=headers), b"431", b"headers-too-large")
        self.assertIn(b"too many header fields", answer)

    def test_500_header_fields_accepted(self) -> None:
        client = self.client()
        client.send(request(headers=tuple(b"X-F%d: v" % i for i in range(499))))
        self.assertEqual(len(self.network.attempts), 1)

    def test_http2_version(self) -> None:
        self._rejected(request(version=b"HTTP/2.0"), b"505", b"http-version")

    def test_origin_form_rejected(self) -> None:
        answer = self._rejected(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n", b"400")
        self.assertIn(b"absolute URL", answer)

    def test_https_absolute_target_not_implemented(self) -> None:
        answer = self._rejected(request(target=b"https://example.test/"), b"501", b"unsupported")
        self.assertIn(b"CONNECT", answer)

    def test_unsupported_scheme(self) -> None:
        self._rejected(request(target=b"ftp://example.test/"), b"400")

    def test_header_timeout(self) -> None:
        self.make_proxy(header_timeout=5.0, idle_timeout=100.0)
        client = self.client()
        client.send(b"GET http://example.test/ HTTP/1.1\r\n")
        self.clock.advance(3.0)
        client.send(b"Host: example.test\r\n")  # trickling does not extend the deadline
        self.clock.advance(1.9)
        self.assertEqual(client.received(), b"")
        self.clock.advance(0.2)
        self.assert_error(client.received(), b"408", b"header-timeout")
        self.assertTrue(client.closing)
        self.assertEqual(self.factory.errors["header-timeout"], 1)
        self.assertEqual(self.recorder.transactions, [])
        client.lose()
        self.assert_serves()

    def test_header_timeout_for_second_request(self) -> None:
        self.make_proxy(header_timeout=5.0, idle_timeout=100.0)
        client = self.client()
        client.send(request())
        self.network.last.respond(OK_HELLO)
        client.take()
        self.clock.advance(50.0)
        client.send(b"GET http://exa")
        self.clock.advance(5.0)
        self.assert_error(client.received(), b"408", b"header-timeout")

    def test_idle_timeout_closes_silently(self) -> None:
        self.make_proxy(idle_timeout=10.0)
        client = self.client()
        client.send(request())
        self.network.last.respond(OK_HELLO)
        self.assertEqual(client.take(), OK_HELLO_TO_CLIENT)
        self.clock.advance(9.9)
        self.assertFalse(client.closing)
        self.clock.advance(0.2)
        self.assertTrue(client.closing)
        self.assertEqual(client.received(), b"")
        self.assertEqual(len(self.recorder.transactions), 1)
        client.lose()
        self.assert_serves()

    def test_idle_timeout_on_fresh_connection(self) -> None:
        self.make_proxy(idle_timeout=10.0)
        client = self.client()
        self.clock.advance(10.0)
        self.assertTrue(client.closing)
        self.assertEqual(client.received(), b"")

    def test_no_timer_left_after_close(self) -> None:
        client = self.client()
        client.send(request())
        self.network.last.respond(OK_HELLO)
        client.lose()
        self.assertEqual(
            [c for c in self.clock.getDelayedCalls() if c.func != self.pool._expire], []
        )


# -- cut-short exchanges --------------------------------------------------------------------


class CutShortTests(ProxyTestCase):
    def test_upstream_closes_mid_body(self) -> None:
        client = self.client()
        client.send(request())
        upstream = self.network.last
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        upstream.close()
        self.assertEqual(
            client.received(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nVia: 1.1 postcap\r\n\r\nabc",
        )
        self.assertTrue(client.closing)
        txn = self.recorder.only()
        assert txn.response is not None
        self.assertEqual(txn.response.status, 200)
        self.assertEqual(txn.response.body.size, 3)
        self.assertEqual(txn.error, "upstream closed the connection before the response ended")
        self.assertEqual(self.factory.errors["closed"], 1)
        client.lose()
        self.assert_serves()

    def test_upstream_closes_mid_chunked_body(self) -> None:
        client = self.client()
        client.send(request())
        upstream = self.network.last
        upstream.respond(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        upstream.close()
        # No terminating chunk: the client must not take the cut body for a whole one.
        self.assertEqual(
            client.received(),
            b"HTTP/1.1 200 OK\r\nVia: 1.1 postcap\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        )
        self.assertTrue(client.closing)
        self.assertIsNotNone(self.recorder.only().error)

    def test_upstream_closes_before_response(self) -> None:
        client = self.client()
        client.send(request())
        self.network.last.close()
        self.assert_error(client.received(), b"502", b"closed", close=False)
        txn = self.recorder.only()
        self.assertIsNone(txn.response)
        self.assertEqual(txn.error, "upstream closed the connection before the response ended")

    def test_invalid_upstream_response(self) -> None:
        client = self.client()
        client.send(request())
        upstream = self.network.last
        upstream.respond(b"HTCPCP/1.0 418 I'm a teapot\r\n\r\n")
        self.assert_error(client.received(), b"502", b"bad-response", close=False)
        self.assertTrue(upstream.transport.disconnected)
        self.assertEqual(self.recorder.only().error, "invalid response from upstream: malformed status line")

    def test_client_disconnects_mid_download(self) -> None:
        client = self.client()
        client.send(request())
        upstream = self.network.last
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc")
        client.lose(ConnectionLost())
        self.assertTrue(upstream.transport.disconnected)
        self.assertEqual(self.pool.idle_count, 0)
        txn = self.recorder.only()
        self.assertEqual(txn.status, 200)
        self.assertIn("client", txn.error or "")
        self.assertEqual(self.factory.connections, set())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # More bytes from the upstream after that go nowhere.
        upstream.respond(b"def")
        self.assertEqual(len(self.recorder.transactions), 1)

    def test_client_disconnects_while_connecting(self) -> None:
        self.network.hanging.add("example.test")
        client = self.client()
        client.send(request())
        client.lose()
        txn = self.recorder.only()
        self.assertIsNone(txn.response)
        self.assertIn("client", txn.error or "")
        # The connection that arrives afterwards is kept for someone else.
        upstream = self.network.pending[0].complete()
        self.assertEqual(upstream.sent(), b"")
        self.assertEqual(self.pool.idle_count, 1)

    def test_client_disconnects_while_connect_fails(self) -> None:
        self.network.hanging.add("example.test")
        client = self.client()
        client.send(request())
        client.lose()
        self.network.pending[0].fail(ConnectionRefusedError())
        self.assertEqual(client.received(), b"")
        self.assertEqual(len(self.recorder.transactions), 1)


# -- back-pressure ------------------------------------------------------------------------------


class DiskBehind(Spooler):
    """A spooler whose writes wait until the test says the disk caught up (no thread)."""

    high_water = 4 * 1024 * 1024
    low_water = 1024 * 1024

    def __init__(self) -> None:
        super().__init__(MemoryReactorClock(), "/nonexistent")
        self.files: list[BytesIO] = []

    def open(self) -> tuple[IO[bytes], str]:
        self.files.append(BytesIO())
        return self.files[-1], "/nonexistent/body-test"

    def write(self, spool: IO[bytes], data: bytes) -> None:
        self.queued += len(data)

    def caught_up(self) -> None:
        self._written(self.queued)


class BackPressureTests(ProxyTestCase):
    def test_response_direction(self) -> None:
        client = self.client()
        client.send(request())
        upstream = self.network.last
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
        producer = client.transport.producer
        self.assertIsInstance(producer, TransportPauser)
        self.assertTrue(client.transport.streaming)
        self.assertIs(producer.transport, upstream.transport)
        producer.pauseProducing()
        self.assertEqual(upstream.transport.producerState, "paused")
        producer.resumeProducing()
        self.assertEqual(upstream.transport.producerState, "producing")
        producer.pauseProducing()
        upstream.respond(b"def")  # the response ends while the client is slow
        self.assertEqual(upstream.transport.producerState, "producing")
        self.assertIsNone(client.transport.producer)
        self.assertEqual(self.pool.idle_count, 1)

    def spooling_proxy(self) -> DiskBehind:
        spooler = DiskBehind()
        self.factory = ProxyFactory(self.clock, self.settings, self.recorder, pool=self.pool,
                                    spooler=spooler)
        return spooler

    def flood(self, spooler: DiskBehind, send: Callable[[bytes], None],
              producing: StringTransport) -> None:
        """Send 1 MiB pieces until the spooler is congested, ``producing`` read all along."""
        piece = b"f" * (1024 * 1024)
        for _ in range(spooler.high_water // len(piece) + 1):
            self.assertEqual(producing.producerState, "producing")
            send(piece)
        self.assertTrue(spooler.congested)

    def test_response_source_pauses_while_the_spooler_is_behind(self) -> None:
        spooler = self.spooling_proxy()
        client = self.client()
        client.send(request())
        upstream = self.network.last
        size = 2 * spooler.high_water
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        self.flood(spooler, upstream.respond, upstream.transport)
        upstream.respond(b"r" * 1024)
        self.assertEqual(upstream.transport.producerState, "paused")
        spooler.caught_up()
        self.assertEqual(upstream.transport.producerState, "producing")

    def test_request_source_pauses_while_the_spooler_is_behind(self) -> None:
        spooler = self.spooling_proxy()
        client = self.client()
        size = 2 * spooler.high_water
        client.send(request(method=b"POST", headers=(b"Content-Length: %d" % size,)))
        self.network.last  # connected
        self.flood(spooler, client.send, client.transport)
        client.send(b"q" * 1024)
        self.assertEqual(client.transport.producerState, "paused")
        spooler.caught_up()
        self.assertEqual(client.transport.producerState, "producing")

    def test_released_upstream_is_not_left_paused_for_the_spooler(self) -> None:
        spooler = self.spooling_proxy()
        client = self.client()
        client.send(request())
        upstream = self.network.last
        size = spooler.high_water + 2 * 1024 * 1024
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        piece = b"r" * (1024 * 1024)
        upstream.respond(piece * (size // len(piece)))  # all of it, in one read
        self.assertEqual(self.pool.idle_count, 1)
        self.assertEqual(upstream.transport.producerState, "producing")
        spooler.caught_up()
        self.assertEqual(upstream.transport.producerState, "producing")

    def test_next_request_waits_while_the_history_is_behind(self) -> None:
        self.recorder.congested = True
        client = self.client()
        client.send(request(target=b"http://example.test/one")
                    + request(target=b"http://example.test/two"))
        upstream = self.network.last
        upstream.respond(OK_HELLO)
        self.assertEqual(client.received(), OK_HELLO_TO_CLIENT)
        self.assertEqual(upstream.sent(), forwarded(path=b"/one"))
        self.assertEqual(client.transport.producerState, "paused")
        self.recorder.congested = False
        self.recorder.drained.callback(None)
        self.assertEqual(client.transport.producerState, "producing")
        self.assertEqual(upstream.sent(), forwarded(path=b"/one") + forwarded(path=b"/two"))

    def test_traffic_nobody_captures_never_waits_for_the_history(self) -> None:
        self.make_proxy(ListRecorder(capture=False, observes_all=False))
        self.recorder.congested = True
        client = self.client()
        client.send(request(target=b"http://example.test/one")
                    + request(target=b"http://example.test/two"))
        upstream = self.network.last
        upstream.respond(OK_HELLO)
        self.assertEqual(upstream.sent(), forwarded(path=b"/one") + forwarded(path=b"/two"))

    def test_a_client_gone_while_waiting_for_the_history_is_left_alone(self) -> None:
        self.recorder.congested = True
        client = self.client()
        client.send(request(target=b"http://example.test/one")
                    + request(target=b"http://example.test/two"))
        upstream = self.network.last
        upstream.respond(OK_HELLO)
        client.lose()
        self.recorder.drained.callback(None)
        self.assertEqual(upstream.sent(), forwarded(path=b"/one"))
        self.assertEqual(len(self.recorder.begun), 1)

    def test_slow_client_is_not_an_upstream_stall(self) -> None:
        # The upstream sends nothing while the proxy stops reading it for a slow client.
        self.make_proxy(upstream_timeout=30.0)
        client = self.client()
        client.send(request())
        upstream = self.network.last
        upstream.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
        client.transport.producer.pauseProducing()
        self.clock.advance(100.0)
        self.assertFalse(client.closing)
        self.assertFalse(upstream.closed)
        client.transport.producer.resumeProducing()
        self.clock.advance(29.0)
        upstream.respond(b"def")
        self.assertTrue(client.received().endswith(b"\r\n\r\nabcdef"))
        self.assertIsNone(self.recorder.only().error)
        # Once the client reads again, silence counts against the upstream as before.
        client.send(request())
        self.clock.advance(30.0)
        self.assertEqual(len(self.recorder.transactions), 2)
        self.assertEqual(self.recorder.transactions[1].error,
                         "upstream example.test did not answer within 30 s")

    def test_request_direction(self) -> None:
        client = self.client()
        client.send(request(b"POST", headers=(b"Content-Length: 6",), body=b"abc"))
        upstream = self.network.last
        producer = upstream.transport.producer
        self.assertIs(producer, client.protocol.pauser)
        self.assertTrue(upstream.transport.streaming)
        producer.pauseProducing()
        self.assertEqual(client.transport.producerState, "paused")
        producer.resumeProducing()
        self.assertEqual(client.transport.producerState, "producing")
        producer.pauseProducing()
        # The body ends (the kernel had it buffered): reading from the client resumes.
        client.send(b"def")
        self.assertEqual(client.transport.producerState, "producing")
        self.assertIsNone(upstream.transport.producer)

    def test_pause_reasons_combine(self) -> None:
        # Upstream push-back while still connecting: reading resumes only when both end.
        self.network.hanging.add("example.test")
        client = self.client()
        client.send(request(b"POST", headers=(b"Content-Length: 6",), body=b"abc"))
        self.assertEqual(client.transport.producerState, "paused")
        client.protocol.pauser.pauseProducing()
        self.network.pending[0].complete()
        self.assertEqual(client.transport.producerState, "paused")
        client.protocol.pauser.resumeProducing()
        self.assertEqual(client.transport.producerState, "producing")

    def test_pipelined_flood_pauses_client(self) -> None:
        client = self.client()
        client.send(request())
        big = b"v" * (ProxyServerProtocol.max_pipelined_bytes + 1)
        client.send(request(b"POST", headers=(b"Content-Length: %d" % len(big),), body=big))
        self.assertEqual(client.transport.producerState, "paused")
        upstream = self.network.last
        upstream.respond(OK_HELLO)
        self.assertEqual(client.transport.producerState, "producing")
        self.assertEqual(len(self.recorder.begun), 2)
        self.assertTrue(upstream.sent().endswith(b"\r\n\r\n" + big))


# -- capture ----------------------------------------------------------------------------------


class CaptureTests(ProxyTestCase):
    def _exchange(self, response: bytes, req: bytes | None = None) -> tuple[Client, Transaction]:
        client = self.client()
        client.send(req or request())
        self.network.last.respond(response)
        return client, self.recorder.only()

    def test_truncated_capture(self) -> None:
        self.make_proxy(max_capture_body=4)
        client, txn = self._exchange(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
            request(b"POST", headers=(b"Content-Length: 6",), body=b"abcdef"),
        )
        self.assertTrue(client.received().endswith(b"\r\n\r\n0123456789"))
        self.assertEqual(txn.response.body,  # type: ignore[union-attr]
                         Body(size=10, captured=True, truncated=True, content=b"0123"))
        self.assertEqual(txn.request.body, Body(size=6, captured=True, truncated=True, content=b"abcd"))

    def test_exact_limit_not_truncated(self) -> None:
        self.make_proxy(max_capture_body=5)
        _, txn = self._exchange(OK_HELLO)
        self.assertEqual(txn.response.body, Body(size=5, captured=True, content=b"hello"))  # type: ignore[union-attr]

    def test_media_response_not_captured(self) -> None:
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
        client, txn = self._exchange(
            b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n%s" % (len(png), png)
        )
        self.assertTrue(client.received().endswith(b"\r\n\r\n" + png))
        self.assertEqual(txn.response.body, Body(size=len(png), captured=False))  # type: ignore[union-attr]
        self.assertEqual(txn.content_type, "image/png")

    def test_save_responses_false(self) -> None:
        self.make_proxy(ListRecorder(save_responses=False))
        client, txn = self._exchange(
            OK_HELLO, request(b"POST", headers=(b"Content-Length: 2",), body=b"hi")
        )
        self.assertEqual(client.received(), OK_HELLO_TO_CLIENT)
        self.assertEqual(txn.response.body, Body(size=5, captured=False))  # type: ignore[union-attr]
        self.assertEqual(txn.request.body, Body(size=2, captured=True, content=b"hi"))
        self.assertEqual(txn.session_id, SESSION)

    def test_no_session_and_nobody_observing(self) -> None:
        self.make_proxy(ListRecorder(capture=False, observes_all=False))
        client = self.client()
        client.send(request())
        self.network.last.respond(OK_HELLO)
        self.assertEqual(client.received(), OK_HELLO_TO_CLIENT)
        self.assertEqual(self.recorder.begun, [("GET", "http://example.test/")])
        self.assertEqual(self.recorder.completed, [])

    def test_no_session_but_observed(self) -> None:
        self.make_proxy(ListRecorder(capture=False, observes_all=True))
        _, txn = self._exchange(OK_HELLO)
        ticket, _ = self.recorder.completed[0]
        self.assertIsNone(ticket)
        self.assertIsNone(txn.session_id)
        self.assertEqual(txn.response.body, Body(size=5, captured=False))  # type: ignore[union-attr]

    def test_response_filter_says_no(self) -> None:
        self.make_proxy(ListRecorder(capture_filter=CaptureFilter(status_codes=frozenset({404}))))
        _, txn = self._exchange(OK_HELLO)
        ticket, _ = self.recorder.completed[0]
        self.assertIsNone(ticket)
        self.assertIsNone(txn.session_id)
        self.assertFalse(txn.response.body.captured)  # type: ignore[union-attr]


class BodyCaptureTests(SynchronousTestCase):
    def test_counts_and_bounds(self) -> None:
        capture = BodyCapture(limit=5, spooler=None)
        for piece in (b"abc", b"defg", b"h"):
            capture.feed(piece)
        body = self.successResultOf(capture.finish())
        self.assertEqual(body, Body(size=8, captured=True, truncated=True, content=b"abcde"))

    def test_disabled(self) -> None:
        capture = BodyCapture(limit=5, spooler=None, enabled=False)
        capture.feed(b"abcdefgh")
        self.assertFalse(capture.truncated)
        self.assertEqual(self.successResultOf(capture.finish()), Body(size=8, captured=False))

    def test_drop(self) -> None:
        capture = BodyCapture(limit=5, spooler=None)
        capture.feed(b"abc")
        capture.drop()
        capture.feed(b"defgh")
        self.assertEqual(self.successResultOf(capture.finish()), Body(size=8, captured=False))


# -- access control -----------------------------------------------------------------------------


class AccessControlTests(ProxyTestCase):
    def test_client_outside_allow(self) -> None:
        self.make_proxy(allow=[ipaddress.ip_network("10.0.0.0/8")])
        client = self.client()
        self.assert_error(client.received(), b"403", b"client-refused")
        self.assertTrue(client.closing)
        self.assertEqual(self.factory.refused, 1)
        client.send(request())  # ignored
        self.assertEqual(self.network.attempts, [])
        self.assertEqual(self.recorder.completed, [])
        allowed = self.client(IPv4Address("TCP", "10.1.2.3", 5000))
        allowed.send(request())
        self.assertEqual(len(self.network.attempts), 1)
        self.assertEqual(self.factory.refused, 1)

    def test_ipv4_mapped_ipv6(self) -> None:
        self.assertTrue(ProxySettings().allows("::ffff:127.0.0.1"))
        self.assertFalse(ProxySettings().allows("8.8.8.8"))
        self.assertFalse(ProxySettings().allows("not-an-address"))


# -- CONNECT ------------------------------------------------------------------------------------


class BlindTunnelTests(ProxyTestCase):
    def test_tunnel_relays_bytes(self) -> None:
        client = self.client()
        client.send(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n\x16\x03\x01")
        self.assertEqual(self.network.attempts, [Origin("https", "example.test", 443)])
        upstream = self.network.last
        self.assertEqual(client.take(), b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.assertEqual(upstream.sent(), b"\x16\x03\x01")
        client.send(b"GET / HTTP/1.1\r\n\r\n\x00\xff")  # not parsed: relayed as is
        self.assertEqual(upstream.sent(), b"\x16\x03\x01GET / HTTP/1.1\r\n\r\n\x00\xff")
        upstream.respond(b"\x17\x03\x03 reply")
        self.assertEqual(client.take(), b"\x17\x03\x03 reply")
        self.assertIs(upstream.transport.producer, client.protocol.pauser)
        self.assertIsInstance(client.transport.producer, TransportPauser)
        self.assertEqual(self.recorder.completed, [])
        self.clock.advance(2.0)
        upstream.close()
        self.assertTrue(client.closing)
        txn = self.recorder.only()
        self.assertEqual(txn.kind, "tunnel")
        self.assertEqual(txn.scheme, "tunnel")
        self.assertEqual(txn.url, "example.test:443")
        self.assertEqual(txn.method, "CONNECT")
        self.assertEqual(txn.request.target, b"example.test:443")
        self.assertEqual(txn.request_bytes, 3 + 20)
        self.assertEqual(txn.response_bytes, 9)
        self.assertEqual(txn.status, 200)
        self.assertIsNone(txn.error)
        self.assertEqual(txn.duration_ms, 2000.0)
        self.assertEqual(self.recorder.begun[-1], ("CONNECT", "example.test:443"))
        client.lose()
        self.assertEqual(len(self.recorder.transactions), 1)
        self.assertEqual(self.factory.connections, set())

    def test_client_closes_tunnel(self) -> None:
        client = self.client()
        client.send(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n")
        upstream = self.network.last
        client.send(b"ping")
        upstream.respond(b"pong!")
        client.lose()
        self.assertTrue(upstream.transport.disconnecting)
        txn = self.recorder.only()
        self.assertEqual(txn.url, "[::1]:8443")
        self.assertEqual((txn.request_bytes, txn.response_bytes), (4, 5))
        self.assertIsNone(txn.error)

    def test_tunnel_waits_for_connect(self) -> None:
        self.network.hanging.add("example.test")
        client = self.client()
        client.send(b"CONNECT example.test:443 HTTP/1.1\r\n\r\n")
        self.assertEqual(client.received(), b"")
        self.assertEqual(client.transport.producerState, "paused")
        client.send(b"early")
        upstream = self.network.pending[0].complete()
        self.assertEqual(client.received(), b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.assertEqual(upstream.sent(), b"early")
        self.assertEqual(client.transport.producerState, "producing")

    def test_unreachable(self) -> None:
        self.network.failures["down.test"] = ConnectionRefusedError()
        client = self.client()
        client.send(b"CONNECT down.test:443 HTTP/1.1\r\n\r\n")
        self.assert_error(client.received(), b"502", b"refused")
        self.assertTrue(client.closing)
        txn = self.recorder.only()
        self.assertEqual(txn.kind, "tunnel")
        self.assertIsNone(txn.response)
        self.assertEqual(txn.error, "connection refused by down.test:443")
        client.lose()
        self.assertEqual(len(self.recorder.transactions), 1)
        self.assert_serves()

    def test_client_leaves_before_tunnel_connects(self) -> None:
        self.network.hanging.add("example.test")
        client = self.client()
        client.send(b"CONNECT example.test:443 HTTP/1.1\r\n\r\n")
        client.lose()
        txn = self.recorder.only()
        self.assertIsNone(txn.response)
        self.assertEqual(txn.error, "client disconnected before the tunnel was established")
        upstream = self.network.pending[0].complete()
        self.assertTrue(upstream.transport.disconnecting)

    def test_bad_connect_target(self) -> None:
        client = self.client()
        client.send(b"CONNECT example.test HTTP/1.1\r\n\r\n")
        self.assert_error(client.received(), b"400", b"bad-request")
        self.assertEqual(self.network.attempts, [])


# -- draining -----------------------------------------------------------------------------------


class DrainTests(ProxyTestCase):
    def test_nothing_to_drain(self) -> None:
        self.successResultOf(self.factory.drain(5.0))

    def test_idle_closed_busy_finishes(self) -> None:
        idle = self.client()
        busy = self.client(IPv4Address("TCP", "127.0.0.1", 40001))
        busy.send(request())
        upstream = self.network.last
        drained = self.factory.drain(5.0)
        self.assertTrue(idle.closing)
        self.assertFalse(busy.closing)
        idle.lose()
        self.assertNoResult(drained)
        upstream.respond(OK_HELLO)
        self.assertEqual(busy.received(), OK_HELLO_TO_CLIENT)
        self.assertTrue(busy.closing)
        busy.lose()
        self.successResultOf(drained)
        self.assertEqual(self.recorder.only().status, 200)
        self.assertFalse(busy.transport.disconnected)
        self.assertEqual(
            [c for c in self.clock.getDelayedCalls() if c.func != self.pool._expire], []
        )

    def test_stuck_connection_aborted_after_timeout(self) -> None:
        stuck = self.client()
        stuck.send(b"CONNECT example.test:443 HTTP/1.1\r\n\r\n")
        drained = self.factory.drain(5.0)
        self.clock.advance(4.9)
        self.assertNoResult(drained)
        self.assertFalse(stuck.transport.disconnected)
        self.clock.advance(0.1)
        self.assertTrue(stuck.transport.disconnected)
        stuck.lose(ConnectionLost())
        self.successResultOf(drained)
        self.assertEqual(self.recorder.only().kind, "tunnel")

    def test_keep_alive_closed_after_response_while_draining(self) -> None:
        client = self.client()
        client.send(request())
        self.factory.drain(5.0)
        self.network.last.respond(OK_HELLO)
        self.assertTrue(client.closing)
