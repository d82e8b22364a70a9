"""TCP_NODELAY on proxy sockets: real TCP sockets get it, other transports are left alone."""

from __future__ import annotations

import socket

from twisted.internet.testing import StringTransport

from postcap.proxy.upstream import send_immediately


class SocketTransport:
    """The one ITCPTransport method used, backed by a real socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(enabled))


def test_real_tcp_socket_gets_nodelay() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        send_immediately(SocketTransport(sock))
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_transport_without_tcp_options_is_left_alone() -> None:
    transport = StringTransport()
    send_immediately(transport)
    transport.write(b"still usable")
    assert transport.value() == b"still usable"


def test_closed_socket_is_ignored() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.close()
    send_immediately(SocketTransport(sock))  # OSError (bad fd) is swallowed
    assert sock.fileno() == -1
