"""End to end: the real ``twistd -n postcap``, a real origin, real curl (plain HTTP)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from typing import Any, Iterator

import pytest

from tests.harness import Origin, free_port, requires_curl
from tests.postcap_process import PostcapProcess, RPCError, rss_kib

pytestmark = requires_curl



@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    data_dir = tmp_path_factory.mktemp("postcap")
    with PostcapProcess(data_dir, "--upstream-timeout", "2", "--header-timeout", "1") as running:
        yield running


@pytest.fixture
def session(server: PostcapProcess) -> Iterator[dict[str, Any]]:
    """A fresh running session; stopped afterwards."""
    started = server.rpc("session.start", name="e2e")
    yield started
    try:
        server.rpc("session.stop", id=started["id"])
    except RPCError:
        pass


def wait_for(predicate: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes to the proxy and read until it closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            pass
        return b"".join(chunks)


# -- forwarding ----------------------------------------------------------------------------


def test_forwards_without_a_session(server: PostcapProcess, origin: Origin) -> None:
    result = server.curl(origin.url("/hello"))
    assert result.stdout == b"hello from origin\n"
    assert server.rpc("server.info")["active_session"] is None


def test_session_captures_request_and_response(
    server: PostcapProcess, origin: Origin, session: dict[str, Any]
) -> None:
    server.curl("-H", "X-Test: one", "-d", "payload=1", origin.url("/echo?x=1"))
    items = server.requests(session["id"])
    assert len(items) == 1
    summary = items[0]
    assert summary["method"] == "POST"
    assert summary["url"] == origin.url("/echo?x=1")
    assert summary["host"] == "127.0.0.1"
    assert summary["status"] == 200
    assert summary["request_bytes"] == len("payload=1")
    assert summary["content_type"] == "application/json"
    assert summary["error"] is None
    detail = server.rpc("request.get", id=summary["id"])
    assert ["X-Test", "one"] in detail["request"]["headers"]
    assert detail["request"]["body"]["text"] == "payload=1"
    echoed = json.loads(detail["response"]["body"]["text"])
    assert echoed["body"] == "payload=1"
    assert ["Via", "1.1 postcap"] in echoed["headers"]
    assert detail["client"]["ip"] == "127.0.0.1"
    assert detail["server"] == {"host": "127.0.0.1", "port": origin.port}
    assert detail["tls"] is None
    assert set(detail["timings"]) == {"connect_ms", "tls_ms", "send_ms", "wait_ms", "receive_ms"}
    got = server.rpc("session.get", id=session["id"])
    assert got["request_count"] == 1
    assert got["total_bytes"] == summary["request_bytes"] + summary["response_bytes"]


def test_keep_alive_and_chunked(server: PostcapProcess, origin: Origin, session: dict[str, Any]) -> None:
    result = server.curl("-v", origin.url("/chunked?n=5"), origin.url("/hello"))
    assert result.stdout == b"".join(b"line %d\n" % i for i in range(5)) + b"hello from origin\n"
    assert b"Re-using existing connection" in result.stderr or b"Reusing existing" in result.stderr
    items = server.requests(session["id"])
    assert [i["status"] for i in items] == [200, 200]
    assert items[0]["response_bytes"] == len(result.stdout) - len(b"hello from origin\n")


def test_head_and_no_body_statuses(server: PostcapProcess, origin: Origin) -> None:
    head = server.curl("-I", origin.url("/hello"))
    assert b"200" in head.stdout.split(b"\r\n")[0]
    for code in (204, 304):
        result = server.curl("-s", "-o", "/dev/null", "-w", "%{http_code}", origin.url(f"/status/{code}"))
        assert result.stdout == str(code).encode()


def test_expect_100_continue_upload(server: PostcapProcess, origin: Origin, tmp_path: Any) -> None:
    payload = tmp_path / "upload.bin"
    payload.write_bytes(os.urandom(300_000))
    result = server.curl("-H", "Expect: 100-continue", "--data-binary", f"@{payload}", origin.url("/upload"))
    assert json.loads(result.stdout)["size"] == 300_000


def test_hop_by_hop_headers_removed(server: PostcapProcess, origin: Origin) -> None:
    result = server.curl(
        "-H", "Connection: keep-alive, X-Secret",
        "-H", "X-Secret: drop me",
        "-H", "Proxy-Authorization: Basic Zm9vOmJhcg==",
        "-H", "X-Kept: yes",
        origin.url("/echo"),
    )
    names = [name.lower() for name, _ in json.loads(result.stdout)["headers"]]
    assert "x-secret" not in names
    assert "proxy-authorization" not in names
    assert "x-kept" in names


# -- sessions ----------------------------------------------------------------------------


def test_pause_resume_stop(server: PostcapProcess, origin: Origin, session: dict[str, Any]) -> None:
    server.rpc("session.pause")
    assert server.curl(origin.url("/hello")).stdout == b"hello from origin\n"
    assert server.requests(session["id"]) == []
    resumed = server.rpc("session.resume")
    assert resumed["state"] == "running"
    server.curl(origin.url("/hello"))
    assert len(server.requests(session["id"])) == 1
    stopped = server.rpc("session.stop")
    assert stopped["state"] == "stopped" and stopped["stopped_at"] is not None
    server.curl(origin.url("/hello"))
    assert len(server.requests(session["id"])) == 1
    with pytest.raises(RPCError) as raised:
        server.rpc("session.resume", id=session["id"])
    assert raised.value.code == -32002


def test_second_start_is_refused(server: PostcapProcess, session: dict[str, Any]) -> None:
    with pytest.raises(RPCError) as raised:
        server.rpc("session.start")
    assert raised.value.code == -32001


@pytest.mark.parametrize(
    "filters, paths, expected",
    [
        ({"url_contains": "/status/2"}, ["/status/200", "/status/404", "/hello"], ["/status/200"]),
        ({"url_contains": r"status/(404|500)$"}, ["/status/200", "/status/404"], ["/status/404"]),
        ({"url_excludes": "hello"}, ["/hello", "/status/201"], ["/status/201"]),
        ({"status_codes": ["4xx"]}, ["/status/200", "/status/404", "/status/418"], ["/status/404", "/status/418"]),
        ({"status_codes": [201]}, ["/status/200", "/status/201"], ["/status/201"]),
        ({"exclude_resources": ["image", "css"]}, ["/image.png", "/style.css", "/script.js"], ["/script.js"]),
    ],
)
def test_filters(
    server: PostcapProcess, origin: Origin, filters: dict[str, Any], paths: list[str], expected: list[str]
) -> None:
    started = server.rpc("session.start", filters=filters)
    try:
        for path in paths:
            server.curl("-o", "/dev/null", origin.url(path))
        captured = [item["url"] for item in server.requests(started["id"])]
        assert captured == [origin.url(p) for p in expected]
    finally:
        server.rpc("session.stop")


def test_methods_filter_and_live_update(server: PostcapProcess, origin: Origin, session: dict[str, Any]) -> None:
    server.rpc("session.update", filters={"methods": ["POST"]})
    server.curl(origin.url("/echo"))
    server.curl("-d", "x", origin.url("/echo"))
    assert [i["method"] for i in server.requests(session["id"])] == ["POST"]
    renamed = server.rpc("session.update", name="renamed")
    assert renamed["name"] == "renamed"


def test_invalid_regex_is_rejected(server: PostcapProcess) -> None:
    with pytest.raises(RPCError) as raised:
        server.rpc("session.start", filters={"url_contains": "(unclosed"})
    assert raised.value.code == -32005
    assert "url_contains" in raised.value.message
    assert server.rpc("server.info")["active_session"] is None


def test_media_bodies_not_stored(server: PostcapProcess, origin: Origin, session: dict[str, Any]) -> None:
    body = server.curl(origin.url("/image.png")).stdout
    assert body.startswith(b"\x89PNG")
    (item,) = server.requests(session["id"])
    detail = server.rpc("request.get", id=item["id"])
    assert detail["response"]["body"]["captured"] is False
    assert detail["response"]["body"]["size"] == len(body)
    assert detail["response"]["body"]["text"] == ""


def test_save_responses_false(server: PostcapProcess, origin: Origin) -> None:
    started = server.rpc("session.start", save_responses=False)
    try:
        server.curl(origin.url("/hello"))
        (item,) = server.requests(started["id"])
        detail = server.rpc("request.get", id=item["id"])
        assert detail["response"]["status"] == 200
        assert detail["response"]["body"]["captured"] is False
    finally:
        server.rpc("session.stop")


def test_clear_and_delete(server: PostcapProcess, origin: Origin) -> None:
    started = server.rpc("session.start")
    server.curl(origin.url("/hello"))
    cleared = server.rpc("session.clear")
    assert cleared["request_count"] == 0
    assert server.requests(started["id"]) == []
    with pytest.raises(RPCError) as raised:
        server.rpc("session.delete", id=started["id"])
    assert raised.value.code == -32002
    server.rpc("session.stop")
    assert server.rpc("session.delete", id=started["id"]) is True
    with pytest.raises(RPCError) as raised:
        server.rpc("session.get", id=started["id"])
    assert raised.value.code == -32004


def test_session_list_newest_first(server: PostcapProcess) -> None:
    first = server.rpc("session.start", name="first")
    server.rpc("session.stop")
    second = server.rpc("session.start", name="second")
    server.rpc("session.stop")
    listed = server.rpc("session.list", limit=2)
    assert [s["id"] for s in listed["items"]] == [second["id"], first["id"]]
    assert listed["total"] >= 2


def test_request_list_paging(server: PostcapProcess, origin: Origin, session: dict[str, Any]) -> None:
    server.curl(*[origin.url(f"/status/{200 + i}") for i in range(5)], "-o", "/dev/null")
    page = server.rpc("request.list", session_id=session["id"], limit=2, offset=2)
    assert page["total"] == 5
    assert [i["status"] for i in page["items"]] == [202, 203]


# -- errors the proxy makes ------------------------------------------------------------------


def test_upstream_refused_is_502(server: PostcapProcess, session: dict[str, Any]) -> None:
    closed = free_port()
    result = server.curl("-i", f"http://127.0.0.1:{closed}/x", check=False)
    assert result.stdout.startswith(b"HTTP/1.1 502")
    assert b"postcap: connection refused" in result.stdout
    (item,) = server.requests(session["id"])
    assert item["status"] is None and "refused" in item["error"]


def test_dns_failure_is_502(server: PostcapProcess) -> None:
    result = server.curl("-i", "http://no-such-host.invalid/", check=False)
    assert result.stdout.startswith(b"HTTP/1.1 502")
    assert b"could not resolve" in result.stdout


def test_upstream_timeout_is_504(server: PostcapProcess, origin: Origin) -> None:
    result = server.curl("-i", origin.url("/slow?delay=5"), check=False)
    assert result.stdout.startswith(b"HTTP/1.1 504")
    assert b"postcap:" in result.stdout


def test_malformed_and_oversized_requests(server: PostcapProcess, origin: Origin) -> None:
    assert raw_exchange(server.port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw_exchange(server.port, b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 400")
    long_line = b"GET http://127.0.0.1/" + b"a" * 17000 + b" HTTP/1.1\r\n\r\n"
    assert raw_exchange(server.port, long_line).startswith(b"HTTP/1.1 414")
    big_headers = b"GET http://127.0.0.1/ HTTP/1.1\r\n" + b"X-Big: " + b"b" * 70000 + b"\r\n\r\n"
    assert raw_exchange(server.port, big_headers).startswith(b"HTTP/1.1 431")
    many = b"GET http://127.0.0.1/ HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(600)) + b"\r\n"
    assert raw_exchange(server.port, many).startswith(b"HTTP/1.1 431")
    smuggle = (
        b"POST " + origin.url("/echo").encode() + b" HTTP/1.1\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    assert raw_exchange(server.port, smuggle).startswith(b"HTTP/1.1 400")
    # the listener keeps serving
    assert server.curl(origin.url("/hello")).stdout == b"hello from origin\n"


def test_slow_headers_get_408(server: PostcapProcess, origin: Origin) -> None:
    answer = raw_exchange(server.port, b"GET http://127.0.0.1/ HTTP/1.1\r\nX-Slow: ", timeout=5)
    assert answer.startswith(b"HTTP/1.1 408")
    assert server.curl(origin.url("/hello")).stdout == b"hello from origin\n"


# -- control channel --------------------------------------------------------------------------


def test_control_requires_token(server: PostcapProcess) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "server.info"}).encode()
    status, headers, _ = server.http("/rpc", body, token=None)
    assert status == 401
    assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert server.http("/rpc", body, token="wrong")[0] == 401
    assert server.http("/rpc", body)[0] == 200
    assert oct(os.stat(os.path.join(server.data_dir, "control.token")).st_mode & 0o777) == "0o600"


def test_json_rpc_errors_and_batch(server: PostcapProcess) -> None:
    status, _, body = server.http("/rpc", b"{not json")
    assert status == 200 and json.loads(body)["error"]["code"] == -32700
    answer = server.rpc_raw([
        {"jsonrpc": "2.0", "id": 1, "method": "server.info"},
        {"jsonrpc": "2.0", "method": "server.info"},
        {"jsonrpc": "2.0", "id": 2, "method": "no.such"},
        {"jsonrpc": "2.0", "id": 3, "method": "session.list", "params": {"limit": "ten"}},
    ])
    assert [a["id"] for a in answer] == [1, 2, 3]
    assert answer[1]["error"]["code"] == -32601
    assert answer[2]["error"]["code"] == -32602 and "limit" in answer[2]["error"]["message"]
    assert server.rpc_raw({"jsonrpc": "2.0", "method": "server.info"}) is None


def test_server_info_and_proxy_toggle(server: PostcapProcess, origin: Origin) -> None:
    info = server.rpc("server.info")
    assert info["proxy"] == {"port": server.port, "enabled": True}
    assert info["data_dir"] == server.data_dir
    disabled = server.rpc("proxy.disable")
    assert disabled["enabled"] is False
    assert server.curl(origin.url("/hello"), check=False).returncode != 0
    enabled = server.rpc("proxy.enable")
    assert enabled == {"enabled": True, "port": server.port, "ca_sha256": enabled["ca_sha256"]}
    assert server.curl(origin.url("/hello")).stdout == b"hello from origin\n"


def test_proxy_enable_on_busy_port_keeps_the_current_port(server: PostcapProcess, origin: Origin) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(RPCError) as raised:
            server.rpc("proxy.enable", port=busy.getsockname()[1])
    assert raised.value.code == -32010
    status = server.rpc("proxy.status")
    assert (status["enabled"], status["port"]) == (True, server.port)
    assert server.curl(origin.url("/hello")).stdout == b"hello from origin\n"


def test_proxy_moves_port_and_server_json_follows(server: PostcapProcess, origin: Origin) -> None:
    def state_file_port() -> int:
        with open(os.path.join(server.data_dir, "server.json"), encoding="utf-8") as handle:
            return int(json.load(handle)["proxy"]["port"])

    new_port = free_port()
    try:
        assert server.rpc("proxy.enable", port=new_port)["port"] == new_port
        assert state_file_port() == new_port
        moved = subprocess.run(
            ["curl", "-sS", "-x", f"http://127.0.0.1:{new_port}", origin.url("/hello")],
            capture_output=True, timeout=30,
        )
        assert moved.stdout == b"hello from origin\n"
        assert server.curl(origin.url("/hello"), check=False).returncode != 0  # old port closed
    finally:
        server.rpc("proxy.enable", port=server.port)
    assert state_file_port() == server.port


# -- process-level behaviour ---------------------------------------------------------------


def test_restart_keeps_history_and_stops_sessions(tmp_path: Any, origin: Origin) -> None:
    data_dir = tmp_path / "data"
    first = PostcapProcess(data_dir).start()
    try:
        started = first.rpc("session.start", name="survivor")
        first.curl(origin.url("/hello"))
        first.curl(origin.url("/status/201"), "-o", "/dev/null")
    finally:
        assert first.stop() == 0
    second = PostcapProcess(data_dir, port=first.port, control_port=first.control_port).start()
    try:
        session = second.rpc("session.get", id=started["id"])
        assert session["state"] == "stopped"
        assert session["request_count"] == 2
        assert session["stopped_at"] is not None
        items = second.requests(started["id"])
        assert [i["status"] for i in items] == [200, 201]
        assert second.rpc("server.info")["active_session"] is None
        assert second.rpc("session.start")["state"] == "running"
    finally:
        second.stop()


def test_sigkill_then_restart_recovers(tmp_path: Any, origin: Origin) -> None:
    data_dir = tmp_path / "data"
    first = PostcapProcess(data_dir).start()
    started = first.rpc("session.start")
    first.curl(origin.url("/hello"))
    time.sleep(1.2)  # past the batch delay: durable before the kill
    first.kill()
    second = PostcapProcess(data_dir).start()
    try:
        session = second.rpc("session.get", id=started["id"])
        assert session["state"] == "stopped"
        assert len(second.requests(started["id"])) == 1
    finally:
        second.stop()


def test_large_download_streams_in_bounded_memory(tmp_path: Any, origin: Origin) -> None:
    with PostcapProcess(tmp_path / "data") as server:
        server.rpc("session.start")
        server.curl(origin.url("/hello"))
        baseline = rss_kib(server.pid)
        peak = [baseline]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(server.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            size = 200 * 1024 * 1024
            result = server.curl("-o", "/dev/null", "-w", "%{size_download}", origin.url(f"/bytes/{size}"),
                                 timeout=120)
        finally:
            done.set()
            sampler.join()
        assert int(result.stdout) == size
        growth_mib = (peak[0] - baseline) / 1024
        print(f"proxy RSS growth during a 200 MiB download: {growth_mib:.1f} MiB")
        assert growth_mib < 64, f"proxy RSS grew {growth_mib:.1f} MiB during a 200 MiB download"
        item = server.requests()[-1]
        detail = server.rpc("request.get", id=item["id"])
        assert detail["response"]["body"]["size"] == size
        assert detail["response"]["body"]["truncated"] is True


def test_sigterm_exits_zero_after_flush(tmp_path: Any, origin: Origin) -> None:
    server = PostcapProcess(tmp_path / "data").start()
    started = server.rpc("session.start")
    for _ in range(20):
        server.curl(origin.url("/hello"))
    assert server.stop() == 0
    again = PostcapProcess(tmp_path / "data").start()
    try:
        assert again.rpc("session.get", id=started["id"])["request_count"] == 20
    finally:
        again.stop()


def test_unusable_data_dir_fails_with_one_line(tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    process = PostcapProcess(blocker / "data")
    result = subprocess.run(process.command(), capture_output=True, timeout=30)
    assert result.returncode != 0
    assert b"data dir" in result.stdout + result.stderr
