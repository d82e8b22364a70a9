"""End to end: ``--mode reverse:URL`` in front of a plain and a TLS origin, with curl;
TLS towards clients with ``--reverse-tls`` (postcap's CA) and ``--certs`` (an
operator's certificate); captures shaped as in regular mode."""

from __future__ import annotations

import json
import subprocess
from typing import Any, Iterator

import pytest

from tests.certs import OriginPKI
from tests.harness import Origin, requires_curl
from tests.postcap_process import PostcapProcess

pytestmark = requires_curl


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True,
                          timeout=40)


def _shape(value: Any) -> Any:
    """The keys (recursively) of a JSON value: what 'the same shape' compares."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()
                if key not in ("headers", "text")}
    return type(value).__name__ if value is not None else None


@pytest.fixture(scope="module")
def reverse_plain(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("reverse"), "--mode", f"reverse:{origin.url('/')}") as server:
        yield server


def test_origin_form_requests_reach_the_one_server_and_are_captured(
    reverse_plain: PostcapProcess, origin: Origin
) -> None:
    session = reverse_plain.rpc("session.start", name="reverse")
    try:
        result = curl("-d", "field=1", "-H", "X-Trace: 7", f"{reverse_plain.proxy_url}/echo?x=1")
        assert result.returncode == 0, result.stderr
        echoed = json.loads(result.stdout)
        assert echoed["method"] == "POST" and echoed["path"] == "/echo?x=1"
        assert echoed["body"] == "field=1"
        headers = {name.lower(): value for name, value in echoed["headers"]}
        assert headers["host"] == origin.authority  # rewritten to the target's
        assert headers["x-trace"] == "7"
        (item,) = reverse_plain.requests(session["id"])
        assert item["url"] == origin.url("/echo?x=1")
        assert item["status"] == 200
        detail = reverse_plain.rpc("request.get", id=item["id"])
        assert detail["request"]["body"]["text"] == "field=1"
        assert detail["server"]["port"] == origin.port
        assert detail["tls"] is None
        assert reverse_plain.rpc("server.info")["mode"] == f"reverse:{origin.url('/')}"
    finally:
        reverse_plain.rpc("session.stop")


def test_absolute_form_and_connect_are_refused(reverse_plain: PostcapProcess, origin: Origin) -> None:
    forward = curl("-i", "-x", reverse_plain.proxy_url, origin.url("/hello"))
    assert forward.stdout.startswith(b"HTTP/1.1 400"), forward.stdout
    assert b"reverse proxy" in forward.stdout
    tunnel = curl("-i", "-p", "-x", reverse_plain.proxy_url, "https://127.0.0.1:1/")
    assert b"400" in tunnel.stderr + tunnel.stdout
    assert curl(f"{reverse_plain.proxy_url}/hello").stdout == b"hello from origin\n"


def test_capture_has_the_shape_of_regular_mode(
    tmp_path_factory: pytest.TempPathFactory, reverse_plain: PostcapProcess, origin: Origin
) -> None:
    details = []
    with PostcapProcess(tmp_path_factory.mktemp("regular")) as regular:
        regular.rpc("session.start")
        regular.curl(origin.url("/hello"))
        (item,) = regular.requests()
        details.append(regular.rpc("request.get", id=item["id"]))
    session = reverse_plain.rpc("session.start")
    try:
        curl(f"{reverse_plain.proxy_url}/hello")
        (item,) = reverse_plain.requests(session["id"])
        details.append(reverse_plain.rpc("request.get", id=item["id"]))
    finally:
        reverse_plain.rpc("session.stop")
    regular_detail, reverse_detail = details
    assert reverse_detail["url"] == regular_detail["url"] == origin.url("/hello")
    for key in ("id", "session_id", "started_at"):
        regular_detail.pop(key), reverse_detail.pop(key)
    assert _shape(reverse_detail) == _shape(regular_detail)


def test_keep_host_and_tls_upstream(
    tmp_path: Any, pki: OriginPKI, tls_origin: Origin
) -> None:
    with PostcapProcess(tmp_path, "--mode", f"reverse:{tls_origin.url('/')}", "--keep-host",
                        env={"SSL_CERT_FILE": pki.ca_cert}) as server:
        server.rpc("session.start")
        result = curl("-H", "Host: staging.example", f"{server.proxy_url}/echo")
        echoed = json.loads(result.stdout)
        assert ["Host", "staging.example"] in echoed["headers"]
        (item,) = server.requests()
        assert item["url"] == tls_origin.url("/echo")


def test_reverse_tls_with_postcaps_ca(tmp_path: Any, origin: Origin) -> None:
    with PostcapProcess(tmp_path, "--mode", f"reverse:{origin.url('/')}", "--reverse-tls") as server:
        server.rpc("session.start")
        url = f"https://127.0.0.1:{server.port}/hello"
        result = curl("--cacert", server.ca_path, url)
        assert result.stdout == b"hello from origin\n", result.stderr
        # A client asking for a name by SNI gets a certificate for that name.
        named = curl("--cacert", server.ca_path, "--resolve", f"api.test:{server.port}:127.0.0.1",
                     f"https://api.test:{server.port}/hello")
        assert named.stdout == b"hello from origin\n", named.stderr
        items = server.requests()
        assert [i["url"] for i in items] == [origin.url("/hello")] * 2
        detail = server.rpc("request.get", id=items[1]["id"])
        assert detail["tls"]["sni"] == "api.test"


def test_reverse_tls_with_operator_certificate(tmp_path: Any, pki: OriginPKI, origin: Origin) -> None:
    pem = tmp_path / "site.pem"
    pem.write_text(open(pki.good.cert).read() + open(pki.good.key).read())
    with PostcapProcess(tmp_path / "data", "--mode", f"reverse:{origin.url('/')}",
                        "--certs", str(pem)) as server:
        server.rpc("session.start")
        result = curl("--cacert", pki.ca_cert, f"https://localhost:{server.port}/hello")
        assert result.stdout == b"hello from origin\n", result.stderr
        (item,) = server.requests()
        assert server.rpc("request.get", id=item["id"])["tls"]["version"] in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("args, expected", [
    (["--mode", "sideways"], b"--mode"),
    (["--mode", "reverse:ftp://x/"], b"--mode"),
    (["--keep-host"], b"--keep-host needs --mode reverse:URL"),
])
def test_invalid_mode_is_a_one_line_start_error(tmp_path: Any, args: list[str], expected: bytes) -> None:
    process = PostcapProcess(tmp_path, *args)
    result = subprocess.run(process.command(), capture_output=True, timeout=30)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


@pytest.mark.parametrize("client_tls", [False, True], ids=["ws", "wss-reverse-tls"])
def test_websocket_through_reverse_mode(tmp_path: Any, client_tls: bool) -> None:
    import ssl
    import time

    from websockets.sync.client import connect

    from tests.wsorigin import port_of, websocket_origin

    with websocket_origin() as ws_server:
        upstream = f"http://127.0.0.1:{port_of(ws_server)}/"
        extra = ["--reverse-tls"] if client_tls else []
        with PostcapProcess(tmp_path, "--mode", f"reverse:{upstream}", *extra) as server:
            server.rpc("session.start")
            scheme = "wss" if client_tls else "ws"
            context = ssl.create_default_context(cafile=server.ca_path) if client_tls else None
            with connect(f"{scheme}://127.0.0.1:{server.port}/echo", ssl=context, open_timeout=10,
                         ping_interval=None, close_timeout=5) as client:
                client.send("through the front")
                assert client.recv(timeout=10) == "through the front"
            (item,) = server.requests()
            assert item["url"] == f"{upstream}echo" and item["status"] == 101
            deadline = time.monotonic() + 10
            while server.rpc("request.messages", id=item["id"])["total"] < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            texts = [m["text"] for m in server.rpc("request.messages", id=item["id"])["items"]
                     if m["type"] == "text"]
            assert texts == ["through the front"] * 2
