"""The control channel against strangers, end to end with the real ``twistd -n postcap``:
tokens, DNS rebinding (Host), CORS, body size and nesting caps, file modes, /healthz,
and secrets kept out of the log."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
from typing import Any, Iterator

import pytest

from tests.harness import Origin, start_origin
from tests.postcap_process import PostcapProcess

RPC = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "server.info"}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("control")) as running:
        yield running


def raw_control(server: PostcapProcess, data: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", server.control_port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                piece = sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not piece:
                break
            chunks.append(piece)
        return b"".join(chunks)


# -- tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer ", "Bearer wrong", "Basic {token}", "Bearer {token}x", "Bearer x{token}",
     "Token {token}", "Bearer {upper}"],
)
def test_missing_or_wrong_token_is_401(server: PostcapProcess, authorization: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization.format(token=server.token, upper=server.token.upper())
    status, answer_headers, body = server.http("/rpc", RPC, token=None, headers=headers)
    assert status == 401
    assert answer_headers["WWW-Authenticate"] == 'Bearer realm="postcap"'
    assert json.loads(body) == {"error": "missing or invalid bearer token"}


def test_token_in_the_url_is_refused_and_never_logged(server: PostcapProcess) -> None:
    for name in ("token", "access_token"):
        status, _, body = server.http(f"/rpc?{name}={server.token}", RPC, token=None)
        assert status == 400 and b"Authorization header" in body
        # Refused even beside a valid header: the URL has already leaked the token.
        status, _, _ = server.http(f"/rpc?{name}={server.token}", RPC)
        assert status == 400
    status, _, _ = server.http(f"/events?types=session&x={server.token}", token=None)
    assert status == 401
    deadline = time.monotonic() + 10
    while "/events?REDACTED" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log()
    assert '"POST /rpc?REDACTED HTTP/1.1" 400' in log and "/events?REDACTED" in log
    assert server.token not in log and "access_token" not in log


# -- DNS rebinding -------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}",
                                  "[::1]:{port}", "localhost.:{port}"])
def test_own_host_names_are_served(server: PostcapProcess, host: str) -> None:
    status, _, _ = server.http("/rpc", RPC, headers={"Host": host.format(port=server.control_port)})
    assert status == 200


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "127.0.0.1:{other}",
                                  "localhost", "127.0.0.1.nip.io:{port}", "localhost.evil.example:{port}",
                                  "[::1:{port}", "127.0.0.1:{port}x"])
def test_foreign_host_is_421(server: PostcapProcess, host: str) -> None:
    value = host.format(port=server.control_port, other=server.control_port + 1)
    status, headers, body = server.http("/rpc", RPC, headers={"Host": value})
    assert status == 421
    assert "not this control channel's address" in json.loads(body)["error"]
    assert "Access-Control-Allow-Origin" not in headers
    for path in ("/", "/ca.pem", "/events", "/sessions/x.har"):
        assert server.http(path, headers={"Host": value})[0] == 421, path
    assert f"Host {value!r} is not this control channel's address" in server.log()


def test_healthz_ignores_host(server: PostcapProcess) -> None:
    status, _, body = server.http("/healthz", token=None, headers={"Host": "monitor.internal:9"})
    assert (status, body) == (200, b"ok\n")


# -- CORS ----------------------------------------------------------------------------------


def test_no_permissive_cors(server: PostcapProcess) -> None:
    evil = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"}
    status, headers, _ = server.http("/rpc", method="OPTIONS", token=None, headers=evil)
    assert not any(name.lower().startswith("access-control-") for name in headers), headers
    assert status in (401, 405)
    status, headers, _ = server.http("/rpc", RPC, headers={"Origin": "http://evil.example"})
    assert status == 200
    assert not any(name.lower().startswith("access-control-") for name in headers), headers
    assert headers["X-Content-Type-Options"] == "nosniff"


# -- size and nesting caps -----------------------------------------------------------------


def test_body_over_one_mib_is_413(server: PostcapProcess) -> None:
    padding = " " * (1024 * 1024)
    status, _, body = server.http("/rpc", RPC + padding.encode())
    assert status == 413 and b"over 1048576 bytes" in body
    assert server.http("/rpc", RPC)[0] == 200


def test_announced_huge_body_is_refused_before_it_is_read(server: PostcapProcess) -> None:
    """Even without a token: nothing of a 10 GB body is read, spooled or kept."""
    started = time.monotonic()
    answer = raw_control(server, b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                         b"Content-Length: 10000000000\r\n\r\n{" % server.control_port)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in answer
    assert time.monotonic() - started < 5
    assert server.http("/rpc", RPC)[0] == 200


def test_chunked_body_growing_too_large_is_413(server: PostcapProcess) -> None:
    piece = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(20))
    answer = raw_control(server, b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTransfer-Encoding: chunked\r\n"
                         b"\r\n%s0\r\n\r\n" % (server.control_port, chunks))
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_nesting_depth_cap(server: PostcapProcess) -> None:
    deep = b'{"jsonrpc": "2.0", "id": 1, "method": "server.info", "params": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    status, _, body = server.http("/rpc", deep)
    error = json.loads(body)["error"]
    assert status == 200 and error["code"] == -32600
    assert error["message"] == "invalid request: nested deeper than 32 levels"
    assert server.http("/rpc", RPC)[0] == 200


# -- files, health, secrets ----------------------------------------------------------------


def test_file_modes(server: PostcapProcess) -> None:
    assert stat.S_IMODE(os.stat(server.data_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(server.data_dir, "ca", "postcap-ca-key.pem")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(server.data_dir, "control.token")).st_mode) == 0o600


def test_healthz_ok_without_token_or_details(server: PostcapProcess) -> None:
    status, headers, body = server.http("/healthz", token=None)
    assert (status, body) == (200, b"ok\n")
    assert headers["Content-Type"].startswith("text/plain")


def test_healthz_is_503_while_draining(tmp_path: Any) -> None:
    origin = start_origin()
    try:
        server = PostcapProcess(tmp_path / "drain", "--drain-timeout", "15").start()
        try:
            slow = subprocess.Popen(
                ["curl", "-sS", "-x", server.proxy_url, origin.url("/slow?delay=4")],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
            time.sleep(1.0)
            server.process.send_signal(15)  # type: ignore[union-attr]
            seen = []
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                status, _, body = server.http("/healthz", token=None)
                seen.append((status, body))
                if status == 503:
                    break
                time.sleep(0.1)
            assert (503, b"draining\n") in seen, seen
            out, _ = slow.communicate(timeout=20)
            assert out == b"slow done\n", "the in-flight exchange finished during the drain"
        finally:
            assert server.stop() == 0
    finally:
        origin.stop()


def test_token_and_ca_key_never_logged(tmp_path: Any) -> None:
    origin: Origin = start_origin()
    try:
        with PostcapProcess(tmp_path / "secrets") as server:
            token = server.token
            server.rpc("session.start")
            server.curl(origin.url("/hello"))
            server.http("/rpc", RPC, token="wrong-" + token[:8])
            server.http("/rpc", b"{broken", headers={"Content-Type": "application/json"})
            server.rpc("ca.get")
            server.rpc("session.stop")
            log = server.log()
        with open(os.path.join(server.data_dir, "ca", "postcap-ca-key.pem")) as key_file:
            key_lines = [line for line in key_file.read().splitlines() if line and "PRIVATE KEY" not in line]
    finally:
        origin.stop()
    assert log and "postcap" in log
    assert token not in log and token[:16] not in log
    assert not any(line in log for line in key_lines)
    assert "PRIVATE KEY" not in log
