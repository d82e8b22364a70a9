"""WebSocket end to end: the real server, the ``websockets`` package as client (through
CONNECT, as it does with an HTTP proxy) and as origin, ws and wss; messages in
request.messages, request.get, ``message`` events and a validated HAR; hostile frames
that cost only their own connection; a session stopped and a server stopped while
connections stay open."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.certs import OriginPKI
from tests.postcap_process import PostcapProcess, RPCError
from tests.wsorigin import port_of, websocket_origin

VALIDATE = "/work/shared/reference/validate.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki: OriginPKI) -> Iterator[PostcapProcess]:
    data_dir = tmp_path_factory.mktemp("postcap-ws")
    with PostcapProcess(data_dir, "--max-capture-body", "2000000",
                        env={"SSL_CERT_FILE": pki.ca_cert}) as running:
        yield running


@pytest.fixture(scope="module")
def ws_origin() -> Iterator[int]:
    with websocket_origin() as origin:
        yield port_of(origin)


@pytest.fixture(scope="module")
def wss_origin(pki: OriginPKI) -> Iterator[int]:
    with websocket_origin(tls=(pki.good.cert, pki.good.key)) as origin:
        yield port_of(origin)


@pytest.fixture(scope="module")
def wss_h2_origin(pki: OriginPKI) -> Iterator[int]:
    """A wss origin whose TLS prefers HTTP/2 when offered (as most web servers do)."""
    with websocket_origin(tls=(pki.good.cert, pki.good.key), alpn=["h2", "http/1.1"]) as origin:
        yield port_of(origin)


@pytest.fixture
def session(server: PostcapProcess) -> Iterator[dict[str, Any]]:
    started = server.rpc("session.start", name="websocket")
    yield started
    try:
        server.rpc("session.stop")
    except RPCError:
        pass


def open_ws(server: PostcapProcess, url: str) -> ClientConnection:
    """A websockets client through postcap (it sends CONNECT, then the handshake)."""
    context = None
    if url.startswith("wss:"):
        context = ssl.create_default_context(cafile=server.ca_path)
    return connect(url, proxy=server.proxy_url, ssl=context, open_timeout=10,
                   max_size=2 ** 22, ping_interval=None, close_timeout=5)


def settled(server: PostcapProcess, transaction_id: str, count: int) -> dict[str, Any]:
    """request.messages once ``count`` messages are stored (batches land within ~50 ms)."""
    deadline = time.monotonic() + 10
    while True:
        result = server.rpc("request.messages", id=transaction_id, limit=1000)
        if result["total"] >= count or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def only_websocket(server: PostcapProcess, session_id: str) -> dict[str, Any]:
    (item,) = [i for i in server.requests(session_id) if i["status"] == 101]
    return item


def exchange_everything(ws: ClientConnection) -> None:
    ws.send("hello")
    assert ws.recv(timeout=10) == "hello"
    blob = os.urandom(1024 * 1024)
    ws.send(blob)
    assert ws.recv(timeout=10) == blob
    ws.ping(b"are you there").wait(10)
    ws.send("close:4321")
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4321


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_messages_both_ways_are_relayed_and_captured(
    server: PostcapProcess, ws_origin: int, wss_origin: int, session: dict[str, Any], scheme: str
) -> None:
    port = ws_origin if scheme == "ws" else wss_origin
    url = f"{scheme}://127.0.0.1:{port}/chat"
    with open_ws(server, url) as ws:
        item = only_websocket(server, session["id"])  # recorded while open
        assert item["url"] == url.replace("ws", "http", 1)
        exchange_everything(ws)
    stored = settled(server, item["id"], 9)
    kinds = [(m["direction"], m["type"]) for m in stored["items"]]
    assert kinds == [
        ("client", "text"), ("server", "text"), ("client", "binary"), ("server", "binary"),
        ("client", "ping"), ("server", "pong"), ("client", "text"), ("server", "close"),
        ("client", "close"),
    ], kinds
    binary = stored["items"][2]
    assert (binary["size"], binary["encoding"], binary["truncated"]) == (1024 * 1024, "base64", False)
    assert stored["items"][7]["code"] == 4321
    page = server.rpc("request.messages", id=item["id"], limit=2, offset=1)
    assert page == {"total": 9, "items": stored["items"][1:3]}
    deadline = time.monotonic() + 10
    while True:
        detail = server.rpc("request.get", id=item["id"])
        if detail["websocket"]["closed_by"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert detail["kind"] == "websocket"
    assert detail["response"]["status"] == 101
    assert (detail["websocket"]["closed_by"], detail["websocket"]["close_code"]) == ("server", 4321)
    assert detail["websocket"]["messages"] == stored["items"]
    if scheme == "wss":
        assert detail["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    # The deflate offer was not forwarded: the origin answered without extensions.
    assert not any(name.lower() == "sec-websocket-extensions" for name, _ in detail["response"]["headers"])


def test_har_carries_websocket_messages(
    server: PostcapProcess, ws_origin: int, session: dict[str, Any], tmp_path: Path
) -> None:
    with open_ws(server, f"ws://127.0.0.1:{ws_origin}/har") as ws:
        ws.send("one")
        assert ws.recv(timeout=10) == "one"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=10) == b"\x00\x01"
    item = only_websocket(server, session["id"])
    settled(server, item["id"], 6)
    server.rpc("session.stop")
    har = server.rpc("session.export", id=session["id"], format="har")
    (entry,) = [e for e in har["log"]["entries"] if e["response"]["status"] == 101]
    messages = entry["_webSocketMessages"]
    assert [(m["type"], m["opcode"], m["data"]) for m in messages[:4]] == [
        ("send", 1, "one"), ("receive", 1, "one"), ("send", 2, "AAE="), ("receive", 2, "AAE="),
    ]
    assert all(isinstance(m["time"], float) and m["time"] > 1e9 for m in messages)
    path = tmp_path / "ws.har"
    path.write_text(json.dumps(har))
    checked = subprocess.run([sys.executable, VALIDATE, "har", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The streamed export says the same.
    status, _, body = server.http(f"/sessions/{session['id']}.har")
    assert status == 200
    streamed = json.loads(body)
    assert [e.get("_webSocketMessages") for e in streamed["log"]["entries"]] == \
        [e.get("_webSocketMessages") for e in har["log"]["entries"]]


def read_events(server: PostcapProcess, kinds: str, transaction_id: str, wanted: int,
                timeout: float = 10.0) -> list[dict[str, Any]]:
    """The buffered and live events of ``kinds`` about one transaction, until ``wanted`` arrived."""
    connection = http.client.HTTPConnection("127.0.0.1", server.control_port, timeout=timeout)
    connection.request("GET", f"/events?types={kinds}", headers={
        "Authorization": f"Bearer {server.token}", "Last-Event-ID": "earlier-run:0"})
    response = connection.getresponse()
    events: list[dict[str, Any]] = []
    kind = None
    try:
        while len(events) < wanted:
            line = response.fp.readline().decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: ") and kind in kinds.split(","):
                event = json.loads(line[len("data: "):])
                if event.get("transaction_id") == transaction_id:
                    events.append(event)
    finally:
        connection.close()
    return events


def test_message_events(server: PostcapProcess, ws_origin: int, session: dict[str, Any]) -> None:
    with open_ws(server, f"ws://127.0.0.1:{ws_origin}/events") as ws:
        ws.send("x" * 10000)
        assert len(ws.recv(timeout=10)) == 10000
    item = only_websocket(server, session["id"])
    first, echoed = read_events(server, "message", item["id"], 2)
    assert echoed["direction"] == "server"
    assert (first["direction"], first["type"], first["size"]) == ("client", "text", 10000)
    assert first["session_id"] == session["id"]
    assert len(first["text"]) == 1024 and first["truncated"]  # events carry a bounded payload


def test_pause_and_stop_end_message_capture_but_not_traffic(
    server: PostcapProcess, ws_origin: int, session: dict[str, Any]
) -> None:
    with open_ws(server, f"ws://127.0.0.1:{ws_origin}/long") as ws:
        item = only_websocket(server, session["id"])
        ws.send("captured")
        assert ws.recv(timeout=10) == "captured"
        server.rpc("session.pause")
        ws.send("while paused")
        assert ws.recv(timeout=10) == "while paused"
        server.rpc("session.resume")
        ws.send("again")
        assert ws.recv(timeout=10) == "again"
        stopped = server.rpc("session.stop")  # answers while the connection is open
        assert stopped["state"] == "stopped"
        ws.send("after stop")
        assert ws.recv(timeout=10) == "after stop"
    texts = [m["text"] for m in settled(server, item["id"], 4)["items"]]
    assert texts == ["captured", "captured", "again", "again"]


def test_capture_is_bounded_per_connection(server: PostcapProcess, ws_origin: int, session: dict[str, Any]) -> None:
    """--max-capture-body is 2,000,000 here: three 1 MiB messages overflow it."""
    with open_ws(server, f"ws://127.0.0.1:{ws_origin}/big") as ws:
        item = only_websocket(server, session["id"])
        for _ in range(2):
            ws.send(b"z" * (1024 * 1024))
            assert len(ws.recv(timeout=10)) == 1024 * 1024  # relayed in full
    items = [m for m in settled(server, item["id"], 6)["items"] if m["type"] == "binary"]
    assert [m["size"] for m in items] == [1024 * 1024] * 4
    assert [m["truncated"] for m in items] == [False, True, True, True]
    assert base64.b64decode(items[1]["text"]) == b"z" * (2_000_000 - 1024 * 1024)
    assert items[2]["text"] == items[3]["text"] == ""


# -- hostile clients ---------------------------------------------------------------------


def raw_websocket(server: PostcapProcess, port: int) -> socket.socket:
    """A hand-made WebSocket connection through postcap (CONNECT, then the handshake)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    assert sock.recv(1000).startswith(b"HTTP/1.1 200")
    sock.sendall(
        f"GET /raw HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def close_code_of(sock: socket.socket) -> int:
    """The code of the close frame postcap answers with (it closes the connection after)."""
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not piece:
            break
        data += piece
    assert data[:1] == b"\x88", data[:20]
    return int(struct.unpack("!H", data[2:4])[0])


def masked(first: bytes, payload: bytes) -> bytes:
    key = b"abcd"
    return first + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("frame,code", [
    (struct.pack("!BBQ", 0x82, 0xFF, 2 ** 63) + b"abcd", 1002),  # a 2^63 length
    (b"\x81\x05hello", 1002),  # an unmasked client frame
    (masked(b"\x81\x84", b"\xff\xfe\xfd\xfc"), 1007),  # bad UTF-8 text
])
def test_hostile_frames_cost_only_their_connection(
    server: PostcapProcess, ws_origin: int, frame: bytes, code: int
) -> None:
    sock = raw_websocket(server, ws_origin)
    try:
        sock.sendall(frame)
        assert close_code_of(sock) == code
    finally:
        sock.close()
    with open_ws(server, f"ws://127.0.0.1:{ws_origin}/after") as ws:
        ws.send("still serving")
        assert ws.recv(timeout=10) == "still serving"


def test_hundred_megabyte_frame_is_refused_with_1009(server: PostcapProcess, tmp_path: Path) -> None:
    """The origin takes any size here: postcap's own limit (64 MiB) closes the sender."""
    with websocket_origin(max_size=None) as origin:
        sock = raw_websocket(server, port_of(origin))
        try:
            # One binary frame announcing 100 MB, masked with a zero key.
            sock.sendall(struct.pack("!BBQ", 0x82, 0xFF, 100 * 1024 * 1024) + b"\x00" * 4)
            piece = b"\x00" * (1024 * 1024)
            sent = 0
            try:
                while sent < 100 * 1024 * 1024:
                    sock.sendall(piece)
                    sent += len(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert sent < 100 * 1024 * 1024
            assert close_code_of(sock) == 1009
        finally:
            sock.close()
    status = server.rpc("proxy.status")
    assert status["enabled"]


def test_server_stop_is_not_held_up_by_open_websockets(tmp_path: Path, ws_origin: int) -> None:
    with PostcapProcess(tmp_path / "data") as server, \
            open_ws(server, f"ws://127.0.0.1:{ws_origin}/held") as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "hi"
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 8
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


def test_request_messages_params_and_other_faces(
    server: PostcapProcess, ws_origin: int, session: dict[str, Any]
) -> None:
    from postcap.client import BlockingClient
    from tests.test_postcapctl import ctl

    with open_ws(server, f"ws://127.0.0.1:{ws_origin}/faces") as ws:
        ws.send("from the client")
        assert ws.recv(timeout=10) == "from the client"
    item = only_websocket(server, session["id"])
    settled(server, item["id"], 4)
    for params in ({"id": item["id"], "limit": 0}, {"id": item["id"], "offset": -1}, {"id": 5}, {}):
        with pytest.raises(RPCError) as raised:
            server.rpc("request.messages", **params)
        assert raised.value.code == -32602, params
    with pytest.raises(RPCError) as raised:
        server.rpc("request.messages", id="no-such-request")
    assert raised.value.code == -32004
    client = BlockingClient(server.control_url, server.token)
    assert client.request_messages(item["id"], limit=1)["items"][0]["text"] == "from the client"
    shown = ctl(server, "request", "messages", item["id"])
    assert shown.returncode == 0, shown.stderr
    assert "from the client" in shown.stdout and "4 of 4 message(s)" in shown.stdout
    as_json = ctl(server, "--json", "request", "messages", item["id"], "--limit", "2")
    assert json.loads(as_json.stdout)["total"] == 4
    deadline = time.monotonic() + 10
    while "closed by" not in (detail := ctl(server, "request", "show", item["id"]).stdout):
        assert time.monotonic() < deadline, detail
        time.sleep(0.05)
    assert "websocket: 4 message(s), closed by client with 1000" in detail


def test_long_connection_memory_stays_flat(server: PostcapProcess, ws_origin: int, session: dict[str, Any]) -> None:
    """Tens of thousands of messages on one connection, captured: the server's memory
    does not grow with their number once the capture budget and event buffer are full."""
    from tests.postcap_process import rss_kib

    def burst(ws: ClientConnection, count: int) -> None:
        for _ in range(count // 100):
            for n in range(100):
                ws.send(f"message {n:04d} " + "x" * 200)
            for _ in range(100):
                ws.recv(timeout=10)

    with open_ws(server, f"ws://127.0.0.1:{ws_origin}/long-lived") as ws:
        burst(ws, 10_000)  # fills the 2 MB capture budget and the event buffer
        before = rss_kib(server.pid)
        burst(ws, 10_000)
        grown = rss_kib(server.pid) - before
    assert grown < 4096, f"RSS grew {grown} KiB over 10,000 more messages"
    item = only_websocket(server, session["id"])
    stored = settled(server, item["id"], 40_000)
    assert stored["total"] >= 40_000
    last = server.rpc("request.messages", id=item["id"], offset=stored["total"] - 3)["items"][0]  # before the closes
    assert (last["truncated"], last["text"], last["size"]) == (True, "", 213)


def test_wss_to_an_origin_that_prefers_http2_goes_over_http11(
    server: PostcapProcess, wss_h2_origin: int, session: dict[str, Any]
) -> None:
    """An upgrade cannot ride an HTTP/2 stream: its upstream connection offers http/1.1 alone."""
    with open_ws(server, f"wss://127.0.0.1:{wss_h2_origin}/chat") as ws:
        ws.send("over http/1.1")
        assert ws.recv(timeout=10) == "over http/1.1"
        item = only_websocket(server, session["id"])
    assert item["status"] == 101
    detail = server.rpc("request.get", id=item["id"])
    assert detail["response"]["http_version"] == "HTTP/1.1"
