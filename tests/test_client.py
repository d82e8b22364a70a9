"""postcap.client: discovery, the SSE parser, the blocking client and the Deferred
(treq) client against the real server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from postcap.client import (
    AuthenticationFailed,
    BlockingClient,
    PostcapError,
    ServerUnreachable,
    SSEParser,
    TokenUnreadable,
    ServerLocation,
    ServerNotRunning,
    connect,
    locate,
)
from postcap.discovery import BadControlEndpoint, ControlEndpoint, parse_control
from tests.harness import Origin, free_port
from tests.postcap_process import PostcapProcess

REPO = Path(__file__).resolve().parent.parent


# -- discovery and parsing (no server) ----------------------------------------------------


def test_locate_reads_server_json_and_never_falls_back_to_a_default(tmp_path: Path) -> None:
    with pytest.raises(ServerNotRunning, match="server.json is missing"):
        locate(str(tmp_path))
    (tmp_path / "server.json").write_text(
        json.dumps({"control": {"host": "127.0.0.1", "port": 7001}})
    )
    assert locate(str(tmp_path)).control_url == "http://127.0.0.1:7001"
    assert locate(str(tmp_path)).token_file == str(tmp_path / "control.token")
    (tmp_path / "server.json").write_text(
        json.dumps({"control": {"host": "0.0.0.0", "port": 7002}})
    )
    assert locate(str(tmp_path)).control_url == "http://127.0.0.1:7002"
    (tmp_path / "server.json").write_text(json.dumps({"control": {"host": "::1", "port": 7003}}))
    assert locate(str(tmp_path)).control_url == "http://[::1]:7003"
    (tmp_path / "server.json").write_text(json.dumps(
        {"control": {"unix": "/run/p.sock", "endpoint": "unix:/run/p.sock"},
         "token_file": "/etc/p.token"}))
    assert locate(str(tmp_path)) == ServerLocation("unix:/run/p.sock", "/etc/p.token")
    (tmp_path / "server.json").write_text("{not json")
    with pytest.raises(ServerNotRunning, match="cannot read"):
        locate(str(tmp_path))


def test_locate_refuses_a_server_json_of_an_exited_process(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (tmp_path / "server.json").write_text(json.dumps(
        {"pid": int(done.stdout), "control": {"host": "127.0.0.1", "port": 5556}}))
    with pytest.raises(ServerNotRunning, match="has exited"):
        locate(str(tmp_path))


@pytest.mark.parametrize("given, expected", [
    ("tcp:5556:interface=127.0.0.1", ControlEndpoint("http", "127.0.0.1", 5556)),
    ("tcp:port=7000", ControlEndpoint("http", "127.0.0.1", 7000)),
    ("tcp:7000:interface=0.0.0.0", ControlEndpoint("http", "127.0.0.1", 7000)),
    ("tcp6:7000:interface=\\:\\:1", ControlEndpoint("http", "::1", 7000)),
    ("unix:/run/postcap.sock:mode=600", ControlEndpoint("unix", path="/run/postcap.sock")),
    ("unix:address=/run/p.sock", ControlEndpoint("unix", path="/run/p.sock")),
    ("ssl:7443:interface=127.0.0.1:privateKey=k.pem", ControlEndpoint("https", "127.0.0.1", 7443)),
    ("http://127.0.0.1:5556/", ControlEndpoint("http", "127.0.0.1", 5556)),
    ("https://[::1]:8443", ControlEndpoint("https", "::1", 8443)),
])
def test_every_control_endpoint_form_parses(given: str, expected: ControlEndpoint) -> None:
    assert parse_control(given) == expected
    assert parse_control(expected.url) == expected


@pytest.mark.parametrize("given", ["5556", "tcp:", "tcp:abc", "unix:", "ftp:1", "http://:5"])
def test_bad_control_endpoints_are_named(given: str) -> None:
    with pytest.raises(BadControlEndpoint, match="--control"):
        parse_control(given)


def test_locate_uses_postcap_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = json.dumps({"control": {"port": 5556}})
    (tmp_path / "server.json").write_text(state)
    monkeypatch.setenv("POSTCAP_HOME", str(tmp_path))
    assert locate().token_file == str(tmp_path / "control.token")
    monkeypatch.delenv("POSTCAP_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / ".postcap").mkdir(parents=True)
    (tmp_path / "home" / ".postcap" / "server.json").write_text(state)
    assert locate().token_file == str(tmp_path / "home" / ".postcap" / "control.token")


def test_missing_token_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTCAP_HOME", str(tmp_path))
    (tmp_path / "server.json").write_text(json.dumps({"control": {"port": 5556}}))
    with pytest.raises(TokenUnreadable, match="cannot read token file .*control.token"):
        connect()


def test_sse_parser_handles_split_frames_comments_and_multiline_data() -> None:
    parser = SSEParser()
    stream = (
        b'retry: 3000\n\n: heartbeat\n\nid: r:1\nevent: transaction\ndata: {"a": 1}\n\n'
        b"id: r:2\r\nevent: note\r\ndata: line one\r\ndata: line two\r\n\r\n"
    )
    events = []
    for index in range(0, len(stream), 7):  # arbitrary chunk boundaries
        events += parser.feed(stream[index : index + 7])
    assert [(e.id, e.event, e.data) for e in events] == [
        ("r:1", "transaction", {"a": 1}),
        ("r:2", "note", "line one\nline two"),
    ]
    assert parser.last_id == "r:2"


# -- against the real server --------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("client")) as running:
        yield running


def test_blocking_client(
    server: PostcapProcess, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTCAP_HOME", server.data_dir)
    client = connect()
    assert client.control_url == server.control_url
    assert client.server_info()["proxy"]["port"] == server.port
    session = client.session_start(name="blocking")
    server.curl(origin.url("/hello"))
    items = client.request_list(session_id=session["id"], method="GET")["items"]
    assert [item["url"] for item in items] == [origin.url("/hello")]
    assert client.request_get(items[0]["id"])["response"]["status"] == 200
    assert client.session_overview(session["id"])["by_method"] == {"GET": 1}

    # Events: resuming from an id of another run replays the buffer after a reset.
    events = client.events(types="session,transaction", last_event_id="other-run:0", timeout=30)
    seen = []
    for event in events:
        seen.append(event)
        if event.event == "transaction":
            break
    events.close()
    assert seen[0].event == "reset"
    assert any(e.event == "session" and e.data["session"]["id"] == session["id"] for e in seen)
    assert seen[-1].data["url"] == origin.url("/hello")

    client.session_stop()
    har = io.BytesIO()
    progress: list[int] = []
    written = client.stream_har(session["id"], har, lambda done, total: progress.append(done))
    assert written == len(har.getvalue()) == progress[-1]
    assert json.loads(har.getvalue())["log"]["entries"][0]["request"]["url"] == origin.url("/hello")

    with pytest.raises(PostcapError) as missing:
        client.session_get("nope")
    assert missing.value.code == -32004 and "nope" in missing.value.message
    with pytest.raises(PostcapError) as bad:
        client.request_list(session_id=session["id"], limit="ten")
    assert bad.value.code == -32602 and "limit" in bad.value.message
    with pytest.raises(PostcapError, match="HTTP 404"):
        client.stream_har("nope", io.BytesIO())


def test_blocking_client_transport_errors(server: PostcapProcess) -> None:
    with pytest.raises(AuthenticationFailed) as refused:
        BlockingClient(server.control_url, "wrong").server_info()
    assert refused.value.code == 401
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnreachable, match=f"cannot reach postcap at {url}"):
        BlockingClient(url, "x", timeout=5).server_info()


DEFERRED_SCRIPT = textwrap.dedent("""
    import io, json, sys
    from twisted.internet import defer, task
    from postcap.client import (AuthenticationFailed, PostcapClient, PostcapError,
                                ServerUnreachable)

    async def main(reactor, url, token, bad_url):
        client = PostcapClient(url, token)
        out = {"port": (await client.server_info())["proxy"]["port"]}
        seen = []
        session = await client.session_start(name="deferred")
        # An id from another run: the buffered events (this start among them) come first.
        following = client.events(seen.append, types="session", last_event_id="other-run:0")
        for _ in range(400):
            if any(e.event == "session" for e in seen):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        following.cancel()
        try:
            await following
        except defer.CancelledError:
            out["cancelled"] = True
        out["events"] = [[e.event, e.data["change"], e.data["session"]["id"] == session["id"]]
                         for e in seen if e.event == "session"]
        await client.session_stop(session["id"])
        har = io.BytesIO()
        out["har_bytes"] = await client.stream_har(session["id"], har)
        out["har_ok"] = "log" in json.loads(har.getvalue())
        try:
            await client.session_get("nope")
        except PostcapError as error:
            out["not_found"] = [error.code, error.message]
        try:
            await PostcapClient(url, "wrong").server_info()
        except AuthenticationFailed as error:
            out["refused"] = error.code
        try:
            await PostcapClient(bad_url, token).server_info()
        except ServerUnreachable as error:
            out["unreachable"] = str(error)
        print(json.dumps(out))

    task.react(lambda reactor, *args: defer.ensureDeferred(main(reactor, *args)), sys.argv[1:])
