"""End to end over HTTP/2: curl --http2 and httpx through CONNECT with an HTTP/1.1
origin, trailers both ways, and captures that say HTTP/2."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from typing import Any, Iterator

import pytest

from tests.certs import OriginPKI
from tests.harness import Origin, requires_curl
from tests.postcap_process import PostcapProcess, RPCError

pytestmark = requires_curl


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki: OriginPKI) -> Iterator[PostcapProcess]:
    data_dir = tmp_path_factory.mktemp("postcap-h2")
    with PostcapProcess(data_dir, env={"SSL_CERT_FILE": pki.ca_cert}) as running:
        yield running


@pytest.fixture
def session(server: PostcapProcess) -> Iterator[dict[str, Any]]:
    started = server.rpc("session.start", name="h2")
    yield started
    try:
        server.rpc("session.stop")
    except RPCError:
        pass


def https(origin: Origin, path: str) -> str:
    return f"https://127.0.0.1:{origin.port}{path}"


def http2_requests_counted(server: PostcapProcess) -> float:
    """``postcap_proxy_requests_total{status_class="2xx", http_version="HTTP/2"}`` now."""
    status, _, body = server.http("/metrics")
    assert status == 200
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            if (sample.name == "postcap_proxy_requests_total"
                    and sample.labels == {"status_class": "2xx", "http_version": "HTTP/2"}):
                return sample.value
    return 0.0


def test_curl_http2_through_connect_is_captured_as_http2(
    server: PostcapProcess, tls_origin: Origin, session: dict[str, Any]
) -> None:
    before = http2_requests_counted(server)
    result = server.curl(
        "-v", "--http2", "--cacert", server.ca_path, https(tls_origin, "/hello"), https(tls_origin, "/hello"),
    )
    assert result.stdout == b"hello from origin\n" * 2
    assert http2_requests_counted(server) == before + 2  # /metrics: 2xx over HTTP/2
    assert b"ALPN: server accepted h2" in result.stderr or b"using HTTP/2" in result.stderr
    assert b"< HTTP/2 200" in result.stderr
    items = server.requests(session["id"])
    assert [i["status"] for i in items] == [200, 200]
    detail = server.rpc("request.get", id=items[0]["id"])
    assert detail["request"]["http_version"] == "HTTP/2"
    assert detail["response"]["http_version"] == "HTTP/2"
    assert detail["response"]["body"]["text"] == "hello from origin\n"
    assert ["host", f"127.0.0.1:{tls_origin.port}"] in detail["request"]["headers"]


def test_curl_http2_post_body(
    server: PostcapProcess, tls_origin: Origin, session: dict[str, Any]
) -> None:
    result = server.curl("--http2", "--cacert", server.ca_path, "-d", "field=1", https(tls_origin, "/echo"))
    assert b'"body": "field=1"' in result.stdout
    (item,) = server.requests(session["id"])
    detail = server.rpc("request.get", id=item["id"])
    assert detail["request"]["body"]["text"] == "field=1"
    assert detail["request"]["method"] == "POST"


def test_httpx_http2_multiplexes_through_one_tunnel(
    server: PostcapProcess, tls_origin: Origin, session: dict[str, Any]
) -> None:
    import ssl

    import httpx

    context = ssl.create_default_context(cafile=server.ca_path)
    with httpx.Client(proxy=server.proxy_url, verify=context, http2=True, timeout=30) as client:
        answers = [client.get(https(tls_origin, f"/echo?n={n}")) for n in range(3)]
        posted = client.post(https(tls_origin, "/echo"), content=b"x" * 100_000)
    assert [a.http_version for a in answers] == ["HTTP/2"] * 3
    assert all(a.status_code == 200 for a in answers)
    assert posted.status_code == 200 and posted.json()["body_size"] == 100_000
    items = server.requests(session["id"])
    assert len(items) == 4
    detail = server.rpc("request.get", id=items[-1]["id"])
    assert detail["request"]["http_version"] == "HTTP/2"
    assert detail["request"]["body"]["size"] == 100_000


def _h2_through_connect(server: PostcapProcess, origin: Origin) -> tuple[Any, Any]:
    """A raw HTTP/2 connection through postcap's CONNECT (socket, h2 state)."""
    import socket
    import ssl

    import h2.config
    import h2.connection

    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    authority = f"127.0.0.1:{origin.port}"
    raw.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode("ascii"))
    head = b""
    while b"\r\n\r\n" not in head:
        head += raw.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    context = ssl.create_default_context(cafile=server.ca_path)
    context.set_alpn_protocols(["h2"])
    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
    assert sock.selected_alpn_protocol() == "h2"
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    connection.initiate_connection()
    sock.sendall(connection.data_to_send())
    return sock, connection


