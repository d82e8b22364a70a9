"""The proxy's global connection cap (below the file-descriptor limit), and postcap's
own endpoints, which proxy clients may not reach: unit tests on the factory with
MemoryReactorClock/StringTransport, then the real server."""

from __future__ import annotations

import ipaddress
import socket
import time
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from postcap.proxy.own import GuardedFactory, OwnEndpointRefused, OwnEndpoints
from postcap.startup import RESERVED_FDS, default_max_connections, raise_fd_limit
from postcap.tap import max_connections
from tests.harness import free_port
from tests.postcap_process import PostcapProcess
from tests.test_proxy_unit import ProxyTestCase, request


class GlobalCapTests(ProxyTestCase):
    def test_past_the_cap_a_client_gets_503_and_a_freed_slot_serves_again(self) -> None:
        self.make_proxy(max_connections=3)
        held = [self.client(IPv4Address("TCP", f"10.0.0.{n}", 1)) for n in range(1, 4)]
        assert all(client.received() == b"" for client in held)
        over = self.client(IPv4Address("TCP", "10.0.0.9", 1))
        self.assert_error(over.received(), b"503", b"server-busy")
        self.assertIn(b"connection limit (3)", over.received())
        self.assertTrue(over.closing)
        self.assertEqual(self.factory.errors["server-busy"], 1)
        self.assertEqual(self.factory.refused, 1)
        held[0].lose()
        self.assert_serves()

    def test_refusals_are_counted_each_but_logged_once_per_interval(self) -> None:
        self.make_proxy(max_connections=1)
        self.client()
        logged: list[dict[str, Any]] = []
        from twisted.logger import globalLogPublisher

        observer = logged.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        for port in range(2, 12):
            self.client(IPv4Address("TCP", "10.0.0.2", port))
        self.clock.advance(self.factory.admission.busy_log_interval)
        self.client(IPv4Address("TCP", "10.0.0.2", 99))
        busy = [e for e in logged if "connection limit" in e.get("log_format", "")]
        self.assertEqual([e["count"] for e in busy], [1, 10])
        self.assertEqual(self.factory.errors["server-busy"], 11)


def test_default_cap_keeps_a_reserve_below_the_descriptor_limit() -> None:
    assert default_max_connections(1024) == (1024 - RESERVED_FDS) // 2 == 480
    assert default_max_connections(40) == 16  # never below a usable minimum
    assert max_connections(None, 1024, default_max_connections) == 480
    assert max_connections(100, 1024, default_max_connections) == 100
    assert max_connections(5000, 1024, default_max_connections) == 480  # lowered, logged
    import resource

    limit = raise_fd_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert limit == soft and (soft == hard or hard == resource.RLIM_INFINITY)


# -- own endpoints ---------------------------------------------------------------------------


def test_own_endpoints_by_name_and_by_peer() -> None:
    own = OwnEndpoints([ipaddress.ip_address("192.168.1.5")])
    own.add(5556, "127.0.0.1")
    for host in ("127.0.0.1", "localhost", "LOCALHOST.", "[::1]", "::ffff:127.0.0.1", "127.9.9.9",
                 "0.0.0.0", "192.168.1.5", "app.localhost"):
        assert own.names(host, 5556), host
    assert not own.names("127.0.0.1", 80)
    assert not own.names("example.com", 5556)
    assert not own.names("192.168.1.6", 5556)
    assert own.reached(IPv4Address("TCP", "192.168.1.5", 5556))
    assert own.reached(IPv6Address("TCP", "::1", 5556))
    assert not own.reached(IPv4Address("TCP", "93.184.216.34", 5556))


def test_guarded_factory_refuses_a_resolved_own_endpoint() -> None:
    own = OwnEndpoints()
    own.add(5556)
    factory = GuardedFactory(Factory.forProtocol(Protocol), own)
    assert isinstance(factory.buildProtocol(IPv4Address("TCP", "10.1.1.1", 5556)), Protocol)
    try:
        factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5556))
    except OwnEndpointRefused as exc:
        assert "own control endpoint" in str(exc)
    else:
        raise AssertionError("not refused")


