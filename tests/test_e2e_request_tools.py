"""End to end: ``request.export`` output run for real against the origin, and
``request.diff`` / ``postcapctl request export|diff`` on captured requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Iterator

import pytest

from tests.harness import Origin, requires_curl
from tests.postcap_process import PostcapProcess

pytestmark = requires_curl

AWKWARD = "it's \"quoted\" $HOME `id` \\ ; & | * ? [a] {b,c} ~ # é"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("request-tools")) as running:
        running.rpc("session.start", name="tools")
        yield running


def _received(echo_output: bytes) -> dict[str, Any]:
    """What the origin saw, minus the header postcap adds (Via)."""
    echoed = json.loads(echo_output)
    echoed["headers"] = [pair for pair in echoed["headers"] if pair[0].lower() != "via"]
    return echoed


def _capture(server: PostcapProcess, *curl_args: str) -> tuple[dict[str, Any], str]:
    before = {item["id"] for item in server.requests()}
    result = server.curl("--globoff", *curl_args)
    (new,) = [item for item in server.requests() if item["id"] not in before]
    return _received(result.stdout), new["id"]


def _run_shell(command: str) -> bytes:
    result = subprocess.run(["sh", "-c", command], capture_output=True, timeout=40)
    assert result.returncode == 0, (command, result.stderr)
    return result.stdout


@pytest.mark.parametrize("extra", [
    ["-H", f"X-Awkward: {AWKWARD}", "-H", "X-Lines: one", "-d", "multi\nline\n'body' $x"],
    ["-X", "PUT", "-H", "Content-Type: application/octet-stream", "-H", "X-Empty;",
     "--data-binary", "@BINARY"],
    ["-H", "Accept: application/json", "-H", "User-Agent: agent/1.0 (x; y)"],
], ids=["text-body", "binary-body", "no-body"])
def test_curl_export_repeats_the_request(
    server: PostcapProcess, origin: Origin, tmp_path: Any, extra: list[str]
) -> None:
    binary = tmp_path / "body.bin"
    binary.write_bytes(bytes(range(256)) + b"\x00\r\n\x00end")
    extra = [str(binary).join(arg.split("BINARY")) if "BINARY" in arg else arg for arg in extra]
    original, request_id = _capture(server, *extra, origin.url("/echo?q=a%20b&q=2&x=[1]"))
    command = server.rpc("request.export", id=request_id, format="curl")
    repeated = _received(_run_shell(command + " --silent --show-error"))
    assert repeated["method"] == original["method"]
    assert repeated["path"] == original["path"]
    assert repeated["headers"] == original["headers"]
    assert (repeated["body"], repeated["body_encoding"], repeated["body_size"]) == (
        original["body"], original["body_encoding"], original["body_size"])


def test_python_export_repeats_the_request(server: PostcapProcess, origin: Origin) -> None:
    original, request_id = _capture(
        server, "-H", f"X-Awkward: {AWKWARD}", "--data-binary", "a=1&b=\x01", origin.url("/echo"))
    script = server.rpc("request.export", id=request_id, format="python")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=40)
    assert result.returncode == 0, result.stderr
    status, _, body = result.stdout.partition(b"\n")
    assert status == b"200 OK"
    repeated = _received(body)
    assert (repeated["method"], repeated["path"], repeated["headers"], repeated["body"]) == (
        original["method"], original["path"], original["headers"], original["body"])


def test_fetch_export_runs_in_node(server: PostcapProcess, origin: Origin, tmp_path: Any) -> None:
    if subprocess.run(["node", "--version"], capture_output=True).returncode != 0:
        pytest.skip("node is not installed")
    original, request_id = _capture(
        server, "-H", "Content-Type: application/json", "-d", '{"a": [1, 2]}', origin.url("/echo"))
    script = tmp_path / "fetch.mjs"
    script.write_text(server.rpc("request.export", id=request_id, format="fetch"))
    result = subprocess.run(["node", str(script)], capture_output=True, timeout=40)
    assert result.returncode == 0, result.stderr
    status, _, body = result.stdout.partition(b" ")
    assert status == b"200"
    repeated = _received(body)
    assert (repeated["method"], repeated["path"], repeated["body"]) == (
        original["method"], original["path"], original["body"])
    assert ["content-type", "application/json"] in [[n.lower(), v] for n, v in repeated["headers"]]


def test_diff_and_postcapctl(server: PostcapProcess, origin: Origin) -> None:
    _, first = _capture(server, "-H", "X-A: 1", "-H", "Content-Type: application/json",
                        "-d", '{"user": {"id": 1, "tags": ["a"]}, "keep": true}',
                        origin.url("/echo?page=1&sort=asc"))
    _, second = _capture(server, "-X", "PUT", "-H", "X-B: 2", "-H", "Content-Type: application/json",
                         "-d", '{"user": {"id": 2, "tags": ["a", "b"]}, "keep": true}',
                         origin.url("/echo?page=2&sort=asc&new="))
    diff = server.rpc("request.diff", a=first, b=second)
    assert diff["same"] is False
    assert diff["method"] == {"a": "POST", "b": "PUT"}
    assert {(q["name"], q["change"]) for q in diff["url"]["query"]} == {
        ("page", "changed"), ("new", "added")}
    changes = {(h["name"].lower(), h["change"]) for h in diff["request_headers"]}
    assert {("x-a", "removed"), ("x-b", "added"), ("content-length", "changed")} <= changes
    body = diff["request_body"]
    assert body["kind"] == "json"
    assert [(c["path"], c["change"]) for c in body["changes"]] == [
        ("$.user.id", "changed"), ("$.user.tags[1]", "added")]
    assert diff["status"] is None
    same = server.rpc("request.diff", a=first, b=first)
    assert same["same"] is True

    env = dict(os.environ, POSTCAP_HOME=server.data_dir)
    ctl = [sys.executable, "-m", "postcap.ctl"]
    shown = subprocess.run([*ctl, "request", "diff", first, second], capture_output=True,
                           env=env, timeout=40)
    assert shown.returncode == 0, shown.stderr
    assert b"method: POST -> PUT" in shown.stdout
    assert b"$.user.tags[1] added" in shown.stdout
    exported = subprocess.run([*ctl, "request", "export", first, "--format", "httpie"],
                              capture_output=True, env=env, timeout=40)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith(b"http --print=hb --raw ")


def test_export_errors(server: PostcapProcess) -> None:
    from tests.postcap_process import RPCError

    with pytest.raises(RPCError) as missing:
        server.rpc("request.export", id="nope", format="curl")
    assert missing.value.code == -32004
    with pytest.raises(RPCError) as bad_format:
        server.rpc("request.export", id="nope", format="wget")
    assert bad_format.value.code == -32602 and "format" in bad_format.value.message
