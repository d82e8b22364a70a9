"""History end to end: overview and search against traffic of known shape sent by real
curl, delete with space given back, replay against an echoing origin, retention."""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator

import pytest

from tests.harness import Origin, free_port, requires_curl
from tests.postcap_process import PostcapProcess, RPCError

pytestmark = requires_curl



@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("history")) as running:
        yield running


@pytest.fixture(scope="module")
def shaped(server: PostcapProcess, origin: Origin) -> dict[str, Any]:
    """A stopped session with known traffic: 3 GET /hello, 2 JSON POSTs, 1 form POST,
    1 multipart POST, 2 404s, 1 GET to ``localhost`` (another domain)."""
    session = server.rpc("session.start", name="shaped")
    server.curl(*[origin.url(f"/hello?n={i}") for i in range(3)], "-o", "/dev/null")
    for i in range(2):
        server.curl("-H", "Content-Type: application/json", "-H", "X-Trace: needle-header",
                    "-d", json.dumps({"item": i, "secret": "needle-body"}), origin.url("/echo"))
    server.curl("-d", "a=1&b=2", origin.url("/echo?form=1"))
    server.curl("-F", "field=value", origin.url("/echo?multipart=1"))
    server.curl(origin.url("/status/404"), origin.url("/missing"), "-o", "/dev/null")
    server.curl(f"http://localhost:{origin.port}/hello")
    server.rpc("session.stop")
    return session


def test_overview_counts_traffic_of_known_shape(server: PostcapProcess, shaped: dict[str, Any]) -> None:
    overview = server.rpc("session.overview", id=shaped["id"])
    assert overview["by_method"] == {"GET": 6, "POST": 4}
    assert overview["by_domain"] == {"127.0.0.1": 9, "localhost": 1}
    assert overview["by_data_mode"] == {"none": 6, "raw-json": 2, "urlencoded": 1, "formdata": 1}
    assert overview["by_status"] == {"200": 8, "404": 2}
    assert overview["by_status_class"] == {"2xx": 8, "4xx": 2}
    totals = overview["totals"]
    assert totals["requests"] == 10 and totals["errors"] == 0
    assert totals["bytes"] == sum(i["request_bytes"] + i["response_bytes"]
                                  for i in server.requests(shaped["id"], limit=100))


def test_request_list_filters_and_pages(server: PostcapProcess, shaped: dict[str, Any]) -> None:
    def listing(**params: Any) -> dict[str, Any]:
        return server.rpc("request.list", session_id=shaped["id"], **params)

    assert listing(method="POST")["total"] == 4
    assert listing(method=["post", "GET"])["total"] == 10
    assert [i["status"] for i in listing(status="4xx")["items"]] == [404, 404]
    assert listing(status=[200, "4xx"])["total"] == 10
    assert listing(domain="localhost")["total"] == 1
    assert listing(query="/echo")["total"] == 4
    assert listing(query="NEEDLE-HEADER")["total"] == 0  # the URL only by default
    assert listing(query="needle-header", **{"in": ["headers"]})["total"] == 2
    assert listing(query="needle-body", **{"in": ["body"]})["total"] == 2
    everything = listing(limit=1000)["items"]
    assert [i["id"] for i in listing(order="desc", limit=1000)["items"]] == [i["id"] for i in everything][::-1]
    page = listing(limit=3, offset=3)
    assert page["total"] == 10 and [i["id"] for i in page["items"]] == [i["id"] for i in everything[3:6]]
    middle = everything[4]["started_at"]
    assert listing(since=middle)["total"] == 6
    assert listing(until=middle)["total"] == 5
    assert listing(since="2000-01-01T00:00:00Z", until="2001-01-01T00:00:00Z")["total"] == 0


