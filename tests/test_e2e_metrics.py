"""End to end: ``/metrics`` counts exactly the traffic sent, ``/readyz`` follows the
store, the reactor lag shows a frozen process, and the logs (JSON and text) parse and
hold no secret."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import time
import urllib.request
from typing import Any, Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Origin, free_port, requires_curl, start_origin
from tests.postcap_process import PostcapProcess, RPCError

pytestmark = requires_curl

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    with start_origin() as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    data_dir = tmp_path_factory.mktemp("postcap-metrics")
    metrics_port = free_port()
    with PostcapProcess(data_dir, "--metrics", f"tcp:{metrics_port}:interface=127.0.0.1",
                        "--log-format", "json", "--ignore-hosts", "^localhost$") as running:
        running.metrics_port = metrics_port  # type: ignore[attr-defined]
        yield running


def scrape_text(url: str, headers: dict[str, str] | None = None) -> str:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode("utf-8")


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape(server: PostcapProcess) -> Samples:
    return parse(scrape_text(f"http://127.0.0.1:{server.metrics_port}/metrics"))  # type: ignore[attr-defined]


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length, read whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, field = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(field)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head + b"\r\n\r\n" + body


def origin_response_size(origin: Origin, request: bytes) -> int:
    """Bytes the origin answers ``request`` with (asked directly, keep-alive)."""
    with socket.create_connection((origin.host, origin.port), timeout=10) as sock:
        sock.sendall(request)
        return len(read_response(sock))


def through_proxy(server: PostcapProcess, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        return read_response(sock)


def get(url: str, authority: str, version: str = "HTTP/1.1", extra: str = "") -> bytes:
    return f"GET {url} {version}\r\nHost: {authority}\r\n{extra}\r\n".encode()


def test_counters_move_by_exactly_the_traffic_sent(server: PostcapProcess, origin: Origin) -> None:
    session = server.rpc("session.start", name="metrics", filters={"url_excludes": "skipme"})
    try:
        before = scrape(server)
        sent = received = 0
        authority = origin.authority
        plan = [  # (request path, HTTP version, expected status class)
            ("/hello", "HTTP/1.1", "2xx"),
            ("/hello", "HTTP/1.1", "2xx"),
            ("/hello?skipme=1", "HTTP/1.1", "2xx"),  # left out by the session's filter
            ("/status/404", "HTTP/1.1", "4xx"),
            ("/status/503", "HTTP/1.1", "5xx"),
            ("/hello", "HTTP/1.0", "2xx"),
        ]
        for path, version, _ in plan:
            request = get(f"http://{authority}{path}", authority, version)
            received += origin_response_size(origin, get(path, authority, version))
            through_proxy(server, request)
            sent += len(request)
        onboarding = get("http://postcap.cert/", "postcap.cert")  # answered by postcap itself
        assert through_proxy(server, onboarding).startswith(b"HTTP/1.1 200")
        sent += len(onboarding)
        refused_authority = f"127.0.0.1:{free_port()}"
        refused = get(f"http://{refused_authority}/", refused_authority)
        assert b" 502 " in through_proxy(server, refused)
        sent += len(refused)

        # A CONNECT tunnel (--ignore-hosts ^localhost$) carrying one request.
        inner = get("/hello", authority)  # keep-alive: the tunnel stays open until we close
        with socket.create_connection((origin.host, origin.port), timeout=10) as direct:
            direct.sendall(inner)
            received += len(read_response(direct))
        connect = f"CONNECT localhost:{origin.port} HTTP/1.1\r\nHost: localhost:{origin.port}\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as tunnel:
            tunnel.sendall(connect)
            assert tunnel.recv(1024).startswith(b"HTTP/1.1 200")
            tunnel.sendall(inner)
            read_response(tunnel)
            open_now = scrape(server)
            assert value(open_now, "postcap_proxy_connections", kind="tunnel") == 1
            assert value(open_now, "postcap_proxy_connections", kind="client") >= 1
        sent += len(connect) + len(inner)

        captured = len(plan) - 1 + 2  # all but the filtered one, + refused + tunnel
        after = wait_for(lambda: (lambda s: s if value(s, "postcap_capture_transactions_total", outcome="stored")
                                  - value(before, "postcap_capture_transactions_total", outcome="stored")
                                  >= captured else None)(scrape(server)))
        assert after, "the captures were not stored in time"
        after = wait_for(lambda: (lambda s: s if value(s, "postcap_proxy_connections", kind="tunnel") == 0
                                  else None)(scrape(server)))
    finally:
        server.rpc("session.stop", id=session["id"])

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("postcap_proxy_requests_total", status_class="2xx", http_version="HTTP/1.1") == 5
    assert delta("postcap_proxy_requests_total", status_class="2xx", http_version="HTTP/1.0") == 1
    assert delta("postcap_proxy_requests_total", status_class="4xx", http_version="HTTP/1.1") == 1
    assert delta("postcap_proxy_requests_total", status_class="5xx", http_version="HTTP/1.1") == 2
    assert sum(delta("postcap_proxy_requests_total", status_class=c, http_version=v)
               for c in ("1xx", "2xx", "3xx", "4xx", "5xx", "none")
               for v in ("HTTP/1.0", "HTTP/1.1", "HTTP/2", "other")) == len(plan) + 3
    assert delta("postcap_upstream_errors_total", cause="refused") == 1
    assert sum(delta("postcap_upstream_errors_total", cause=c) for c in
               ("dns", "connect", "connect-timeout", "timeout", "tls", "closed", "bad-response",
                "upgrade", "other")) == 0
    assert delta("postcap_proxy_bytes_total", direction="upstream") == sent
    assert delta("postcap_proxy_bytes_total", direction="downstream") == received
    assert delta("postcap_capture_transactions_total", outcome="stored") == captured
    assert delta("postcap_capture_transactions_total", outcome="filtered") == 1
    assert delta("postcap_capture_transactions_total", outcome="dropped") == 0
    assert value(after, "postcap_proxy_connections", kind="websocket") == 0
    assert delta("postcap_rpc_calls_total", method="session.start", code="ok") == 0  # before `before`
    assert value(after, "postcap_rpc_calls_total", method="session.start", code="ok") >= 1
    assert delta("postcap_storage_write_seconds_count") >= 1
    assert value(after, "postcap_storage_available") == 1
    assert value(after, "postcap_storage_pending") == 0
    assert value(after, "process_open_fds") > 0 and value(after, "process_max_fds") > 0


def test_rpc_calls_are_labelled_by_known_method_and_code(server: PostcapProcess) -> None:
    before = scrape(server)
    server.rpc("proxy.status")
    with pytest.raises(RPCError):
        server.rpc("no.such.method")
    with pytest.raises(RPCError):
        server.rpc("session.get", id="does-not-exist")
    after = parse(scrape_text(server.control_url + "/metrics",
                              {"Authorization": f"Bearer {server.token}"}))
    assert value(after, "postcap_rpc_calls_total", method="proxy.status", code="ok") - value(
        before, "postcap_rpc_calls_total", method="proxy.status", code="ok") == 1
    assert value(after, "postcap_rpc_calls_total", method="other", code="-32601") - value(
        before, "postcap_rpc_calls_total", method="other", code="-32601") == 1
    assert value(after, "postcap_rpc_calls_total", method="session.get", code="-32004") - value(
        before, "postcap_rpc_calls_total", method="session.get", code="-32004") == 1
    assert not [key for key in after if "no.such" in str(key)]
    assert server.http("/metrics", token=None)[0] == 401


def test_a_frozen_reactor_shows_in_the_lag_histogram(server: PostcapProcess) -> None:
    def late(samples: Samples) -> float:
        return value(samples, "postcap_reactor_lag_seconds_count") - value(
            samples, "postcap_reactor_lag_seconds_bucket", le="0.1")

    before = scrape(server)
    assert value(before, "postcap_reactor_lag_seconds_count") > 0
    os.kill(server.pid, signal.SIGSTOP)  # the whole process, reactor included, stops
    try:
        time.sleep(0.25)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert wait_for(lambda: late(scrape(server)) > late(before), timeout=5)


def test_readyz_follows_the_store(server: PostcapProcess, origin: Origin) -> None:
    status, _, body = server.http("/readyz", token=None)
    assert (status, json.loads(body)) == (200, {"ready": True})
    session = server.rpc("session.start", name="locked store")
    blocker = sqlite3.connect(os.path.join(server.data_dir, "history.sqlite3"), timeout=10,
                              isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the database's write lock
        server.curl(origin.url("/hello"))
        status, _, body = wait_for(
            lambda: (lambda answer: answer if answer[0] == 503 else None)(
                server.http("/readyz", token=None)), timeout=20)
        answer = json.loads(body)
        assert answer["ready"] is False
        assert any(reason.startswith("storage unavailable") and "locked" in reason
                   for reason in answer["reasons"]), answer
        samples = scrape(server)
        assert value(samples, "postcap_storage_available") == 0
        assert value(samples, "postcap_capture_transactions_total", outcome="dropped") >= 1
        assert server.http("/healthz", token=None)[0] == 200  # alive, just not ready
        storage = server.rpc("server.info")["storage"]
        assert storage["ok"] is False and "locked" in storage["error"], storage
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert wait_for(lambda: server.http("/readyz", token=None)[0] == 200, timeout=20)
    assert value(scrape(server), "postcap_storage_available") == 1
    assert server.rpc("server.info")["storage"]["ok"] is True
    server.rpc("session.stop", id=session["id"])


def test_readyz_names_a_disabled_proxy(server: PostcapProcess) -> None:
    server.rpc("proxy.disable")
    try:
        status, _, body = server.http("/readyz", token=None)
        assert status == 503 and json.loads(body) == {"ready": False, "reasons": ["proxy disabled"]}
    finally:
        server.rpc("proxy.enable")
    assert server.http("/readyz", token=None)[0] == 200


SECRETS = {
    "bearer": "Zq9BearerSecretValue42",
    "cookie": "cookieSecretValue77",
    "set_cookie": "setCookieSecretValue88",
    "proxy_auth": "proxyAuthSecretValue99",
}


def secret_traffic(server: PostcapProcess, origin: Origin) -> list[str]:
    """A session whose traffic carries every kind of secret, through the proxy and the
    control channel; returns the secrets to look for in the log."""
    session = server.rpc("session.start", name="secrets", capture_cookies=True)
    server.curl("-H", f"Authorization: Bearer {SECRETS['bearer']}",
                "-H", f"Cookie: session={SECRETS['cookie']}",
                "-H", f"Proxy-Authorization: Basic {SECRETS['proxy_auth']}",
                origin.url(f"/cookies/set?sid={SECRETS['set_cookie']}"))
    server.curl("-H", f"Authorization: Bearer {SECRETS['bearer']}",
                f"http://127.0.0.1:{free_port()}/refused")  # logged as an error
    raw = get(f"http://{origin.authority}/hello", origin.authority,
              extra=f"Cookie: a={SECRETS['cookie']}\r\nCookie: a={SECRETS['cookie']}\r\n"
                    "Content-Length: 1\r\nContent-Length: 2\r\n")  # malformed: logged
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        sock.recv(65536)
    token = server.token
    server.http(f"/metrics?token={token}")  # the token in a URL, as a careless script would
    server.http("/rpc", token=f"wrong-{SECRETS['bearer']}")
    server.rpc("session.stop", id=session["id"])
    server.rpc("cookie.list", session_id=session["id"])
    return [token, *SECRETS.values()]


def log_lines(server: PostcapProcess) -> list[str]:
    with open(server.log_path, encoding="utf-8") as log:
        return log.read().splitlines()


def test_json_log_parses_line_by_line_and_holds_no_secret(server: PostcapProcess,
                                                          origin: Origin) -> None:
    secrets = secret_traffic(server, origin)
    lines = log_lines(server)
    assert len(lines) > 20
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "namespace", "message"} <= record.keys(), record
    assert any(record.get("namespace") == "postcap.service.PostcapService"
               and "ready" in record["message"] for record in records)
    assert any(record.get("status") == 502 for record in records)  # the event's own fields
    leaks = [line for line in lines for secret in secrets if secret in line]
    assert not leaks


def test_text_log_holds_no_secret(tmp_path: Any, origin: Origin) -> None:
    with PostcapProcess(tmp_path) as server:
        secrets = secret_traffic(server, origin)
    lines = log_lines(server)
    assert any("ready: proxy on" in line for line in lines)
    assert not [line for line in lines for secret in secrets if secret in line]


def test_postcapctl_stats(server: PostcapProcess, origin: Origin) -> None:
    import subprocess
    import sys

    env = dict(os.environ, POSTCAP_HOME=server.data_dir)
    command = [sys.executable, "-m", "postcap.ctl"]
    server.curl(origin.url("/hello"))
    result = subprocess.run([*command, "--json", "stats", "--interval", "0.2"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["requests"]["total"] >= 1 and stats["requests"]["by_status_class"]["2xx"] >= 1
    assert set(stats["rates"]) >= {"requests_per_s", "upstream_errors_per_s"}
    assert stats["storage"]["available"] is True
    assert stats["reactor_lag"]["samples"] > 0
    text = subprocess.run([*command, "stats", "--interval", "0.2"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    for heading in ("requests", "errors", "storage", "reactor lag"):
        assert heading in text.stdout
    bad = subprocess.run([*command, "stats", "--interval", "0"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "interval" in bad.stderr


def test_a_metrics_port_in_use_stops_the_start(tmp_path: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = PostcapProcess(tmp_path, "--metrics", f"tcp:{port}:interface=127.0.0.1")
        with pytest.raises(RuntimeError, match="exited with 1") as failed:
            server.start()
        server.stop()
    # Bound before twistd goes on: one line naming the option, nothing in the log.
    assert (f"postcap: cannot start: --metrics tcp:{port}:interface=127.0.0.1: cannot listen: "
            "Address already in use") in str(failed.value)
    assert "Traceback" not in str(failed.value)


def test_a_websocket_is_a_connection_while_open_and_one_101(server: PostcapProcess) -> None:
    from websockets.sync.client import connect

    from tests.wsorigin import port_of, websocket_origin

    with websocket_origin() as ws_origin:
        before = scrape(server)
        url = f"ws://127.0.0.1:{port_of(ws_origin)}/echo"
        with connect(url, proxy=server.proxy_url, open_timeout=10, ping_interval=None,
                     close_timeout=5) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
            assert value(scrape(server), "postcap_proxy_connections", kind="websocket") == 1
        after = wait_for(lambda: (lambda s: s if value(
            s, "postcap_proxy_connections", kind="websocket") == 0 else None)(scrape(server)))
    assert after, "the WebSocket relay did not end"
    assert value(after, "postcap_proxy_requests_total", status_class="1xx",
                 http_version="HTTP/1.1") - value(before, "postcap_proxy_requests_total",
                                                  status_class="1xx", http_version="HTTP/1.1") == 1
