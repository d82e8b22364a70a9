"""Hostile and careless input against the real ``twistd -n postcap``: every bad parameter
is -32602 naming it (never -32603), a catastrophic filter pattern does not freeze the
server, and a refused ``cookiejar.add`` leaves the jar as it was across a restart."""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any, Iterator

import pytest

from tests.harness import Origin, free_port
from tests.postcap_process import TWISTD, PostcapProcess

TRACEBACK_MARKERS = ("Traceback (most recent call last)", "Unhandled Error", "internal error",
                     "raised an unexpected error")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("hardening")) as running:
        yield running


def rpc_error(server: PostcapProcess, method: str, params: dict[str, Any]) -> dict[str, Any]:
    answer = server.rpc_raw({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    assert "error" in answer, answer
    return answer["error"]


def assert_no_traceback(server: PostcapProcess) -> None:
    log = server.log()
    for marker in TRACEBACK_MARKERS:
        assert marker not in log, log[log.find(marker) - 2000: log.find(marker) + 2000]


SURROGATE = "\ud800"
HUGE = 2**63
DIGITS_400 = int("9" * 400)

#: (method, params, the parameter the -32602 must name)
BAD_PARAMS = [
    ("request.list", {"session_id": SURROGATE}, "session_id"),
    ("request.list", {"query": "a" + SURROGATE}, "query"),
    ("request.list", {"domain": SURROGATE}, "domain"),
    ("request.list", {"offset": HUGE}, "offset"),
    ("request.list", {"limit": HUGE}, "limit"),
    ("request.list", {"status": HUGE}, "status"),
    ("request.list", {"status": [HUGE]}, "status[0]"),
    ("request.list", {"status": 999_999}, "status"),
    ("request.list", {"status": [200] * 40_000}, "status"),
    ("request.list", {"method": ["GET"] * 40_000}, "method"),
    ("request.list", {"domain": "a" * 100_000}, "domain"),
    ("request.list", {"since": DIGITS_400}, "since"),
    ("request.list", {"until": DIGITS_400}, "until"),
    ("request.list", {"since": 1e300}, "since"),
    ("request.list", {"until": "9" * 400}, "until"),
    ("request.list", {"offset": 1e300}, "offset"),
    ("session.list", {"offset": HUGE}, "offset"),
    ("cookie.list", {"offset": HUGE}, "offset"),
    ("session.get", {"id": SURROGATE}, "id"),
    ("session.get", {"id": "x" * 100_000}, "id"),
    ("session.start", {"name": SURROGATE}, "name"),
    ("session.start", {"filters": {"url_contains": SURROGATE}}, "filters.url_contains"),
    ("collection.create", {"name": SURROGATE}, "name"),
    ("cookiejar.list", {"domain": "a" * 100_000}, "domain"),
    ("cookiejar.delete", {"domain": "a" * 100_000}, "domain"),
    ("cookiesync.set", {"domains": ["a" * 100_000]}, "domains"),
    ("cookiejar.add", {"cookies": [{"name": "a", "value": SURROGATE, "domain": "h"}]},
     "cookies[0].value"),
    ("cookiejar.add", {"cookies": [{"name": "a", "value": "1", "domain": "h", "expires": DIGITS_400}]},
     "cookies[0].expires"),
    ("cookiejar.add", {"cookies": [{"name": "a", "value": "1", "domain": "h", "expires": 1e300}]},
     "cookies[0].expires"),
    ("cookiejar.add", {"cookies": [{"name": "a", "value": "1", "domain": "a" * 100_000}]},
     "cookies[0].domain"),
    ("cookiejar.add", {"cookies": [{"name": "a", "value": "1", "domain": "h", "secure": "yes"}]},
     "cookies[0].secure"),
    ("request.replay", {"id": "x", "url": "http://[::1"}, "url"),
    ("request.replay", {"id": "x", "url": "http://h:99999/"}, "url"),
    ("request.replay", {"id": "x", "url": "http://h:abc/"}, "url"),
    ("request.replay", {"id": "x", "url": "http://h:0/"}, "url"),
    ("request.replay", {"id": "x", "headers": {"Bad Name": "1"}}, "headers"),
    ("request.replay", {"id": "x", "headers": {"Bad\u0000Name": "1"}}, "headers"),
    ("request.replay", {"id": "x", "headers": [["X-A", "1\u0000"]]}, "headers"),
    ("request.delete", {"ids": ["a"] * 10_001}, "ids"),
    ("interceptor.submit", {"frame": {"ct": SURROGATE}}, "frame.ct"),
    ("proxy.enable", {"port": HUGE}, "port"),
]


@pytest.mark.parametrize(("method", "params", "name"), BAD_PARAMS,
                         ids=[f"{m}-{n}-{i}" for i, (m, _, n) in enumerate(BAD_PARAMS)])
def test_bad_parameter_is_invalid_params_naming_it(
    server: PostcapProcess, method: str, params: dict[str, Any], name: str
) -> None:
    error = rpc_error(server, method, params)
    assert error["code"] == -32602, error
    assert error["data"] in ({"param": name}, {"field": name}), error
    assert name.split("[")[0].split(".")[0] in error["message"]


def test_cookiejar_add_with_null_flags_takes_the_defaults(server: PostcapProcess) -> None:
    added = server.rpc("cookiejar.add", cookies=[
        {"name": "nulls", "value": "1", "domain": "null.example", "http_only": None,
         "secure": None, "host_only": None, "path": None, "expires": None, "same_site": None}])
    assert added == 1
    (cookie,) = server.rpc("cookiejar.list", domain="null.example")["items"]
    assert (cookie["http_only"], cookie["secure"], cookie["host_only"], cookie["path"]) == (
        False, False, True, "/")


def test_nothing_above_logged_a_traceback(server: PostcapProcess) -> None:
    for method, params, _ in BAD_PARAMS:
        rpc_error(server, method, params)
    assert_no_traceback(server)


def test_catastrophic_filter_does_not_freeze_the_server(server: PostcapProcess, origin: Origin) -> None:
    session = server.rpc("session.start", name="redos",
                         filters={"url_contains": "(a+)+$"})
    try:
        for length in (27, 40):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
                target = f"{origin.url('/hello')}?" + "a" * length + "!"
                client.sendall(f"GET {target} HTTP/1.1\r\nHost: {origin.authority}\r\n"
                               "Connection: close\r\n\r\n".encode())
                started = time.monotonic()
                info = server.rpc("server.info")  # answered while the proxy handles the request
                assert info["active_session"]["id"] == session["id"]
                answer = b""
                while chunk := client.recv(65536):
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200 ")
                assert time.monotonic() - started < 10
        assert server.requests(session["id"]) == []  # neither URL matches the filter
    finally:
        server.rpc("session.stop", id=session["id"])


def test_refused_cookiejar_add_leaves_the_jar_as_it_was_across_a_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("jar")
    good = {"name": "kept", "value": "1", "domain": "jar.example"}
    with PostcapProcess(data_dir) as running:
        running.rpc("cookiejar.add", cookies=[good])
        before = running.rpc("cookiejar.list")["items"]
        for bad in ({"name": "new", "value": "2", "domain": "jar.example", "http_only": 1},
                    {"name": "new", "value": "2", "domain": "jar.example", "expires": DIGITS_400}):
            error = rpc_error(running, "cookiejar.add",
                              {"cookies": [dict(good, value="changed"), bad]})
            assert error["code"] == -32602
        assert running.rpc("cookiejar.list")["items"] == before
        port, control_port = running.port, running.control_port
    with PostcapProcess(data_dir, port=port, control_port=control_port) as restarted:
        assert restarted.rpc("cookiejar.list")["items"] == before


@pytest.mark.parametrize(("pattern", "reason"), [("(a)\\1", "backreferences"),
                                                 ("x(?=y)", "lookahead")])
def test_pattern_re2_cannot_run_is_invalid_option_saying_why(
    server: PostcapProcess, pattern: str, reason: str
) -> None:
    error = rpc_error(server, "session.start", {"filters": {"url_excludes": pattern}})
    assert error["code"] == -32005
    assert error["data"] == {"field": "filters.url_excludes"}
    assert reason in error["message"] and "RE2" in error["message"]
    assert server.rpc("server.info")["active_session"] is None


def test_concurrent_proxy_enable_and_disable_in_one_batch(server: PostcapProcess) -> None:
    other = free_port()
    calls = []
    for index in range(40):
        method = ("proxy.enable", "proxy.disable")[index % 3 == 1]
        params = {"port": (other, server.port, 0)[index % 3]} if method == "proxy.enable" else {}
        calls.append({"jsonrpc": "2.0", "id": index, "method": method, "params": params})
    answers = server.rpc_raw(calls)
    assert [a.get("error", {}).get("code") for a in answers if "error" in a
            and a["error"]["code"] != -32010] == []
    server.rpc("proxy.enable", port=server.port)
    assert server.rpc("proxy.status")["enabled"] is True
    assert_no_traceback(server)


def test_ignore_hosts_pattern_re2_cannot_run_is_a_one_line_start_error(tmp_path: Any) -> None:
    result = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "postcap", "--data-dir", str(tmp_path),
         "--ignore-hosts", r"^(?!pinned\.)"],
        capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    output = (result.stdout + result.stderr).decode().strip()
    assert result.returncode != 0
    assert len(output.splitlines()) == 1, output
    assert "--ignore-hosts" in output and "negative lookahead" in output