def _read_until_closed(sock: Any, connection: Any, limit: float = 10.0) -> list[Any]:
    import time

    import h2.events

    events: list[Any] = []
    deadline = time.monotonic() + limit
    sock.settimeout(limit)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except OSError:
            break
        if not data:
            break
        events.extend(connection.receive_data(data))
        if any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
            break
    return events


@pytest.mark.parametrize("attack", ["rapid-reset", "settings-flood"])
def test_h2_floods_cost_only_their_connection(
    server: PostcapProcess, tls_origin: Origin, attack: str
) -> None:
    import h2.errors
    import h2.events
    from h2.settings import SettingCodes

    sock, connection = _h2_through_connect(server, tls_origin)
    try:
        fields = [(b":method", b"GET"), (b":scheme", b"https"),
                  (b":authority", f"127.0.0.1:{tls_origin.port}".encode()), (b":path", b"/slow")]
        for _ in range(300):
            if attack == "rapid-reset":
                stream_id = connection.get_next_available_stream_id()
                connection.send_headers(stream_id, fields, end_stream=True)
                connection.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            else:
                connection.update_settings({SettingCodes.MAX_FRAME_SIZE: 16384})
        sock.sendall(connection.data_to_send())
        events = _read_until_closed(sock, connection)
    finally:
        sock.close()
    (goaway,) = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    # The process goes on serving everyone else.
    result = server.curl("--http2", "--cacert", server.ca_path, https(tls_origin, "/hello"))
    assert result.stdout == b"hello from origin\n"


@pytest.fixture(scope="module")
def h2_origin(pki: OriginPKI) -> Iterator[Origin]:
    """The origin over TLS offering HTTP/2 (Twisted's) by ALPN."""
    from twisted.web.http import H2_ENABLED

    from tests.harness import start_origin

    if not H2_ENABLED:
        pytest.skip("Twisted's HTTP/2 server needs the 'priority' package (pip install priority)")

    with start_origin(tls=(pki.good.cert, pki.good.key), http2=True) as running:
        yield running


@pytest.mark.parametrize("client_version", ["--http1.1", "--http2"])
def test_http2_origin_through_postcap(
    server: PostcapProcess, h2_origin: Origin, session: dict[str, Any], client_version: str
) -> None:
    result = server.curl(client_version, "--cacert", server.ca_path, "-d", "field=1", https(h2_origin, "/echo"))
    assert b'"body": "field=1"' in result.stdout
    big = server.curl(client_version, "--cacert", server.ca_path, https(h2_origin, "/bytes/3000000"))
    assert len(big.stdout) == 3_000_000
    items = server.requests(session["id"])
    detail = server.rpc("request.get", id=items[0]["id"])
    assert detail["response"]["http_version"] == "HTTP/2"
    assert detail["request"]["http_version"] == ("HTTP/2" if client_version == "--http2" else "HTTP/1.1")
    echoed = {name.lower(): value for name, value in server_echo(result.stdout)}
    assert echoed["host"] == f"127.0.0.1:{h2_origin.port}"


def server_echo(body: bytes) -> list[list[str]]:
    import json

    return json.loads(body)["headers"]