""")


def test_deferred_client(server: PostcapProcess, tmp_path: Path) -> None:
    script = tmp_path / "deferred_client.py"
    script.write_text(DEFERRED_SCRIPT)
    bad_url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, str(script), server.control_url, server.token, bad_url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["port"] == server.port
    assert out["cancelled"] is True
    assert ["session", "started", True] in out["events"]
    assert out["har_bytes"] > 0 and out["har_ok"] is True
    assert out["not_found"][0] == -32004 and "nope" in out["not_found"][1]
    assert out["refused"] == 401
    assert out["unreachable"].startswith(f"cannot reach postcap at {bad_url}")


def test_both_clients_over_a_unix_control_socket(tmp_path: Path) -> None:
    """``--control unix:PATH``: discovery finds the socket, the blocking client (http.client
    on AF_UNIX) and the Deferred client (treq through a UNIX endpoint) both work."""
    sock = tmp_path / "control.sock"
    with PostcapProcess(tmp_path / "data", "--control", f"unix:{sock}") as server:
        client = connect(home=server.data_dir)
        assert client.control_url == f"unix:{sock}"
        assert client.server_info()["proxy"]["port"] == server.port
        session = client.session_start(name="over unix")
        server.curl("http://postcap.cert/cert/pem")
        events = client.events(types="session", last_event_id="other-run:0", timeout=10)
        first = next(event for event in events if event.event == "session")
        assert first.data["session"]["id"] == session["id"]
        events.close()
        client.session_stop(session["id"])
        har = io.BytesIO()
        assert client.stream_har(session["id"], har) > 0 and "log" in json.loads(har.getvalue())
        with pytest.raises(AuthenticationFailed):
            BlockingClient(f"unix:{sock}", "wrong").server_info()
        script = tmp_path / "deferred_client.py"
        script.write_text(DEFERRED_SCRIPT)
        result = subprocess.run(
            [sys.executable, str(script), f"unix:{sock}", server.token,
             f"unix:{tmp_path / 'nothing.sock'}"],
            capture_output=True, text=True, timeout=60, cwd=str(REPO),
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert out["port"] == server.port and out["har_ok"] and out["refused"] == 401
        assert out["unreachable"].startswith(f"cannot reach postcap at unix:{tmp_path}")
    with pytest.raises(ServerNotRunning):  # stopped: its server.json is gone
        connect(home=str(tmp_path / "data"))


def test_postcapctl_sends_nothing_without_a_server_and_names_a_bad_control(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postcap.ctl import main

    monkeypatch.setenv("POSTCAP_HOME", str(tmp_path))
    (tmp_path / "control.token").write_text("secret-token")
    out, err = io.StringIO(), io.StringIO()
    assert main(["status"], out, err) == 3
    assert "no running postcap found in" in err.getvalue() and "server.json is missing" in err.getvalue()
    err = io.StringIO()
    assert main(["--control", "ftp:1", "status"], out, err) == 2
    assert err.getvalue().startswith("postcapctl: --control 'ftp:1': unknown endpoint type")
