"""Cookies, the jar, cookie sync, collections and HAR against a real server, a real
origin and real curl."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import Origin, requires_curl
from tests.postcap_process import PostcapProcess, RPCError
from tests.schemas import assert_valid

pytestmark = requires_curl



@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("exports")) as running:
        yield running


def test_captured_cookies_go_to_the_jar_and_back_with_curl(
    server: PostcapProcess, origin: Origin, tmp_path: Path
) -> None:
    session = server.rpc("session.start", name="cookies", capture_cookies=True)
    try:
        server.curl(origin.url("/cookies/set?sid=abc123&theme=dark"))
        server.curl("-H", "Cookie: sent=1", origin.url("/hello"))
    finally:
        server.rpc("session.stop")
    listed = server.rpc("cookie.list", session_id=session["id"])
    assert listed["total"] == 3
    by_name = {c["name"]: c for c in listed["items"]}
    assert by_name["sid"]["source"] == "response" and by_name["sid"]["http_only"] is True
    assert by_name["sid"]["domain"] == "127.0.0.1" and by_name["sid"]["host_only"] is True
    assert by_name["sent"]["source"] == "request"
    assert set(by_name["sid"]) == {"id", "session_id", "transaction_id", "source", "name", "value",
                                   "domain", "path", "expires", "http_only", "secure",
                                   "same_site", "host_only"}
    added = server.rpc("cookiejar.add", cookie_ids=[by_name["sid"]["id"], by_name["theme"]["id"]])
    assert added == 2
    jar_file = tmp_path / "cookies.txt"
    jar_file.write_text(server.rpc("cookiejar.export", format="netscape"))
    echoed = subprocess.run(["curl", "-sS", "-b", str(jar_file), origin.url("/cookies/show")],
                            capture_output=True, timeout=30, check=True)
    assert sorted(json.loads(echoed.stdout)["cookies"]) == [["sid", "abc123"], ["theme", "dark"]]
    as_json = server.rpc("cookiejar.export", format="json")
    assert sorted(c["name"] for c in as_json) == ["sid", "theme"]
    assert server.rpc("cookiejar.delete", domain="127.0.0.1", name="theme") == 1
    assert [c["name"] for c in server.rpc("cookiejar.list", domain="127.0.0.1")["items"]] == ["sid"]
    assert server.rpc("cookie.delete", ids=[by_name["sent"]["id"]]) == 1
    assert server.rpc("cookie.list", session_id=session["id"])["total"] == 2


def test_cookie_sync_fills_the_jar_without_a_session(server: PostcapProcess, origin: Origin) -> None:
    assert server.rpc("server.info")["active_session"] is None
    state = server.rpc("cookiesync.set", enabled=True, domains=["localhost"])
    assert state == {"enabled": True, "domains": ["localhost"]}
    try:
        server.curl(f"http://localhost:{origin.port}/cookies/set?synced=yes&doomed=1")
        server.curl(origin.url("/cookies/set?not_synced=1"))  # 127.0.0.1 is not in the list
        names = {c["name"] for c in server.rpc("cookiejar.list", domain="localhost")["items"]}
        assert {"synced", "doomed"} <= names
        server.curl(f"http://localhost:{origin.port}/cookies/expire?doomed")
        names = {c["name"] for c in server.rpc("cookiejar.list")["items"]}
        assert "synced" in names and "doomed" not in names and "not_synced" not in names
    finally:
        server.rpc("cookiesync.set", enabled=False)
    assert server.rpc("cookiesync.get") == {"enabled": False, "domains": ["localhost"]}


def test_collection_by_domain_and_endpoint(server: PostcapProcess, origin: Origin) -> None:
    collection = server.rpc("collection.create", name="API capture")
    session = server.rpc("session.start", name="to collection", collection=collection["id"],
                         organize_by=["domain", "endpoint"])
    try:
        server.curl("-H", "Content-Type: application/json", "-d", '{"user": 7}', origin.url("/echo"))
        server.curl("-d", "a=1&b=two", origin.url("/echo?form=1"))
        server.curl("-F", "field=value", origin.url("/echo?multipart=1"))
        server.curl(origin.url("/status/201"), origin.url("/status/404"), "-o", "/dev/null")
        server.curl(f"http://localhost:{origin.port}/hello")
    finally:
        server.rpc("session.stop")
    document = server.rpc("collection.get", id=collection["id"])
    assert_valid("collection", document)
    assert document["info"]["name"] == "API capture"
    folders = {f["name"]: {g["name"]: g for g in f["item"]} for f in document["item"]}
    assert set(folders) == {origin.authority, f"localhost:{origin.port}"}
    # One item per method and endpoint template, one example per status code:
    assert set(folders[origin.authority]) == {"POST /echo", "GET /status/:statusId"}
    statuses = folders[origin.authority]["GET /status/:statusId"]
    assert [r["code"] for r in statuses["response"]] == [201, 404]
    assert statuses["request"]["url"]["variable"] == [{"key": "statusId", "value": "201"}]
    echo = folders[origin.authority]["POST /echo"]
    assert json.loads(echo["request"]["body"]["raw"]) == {"user": 7}
    assert echo["request"]["body"]["options"]["raw"]["language"] == "json"
    assert echo["request"]["url"]["raw"].startswith("{{baseUrl")
    (example,) = echo["response"]
    assert example["code"] == 200 and json.loads(example["body"])["method"] == "POST"
    hello = folders[f"localhost:{origin.port}"]["GET /hello"]
    assert hello["response"][0]["body"] == "hello from origin\n"
    origins = {v["value"]: v["key"] for v in document["variable"]}
    assert set(origins) == {f"http://{origin.authority}", f"http://localhost:{origin.port}"}
    listed = server.rpc("collection.list")["items"]
    assert {"id": collection["id"], "name": "API capture", "request_count": 3} in listed
    # After the fact, from request ids, chronological:
    later = server.rpc("collection.create", name="later")
    ids = [item["id"] for item in server.requests(session["id"], limit=3)]
    assert server.rpc("collection.add", id=later["id"], request_ids=ids) == 3
    flat = server.rpc("collection.get", id=later["id"])
    assert_valid("collection", flat)
    assert [item["request"]["method"] for item in flat["item"]] == ["POST", "POST", "POST"]
    assert server.rpc("collection.delete", id=later["id"]) is True
    with pytest.raises(RPCError) as raised:
        server.rpc("collection.get", id=later["id"])
    assert raised.value.code == -32004


def test_collection_errors_name_the_parameter(server: PostcapProcess) -> None:
    made = server.rpc("collection.create", name="errors")
    for params, name in (({"id": made["id"], "request_ids": []}, "request_ids"),
                         ({"id": made["id"], "request_ids": ["x"], "organize_by": ["host"]}, "organize_by")):
        with pytest.raises(RPCError) as raised:
            server.rpc("collection.add", **params)
        assert (raised.value.code, raised.value.data) == (-32602, {"param": name})
    with pytest.raises(RPCError) as raised:
        server.rpc("collection.add", id="missing", request_ids=["x"])
    assert raised.value.code == -32004
    with pytest.raises(RPCError) as raised:
        server.rpc("session.start", collection="no-such-collection")
    assert raised.value.code == -32005 and "no-such-collection" in raised.value.message
    assert server.rpc("server.info")["active_session"] is None
    with pytest.raises(RPCError) as raised:
        server.rpc("cookiejar.add", cookies=[{"name": "a", "value": "1"}])
    assert (raised.value.code, raised.value.data) == (-32602, {"param": "cookies[0].domain"})


def test_har_export_and_streamed_har_agree(server: PostcapProcess, origin: Origin) -> None:
    session = server.rpc("session.start", name="har")
    try:
        server.curl("-d", "x=1", origin.url("/echo?har=1"))
        server.curl(origin.url("/image.png"), origin.url("/cookies/set?h=1"), "-o", "/dev/null")
    finally:
        server.rpc("session.stop")
    exported = server.rpc("session.export", id=session["id"], format="har")
    assert_valid("har", exported)
    assert [e["request"]["url"] for e in exported["log"]["entries"]] == [
        origin.url("/echo?har=1"), origin.url("/image.png"), origin.url("/cookies/set?h=1")]
    assert exported["log"]["entries"][0]["request"]["postData"]["text"] == "x=1"
    status, headers, body = server.http(f"/sessions/{session['id']}.har")
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    assert json.loads(body) == exported
    assert server.http("/sessions/nope.har")[0] == 404
    assert server.http(f"/sessions/{session['id']}.har", token="wrong")[0] == 401
    with pytest.raises(RPCError) as raised:
        server.rpc("session.export", id=session["id"], format="csv")
    assert (raised.value.code, raised.value.data) == (-32602, {"param": "format"})