class OwnEndpointTests(ProxyTestCase):
    def test_requests_and_connects_to_the_control_port_are_refused(self) -> None:
        self.factory.own.add(5556, "127.0.0.1")
        for target in (b"http://127.0.0.1:5556/healthz", b"http://localhost:5556/ca.pem",
                       b"http://[::1]:5556/rpc"):
            client = self.client()
            client.send(request(target=target))
            self.assert_error(client.received(), b"403", b"own-endpoint")
        client = self.client()
        client.send(request(b"CONNECT", b"127.0.0.1:5556", (b"Host: 127.0.0.1:5556",)))
        self.assert_error(client.received(), b"403", b"own-endpoint")
        self.assertEqual(self.network.attempts, [])
        self.assertEqual(self.factory.errors["own-endpoint"], 4)
        self.assert_serves()


# -- the real server ---------------------------------------------------------------------------


def _held(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]


def _answer(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET http://postcap.cert/cert/pem HTTP/1.1\r\nHost: postcap.cert\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_at_the_cap_new_clients_get_503_and_the_control_channel_still_answers(
    tmp_path: Path,
) -> None:
    with PostcapProcess(tmp_path / "data", "--max-connections", "8") as server:
        time.sleep(0.3)  # the start-up probe's connection is gone
        held = _held(server.port, 8)
        try:
            deadline = time.monotonic() + 10
            while server.rpc("server.info")["counters"]["open_connections"] < 8:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            refused = _answer(server.port)
            assert refused.startswith(b"HTTP/1.1 503") and b"X-Postcap-Error: server-busy" in refused
            assert server.http("/healthz", token=None)[0] == 200
            assert server.rpc("server.info")["counters"]["errors"]["server-busy"] == 1
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 10
        while not _answer(server.port).startswith(b"HTTP/1.1 200"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "proxy at its connection limit (8, --max-connections)" in server.log()


def test_control_port_is_not_reachable_through_the_proxy(tmp_path: Path) -> None:
    metrics_port = free_port()
    with PostcapProcess(tmp_path / "data", "--metrics",
                        f"tcp:{metrics_port}:interface=127.0.0.1") as server:
        metrics = server.curl("-i", f"http://localhost:{metrics_port}/metrics", check=False)
        assert metrics.stdout.startswith(b"HTTP/1.1 403"), metrics.stdout
        assert b"postcap_" not in metrics.stdout
        for host in ("127.0.0.1", "localhost"):
            for path in ("/healthz", "/ca.pem"):
                result = server.curl("-i", f"http://{host}:{server.control_port}{path}",
                                     check=False)
                head = result.stdout.split(b"\r\n\r\n", 1)[0]
                assert head.startswith(b"HTTP/1.1 403"), result.stdout
                assert b"X-Postcap-Error: own-endpoint" in head
                assert b"BEGIN CERTIFICATE" not in result.stdout
        tunnel = server.curl("-p", "-i", f"http://127.0.0.1:{server.control_port}/healthz",
                             check=False)
        assert b"403" in tunnel.stdout.split(b"\r\n", 1)[0] + tunnel.stderr
        assert server.rpc("server.info")["counters"]["errors"]["own-endpoint"] == 6


class ResolvedOwnEndpointTests(TestCase):
    """A name the checks by name do not know, resolving to the control port: the real
    HostnameEndpoint connects, the peer is checked before any protocol sees it."""

    async def test_connector_refuses_a_resolved_own_endpoint(self) -> None:
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ServerEndpoint

        from postcap.proxy.connector import UpstreamConnector
        from postcap.proxy.upstream import Origin, describe_connect_failure

        listening = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Protocol))
        self.addCleanup(listening.stopListening)
        port = listening.getHost().port
        own = OwnEndpoints()
        own.add(port, "127.0.0.1")
        connector = UpstreamConnector(reactor, 5.0, own=own)
        built: list[Protocol] = []
        factory = Factory.forProtocol(lambda: built.append(Protocol()) or built[-1])
        origin = Origin("http", "127.0.0.1", port)
        failure = None
        try:
            await connector.endpoint(origin).connect(factory)
        except Exception:
            from twisted.python.failure import Failure

            failure = Failure()
        assert failure is not None and failure.check(OwnEndpointRefused), failure
        assert built == []
        error = describe_connect_failure(origin, failure)
        assert (error.status, error.kind) == (403, "own-endpoint")
        # Without the guard the same endpoint connects.
        plain = await UpstreamConnector(reactor, 5.0).endpoint(origin).connect(factory)
        plain.transport.loseConnection()
