"""Smoke tests for the end-to-end origin server (tests/origin.py) and its harness.

Plain blocking clients against a real subprocess; every process is stopped in
fixture teardown."""

from __future__ import annotations

import datetime
import hashlib
import http.client
import ipaddress
import json
import signal
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import Origin, free_port, start_origin
from tests.origin import pattern_bytes


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    server = start_origin()
    try:
        yield server
    finally:
        assert server.stop() == 0


def fetch(
    url: str,
    data: bytes | None = None,
    method: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def test_hello(origin: Origin) -> None:
    status, headers, body = fetch(origin.url("/hello"))
    assert (status, body) == (200, b"hello from origin\n")
    assert headers["Content-Type"] == "text/plain"
    assert headers["Content-Length"] == "18"


def test_echo_post(origin: Origin) -> None:
    status, headers, body = fetch(
        origin.url("/echo?a=1&b=two"),
        data=b'{"x": 1}',
        headers={"X-Custom": "Value", "Content-Type": "application/json"},
    )
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    echoed = json.loads(body)
    assert echoed["method"] == "POST"
    assert echoed["path"] == "/echo?a=1&b=two"
    assert echoed["body"] == '{"x": 1}'
    assert echoed["body_size"] == 8
    names = {name.lower(): value for name, value in echoed["headers"]}
    assert names["x-custom"] == "Value"
    assert names["content-length"] == "8"
    assert names["host"] == origin.authority


def test_echo_binary_body_and_methods(origin: Origin) -> None:
    _, _, body = fetch(origin.url("/echo"), data=b"\xff\x00\xfe", method="PUT")
    echoed = json.loads(body)
    assert (echoed["method"], echoed["body"], echoed["body_encoding"], echoed["body_size"]) == (
        "PUT",
        "/wD+",
        "base64",
        3,
    )
    _, _, body = fetch(origin.url("/echo"), method="DELETE")
    assert json.loads(body)["method"] == "DELETE"


def test_bytes(origin: Origin) -> None:
    status, headers, body = fetch(origin.url("/bytes/1000"))
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Length"] == "1000"
    assert body == (b"0123456789abcdef" * 63)[:1000]
    assert fetch(origin.url("/bytes/0"))[2] == b""
    _, _, body = fetch(origin.url("/bytes/200000"))
    assert body == pattern_bytes(0, 200000)


def test_pattern_bytes() -> None:
    whole = pattern_bytes(0, 1000)
    assert pattern_bytes(37, 100) == whole[37:137]
    assert pattern_bytes(5, 0) == b""


def test_chunked(origin: Origin) -> None:
    status, headers, body = fetch(origin.url("/chunked?n=4"))
    assert status == 200
    assert headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in headers
    assert body == b"line 0\nline 1\nline 2\nline 3\n"
    assert fetch(origin.url("/chunked?n=3&delay=0.01"))[2] == b"line 0\nline 1\nline 2\n"


def test_chunked_on_the_wire(origin: Origin) -> None:
    raw = raw_exchange(origin, b"GET /chunked?n=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"7\r\nline 0\n\r\n7\r\nline 1\n\r\n0\r\n\r\n"


def test_status(origin: Origin) -> None:
    assert fetch(origin.url("/status/418"))[::2] == (418, b"status 418\n")
    assert fetch(origin.url("/status/201"))[::2] == (201, b"status 201\n")
    assert fetch(origin.url("/status/204"))[::2] == (204, b"")
    assert fetch(origin.url("/status/500"))[::2] == (500, b"status 500\n")
    assert fetch(origin.url("/status/abc"))[0] == 400
    assert fetch(origin.url("/nowhere"))[0] == 404


def test_resources(origin: Origin) -> None:
    status, headers, png = fetch(origin.url("/image.png"))
    assert (status, headers["Content-Type"]) == (200, "image/png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    assert fetch(origin.url("/script.js"))[1]["Content-Type"] == "application/javascript"
    assert fetch(origin.url("/style.css"))[1]["Content-Type"] == "text/css"
    _, headers, page = fetch(origin.url("/page.html"))
    assert headers["Content-Type"].startswith("text/html")
    for ref in (b'"/image.png"', b'"/script.js"', b'"/style.css"'):
        assert ref in page


def test_slow(origin: Origin) -> None:
    assert fetch(origin.url("/slow?delay=0.1"))[::2] == (200, b"slow done\n")


def test_cookies(origin: Origin) -> None:
    status, headers, _ = fetch(origin.url("/cookies/set?session=abc&theme=dark"))
    assert status == 200
    assert headers.get_all("Set-Cookie") == [
        "session=abc; Path=/; HttpOnly",
        "theme=dark; Path=/; HttpOnly",
    ]
    _, _, body = fetch(origin.url("/cookies/show"), headers={"Cookie": "session=abc; theme=dark"})
    assert json.loads(body) == {
        "cookie": "session=abc; theme=dark",
        "cookies": [["session", "abc"], ["theme", "dark"]],
    }
    assert json.loads(fetch(origin.url("/cookies/show"))[2]) == {"cookie": None, "cookies": []}


def test_headers_big(origin: Origin) -> None:
    raw = raw_exchange(
        origin, b"GET /headers-big?n=100000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert b"\r\nX-Big: " + b"b" * 100000 + b"\r\n" in raw


def test_upload(origin: Origin) -> None:
    data = bytes(range(256)) * 4000
    status, _, body = fetch(origin.url("/upload"), data=data)
    assert status == 200
    assert json.loads(body) == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert fetch(origin.url("/upload"))[0] == 405


def test_close_mid_body(origin: Origin) -> None:
    with pytest.raises(http.client.IncompleteRead) as caught:
        with urllib.request.urlopen(origin.url("/close-mid-body"), timeout=10) as response:
            assert response.headers["Content-Length"] == "1000"
            response.read()
    assert len(caught.value.partial) == 100


def test_stall(origin: Origin) -> None:
    with socket.create_connection((origin.host, origin.port), timeout=10) as sock:
        sock.sendall(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while not received.endswith(b"s" * 100):
            received += sock.recv(65536)
        assert b"Content-Length: 1000" in received
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(65536)


def test_big_download_is_streamed(origin: Origin) -> None:
    """200 MiB go through without the origin holding them in memory."""
    size = 200 * 1024 * 1024
    total = 0
    with urllib.request.urlopen(origin.url(f"/bytes/{size}"), timeout=30) as response:
        assert response.headers["Content-Length"] == str(size)
        first = response.read(1 << 20)
        assert first == pattern_bytes(0, 1 << 20)
        total = len(first)
        while chunk := response.read(1 << 20):
            total += len(chunk)
    assert total == size
    peak_kib = _peak_rss_kib(origin.process.pid)
    if peak_kib is not None:
        assert peak_kib < 120 * 1024, f"origin peaked at {peak_kib} KiB"


def test_free_port() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_sigint_and_sigterm_exit_zero() -> None:
    server = start_origin()
    try:
        assert fetch(server.url("/hello"))[0] == 200
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(10) == 0
    finally:
        server.stop()
    with start_origin() as server:
        assert server.running
    assert server.process.returncode == 0
    assert server.stop() == 0  # idempotent


def test_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = start_origin(tls=(str(cert), str(key)))
    try:
        assert server.url("/hello") == f"https://127.0.0.1:{server.port}/hello"
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(server.url("/hello"), context=context, timeout=10) as response:
            assert response.read() == b"hello from origin\n"
        request = urllib.request.Request(server.url("/echo"), data=b"secret")
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            assert json.loads(response.read())["body"] == "secret"
        with pytest.raises(http.client.IncompleteRead) as caught:
            with urllib.request.urlopen(
                server.url("/close-mid-body"), context=context, timeout=10
            ) as response:
                response.read()
        assert len(caught.value.partial) == 100
    finally:
        assert server.stop() == 0


# -- helpers --------------------------------------------------------------------------


def raw_exchange(origin: Origin, request: bytes) -> bytes:
    """Send raw bytes, read until the origin closes."""
    with socket.create_connection((origin.host, origin.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while data := sock.recv(65536):
            received += data
    return received


def _peak_rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, made at test time."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "postcap test origin")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "origin.pem", directory / "origin.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
