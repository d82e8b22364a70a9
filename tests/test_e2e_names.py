"""Internationalised host names through the real server: curl asks for an ``xn--`` name
(``--connect-to`` sends the CONNECT to the 127.0.0.1 origin, the SNI keeps the name),
postcap mints a certificate for it and captures the exchange; a client whose SNI is no
host name gets a TLS alert, and the server goes on serving."""

from __future__ import annotations

import select
import socket
import time
from typing import Iterator

import pytest
from OpenSSL import SSL

from tests.certs import OriginPKI
from tests.harness import Origin, requires_curl
from tests.postcap_process import PostcapProcess

pytestmark = requires_curl

A_LABEL = "xn--bcher-kva.localhost"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki: OriginPKI) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("names"), env={"SSL_CERT_FILE": pki.ca_cert}) as running:
        yield running


def fetch(server: PostcapProcess, origin: Origin, host: str) -> bytes:
    """curl ``https://host:port/hello`` through postcap, trusting postcap's CA."""
    result = server.curl(
        "--cacert", server.ca_path, "-v",
        "--connect-to", f"{A_LABEL}:{origin.port}:127.0.0.1:{origin.port}",
        f"https://{host}:{origin.port}/hello",
    )
    assert result.stdout == b"hello from origin\n"
    return result.stderr


def test_a_label_host_is_minted_and_captured(server: PostcapProcess, tls_origin: Origin) -> None:
    session = server.rpc("session.start", name="names")
    try:
        log = fetch(server, tls_origin, A_LABEL)
        # curl's IDN support turns the U-label into the A-label (for --connect-to too).
        fetch(server, tls_origin, "bücher.localhost")
    finally:
        server.rpc("session.stop")
    assert f"subject: CN={A_LABEL}".encode() in log  # curl verified it against postcap's CA
    items = server.requests(session["id"])
    assert [item["status"] for item in items] == [200, 200]
    for item in items:
        assert server.rpc("request.get", id=item["id"])["tls"]["sni"] == A_LABEL


def refused_handshake(server: PostcapProcess, origin: Origin, sni: bytes) -> str:
    """CONNECT, then a TLS handshake sending ``sni``; the error the client saw."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n"
                     f"Host: 127.0.0.1:{origin.port}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(4096)
            assert piece, answer
            answer += piece
        assert answer.startswith(b"HTTP/1.1 200")
        client = SSL.Connection(SSL.Context(SSL.TLS_METHOD), sock)
        client.set_tlsext_host_name(sni)
        client.set_connect_state()
        for _ in range(50):  # the socket has a timeout: pyOpenSSL asks to be called again
            try:
                client.do_handshake()
            except SSL.WantReadError:
                select.select([sock], [], [], 10)
            except SSL.Error as problem:
                return str(problem)
            else:
                raise AssertionError("the handshake succeeded")
        raise AssertionError("the handshake neither finished nor failed")


def test_invalid_server_name_gets_an_alert_and_the_server_keeps_serving(
    server: PostcapProcess, tls_origin: Origin
) -> None:
    error = refused_handshake(server, tls_origin, b"not a host name.test")
    assert "alert handshake failure" in error
    deadline = time.monotonic() + 10
    while "TLS refused" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "is not a host name" in server.log()
    assert "Traceback" not in server.log()
    fetch(server, tls_origin, A_LABEL)