@pytest.mark.parametrize(
    "params, name",
    [
        ({"status": "4yy"}, "status"),
        ({"status": True}, "status"),
        ({"method": 5}, "method"),
        ({"since": "yesterday"}, "since"),
        ({"in": ["cookies"]}, "in"),
        ({"order": "up"}, "order"),
        ({"limit": 0}, "limit"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_request_list_bad_params_name_the_parameter(
    server: PostcapProcess, shaped: dict[str, Any], params: dict[str, Any], name: str
) -> None:
    with pytest.raises(RPCError) as raised:
        server.rpc("request.list", session_id=shaped["id"], **params)
    assert raised.value.code == -32602
    assert raised.value.data == {"param": name}


def test_overview_of_unknown_session_is_not_found(server: PostcapProcess) -> None:
    with pytest.raises(RPCError) as raised:
        server.rpc("session.overview", id="no-such-session")
    assert raised.value.code == -32004


def test_request_delete_and_session_delete_give_space_back(
    tmp_path: Any, origin: Origin
) -> None:
    with PostcapProcess(tmp_path / "data") as server:
        session = server.rpc("session.start", name="big")
        server.curl(*[origin.url("/bytes/200000") for _ in range(20)], "-o", "/dev/null")
        server.rpc("session.stop")
        items = server.requests(session["id"], limit=100)
        assert server.rpc("request.delete", ids=[items[0]["id"], items[1]["id"], "nope"]) == 2
        assert server.rpc("session.get", id=session["id"])["request_count"] == 18
        with pytest.raises(RPCError) as raised:
            server.rpc("request.get", id=items[0]["id"])
        assert raised.value.code == -32004
        database = os.path.join(server.data_dir, "history.sqlite3")
        server.rpc("server.info")  # the history is flushed before any read
        before = os.path.getsize(database) + os.path.getsize(database + "-wal")
        assert server.rpc("session.delete", id=session["id"]) is True
        server.rpc("session.start", name="checkpoint")  # another write moves the WAL on
        server.rpc("session.stop")
    after = os.path.getsize(database) + (
        os.path.getsize(database + "-wal") if os.path.exists(database + "-wal") else 0
    )
    assert after < before / 2, (before, after)


def echoed_header(echoed: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in echoed["headers"] if key.lower() == name]


def test_replay_resends_to_the_origin_and_is_captured(
    server: PostcapProcess, origin: Origin, shaped: dict[str, Any]
) -> None:
    posted = server.requests(shaped["id"], method="POST", query="/echo", limit=1)[0]
    live = server.rpc("session.start", name="replaying")
    try:
        replayed = server.rpc("request.replay", id=posted["id"])
        assert replayed["session_id"] == live["id"]
        assert replayed["replay_of"] == posted["id"] and replayed["kind"] == "replay"
        assert replayed["response"]["status"] == 200
        echoed = json.loads(replayed["response"]["body"]["text"])
        assert echoed["method"] == "POST"
        assert json.loads(echoed["body"]) == {"item": 0, "secret": "needle-body"}
        assert echoed_header(echoed, "x-trace") == ["needle-header"]
        changed = server.rpc(
            "request.replay", id=posted["id"], url=origin.url("/echo?changed=1"),
            headers={"X-Trace": "other", "X-New": "1"}, body="plain",
        )
        echoed = json.loads(changed["response"]["body"]["text"])
        assert (echoed["path"], echoed["body"]) == ("/echo?changed=1", "plain")
        assert echoed_header(echoed, "x-trace") == ["other"]
        assert echoed_header(echoed, "x-new") == ["1"]
        assert [i["id"] for i in server.requests(live["id"])] == [replayed["id"], changed["id"]]
    finally:
        server.rpc("session.stop")


def test_replay_without_a_session_goes_to_replays(server: PostcapProcess, shaped: dict[str, Any]) -> None:
    hello = server.requests(shaped["id"], query="/hello", limit=1)[0]
    replayed = server.rpc("request.replay", id=hello["id"])
    assert replayed["session_id"] == "replays"
    assert replayed["response"]["body"]["text"] == "hello from origin\n"
    replays = server.rpc("session.get", id="replays")
    assert replays["name"] == "Replays" and replays["state"] == "stopped"
    assert replayed["id"] in [i["id"] for i in server.requests("replays", limit=1000)]


def test_replay_to_an_unreachable_upstream_records_the_error(
    server: PostcapProcess, shaped: dict[str, Any]
) -> None:
    hello = server.requests(shaped["id"], query="/hello", limit=1)[0]
    replayed = server.rpc("request.replay", id=hello["id"], url=f"http://127.0.0.1:{free_port()}/x")
    assert replayed["response"] is None and replayed["status"] is None
    assert "refused" in replayed["error"]


def test_replay_bad_params(server: PostcapProcess, shaped: dict[str, Any]) -> None:
    hello = server.requests(shaped["id"], query="/hello", limit=1)[0]
    for params, name in (
        ({"url": "ftp://x/"}, "url"),
        ({"headers": "X: y"}, "headers"),
        ({"body": 5}, "body"),
        ({"use_cookie_jar": "yes"}, "use_cookie_jar"),
    ):
        with pytest.raises(RPCError) as raised:
            server.rpc("request.replay", id=hello["id"], **params)
        assert (raised.value.code, raised.value.data) == (-32602, {"param": name}), params
    with pytest.raises(RPCError) as raised:
        server.rpc("request.replay", id="missing")
    assert raised.value.code == -32004


def test_retention_purges_old_stopped_sessions_never_the_active_one(
    tmp_path: Any, origin: Origin
) -> None:
    data = tmp_path / "data"
    with PostcapProcess(data) as first:
        old = first.rpc("session.start", name="old")
        first.curl(origin.url("/hello"))
        first.rpc("session.stop")
    time.sleep(1.2)
    with PostcapProcess(data, "--history-max-age", "1s", "--retention-interval", "0.2") as second:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ids = [s["id"] for s in second.rpc("session.list")["items"]]
            if old["id"] not in ids:
                break
            time.sleep(0.1)
        assert old["id"] not in ids
        active = second.rpc("session.start", name="active")
        time.sleep(1.5)
        assert active["id"] in [s["id"] for s in second.rpc("session.list")["items"]]
        assert "retention deleted 1 stopped session(s)" in second.log()
