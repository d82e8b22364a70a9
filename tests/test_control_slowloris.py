"""The control channel against slow clients: header and body deadlines, the idle
timeout and the connection cap, on the control Site's own protocol with a
MemoryReactorClock and StringTransport; streamed answers are never cut; then one
end-to-end check that dribbling connections to the real server are closed."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from postcap.control.guard import ControlSite
from tests.postcap_process import PostcapProcess

PEER = IPv4Address("TCP", "127.0.0.1", 50000)
HOST = IPv4Address("TCP", "127.0.0.1", 5556)


class Streaming(Resource):
    """A response that stays open until the test ends it (like /events or a HAR)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render_GET(self, request: Request) -> Any:
        request.write(b"first chunk\n")
        self.requests.append(request)
        return NOT_DONE_YET


class Echo(Resource):
    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        return b"got %d bytes" % len(request.content.read())

    def render_GET(self, request: Request) -> bytes:
        return b"ok"


class ControlChannelTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        root = Resource()
        self.stream = Streaming()
        root.putChild(b"stream", self.stream)
        root.putChild(b"echo", Echo())
        self.site = ControlSite(root, reactor=self.clock, header_timeout=10.0,
                                body_timeout=30.0, idle_timeout=60.0, max_connections=3)

    def connect(self) -> tuple[Any, StringTransport]:
        protocol = self.site.buildProtocol(PEER)
        transport = StringTransport(hostAddress=HOST, peerAddress=PEER)
        protocol.makeConnection(transport)
        return protocol, transport

    def lose(self, protocol: Any, transport: StringTransport) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        if not transport.disconnected:
            transport.loseConnection()
        protocol.connectionLost(Failure(ConnectionDone()))

    def test_headers_dribbled_past_the_deadline_get_408_and_close(self) -> None:
        protocol, transport = self.connect()
        for byte in b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:5556\r\n":
            protocol.dataReceived(bytes([byte]))
            self.clock.advance(0.2)  # every byte resets Twisted's idle timeout
        self.assertFalse(transport.disconnecting)
        self.clock.advance(10.0)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 Request Timeout"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.site.slow_clients, 1)

    def test_a_silent_connection_is_closed_after_the_header_deadline(self) -> None:
        protocol, transport = self.connect()
        self.clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)

    def test_a_body_dribbled_past_its_deadline_gets_408(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:5556\r\n"
                              b"Content-Length: 100\r\n\r\n")
        self.clock.advance(2.0)
        for _ in range(25):
            protocol.dataReceived(b"x")
            self.clock.advance(1.0)
        self.assertFalse(transport.disconnecting)  # 27 s into the body
        self.clock.advance(3.5)
        self.assertIn(b"408", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_keep_alive_requests_in_time_are_served_and_each_has_its_own_deadline(self) -> None:
        protocol, transport = self.connect()
        for _ in range(3):
            protocol.dataReceived(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:5556\r\n"
                                  b"Content-Length: 3\r\n\r\nabc")
            self.clock.advance(50.0)  # idle between requests, under the 60 s idle timeout
        self.assertEqual(transport.value().count(b"got 3 bytes"), 3)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(11.0)  # idle timeout (60 s) reached
        self.assertTrue(transport.disconnecting)
        self.assertNotIn(b"408", transport.value())

    def test_a_pipelined_request_behind_a_stream_gets_its_own_header_deadline(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1:5556\r\n\r\n"
                              b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:55")
        self.clock.advance(600.0)  # the stream runs; the pipelined head waits, no deadline
        self.assertFalse(transport.disconnecting)
        self.stream.requests[0].finish()
        self.clock.advance(9.0)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1.5)
        self.assertIn(b"408", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_streamed_responses_outlive_every_timeout(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1:5556\r\n\r\n")
        for _ in range(10):
            self.clock.advance(3600.0)
        self.assertFalse(transport.disconnecting)
        request = self.stream.requests[0]
        request.write(b"an hour later\n")
        request.finish()
        self.assertIn(b"an hour later", transport.value())
        self.assertNotIn(b"408", transport.value())

    def test_connections_past_the_cap_get_503_and_close(self) -> None:
        open_ = [self.connect() for _ in range(3)]
        protocol, transport = self.connect()
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 503"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.site.busy_refused, 1)
        self.lose(*open_[0])
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:5556\r\n\r\n")
        self.assertIn(b"\r\n\r\nok", transport.value())

    def test_access_log_shows_no_query_string(self) -> None:
        lines: list[str] = []
        self.site.logFile = type("Lines", (), {"write": lambda _, line: lines.append(line)})()
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /echo?token=s3cret&x=1 HTTP/1.1\r\nHost: 127.0.0.1:5556\r\n\r\n")
        self.assertEqual(len(lines), 1)
        text = lines[0].decode() if isinstance(lines[0], bytes) else lines[0]
        self.assertIn('"GET /echo?REDACTED HTTP/1.1" 200', text)
        self.assertNotIn("s3cret", text)


def test_dribbling_connections_to_the_real_server_are_closed(tmp_path: Path) -> None:
    """Slowloris: connections sending a header byte every 0.5 s are closed with 408 at
    the header deadline (shortened for the test), and the channel keeps serving."""
    with PostcapProcess(tmp_path / "data", "--control-max-connections", "20",
                        "--control-header-timeout", "1.5") as server:
        dribblers = [socket.create_connection(("127.0.0.1", server.control_port), timeout=10)
                     for _ in range(10)]
        started = time.monotonic()
        closed: set[int] = set()
        answers: list[bytes] = []
        try:
            for sock in dribblers:
                sock.setblocking(False)
            head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
            position = 0
            while len(closed) < len(dribblers) and time.monotonic() - started < 15:
                for index, sock in enumerate(dribblers):
                    if index in closed:
                        continue
                    try:
                        sock.send(head[position:position + 1])
                    except OSError:
                        closed.add(index)
                        continue
                    try:
                        data = sock.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        closed.add(index)
                        continue
                    if data:
                        answers.append(data)
                    else:
                        closed.add(index)
                position += 1
                assert server.http("/healthz", token=None)[0] == 200
                time.sleep(0.25)
        finally:
            for sock in dribblers:
                sock.close()
        assert len(closed) == len(dribblers)
        assert time.monotonic() - started < 10
        assert answers and all(a.startswith(b"HTTP/1.1 408") for a in answers)
        control = server.rpc("server.info")["counters"]["control"]
        assert control["slow_clients"] >= len(answers) and control["refused"] == 0
