"""``postcap mcp`` driven as an MCP client does, over stdio with the SDK's client:
initialize, tools/list, tools/call against a running postcap."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any, Iterator

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.harness import Origin, requires_curl
from tests.postcap_process import PostcapProcess

pytestmark = requires_curl

TOOLS = {"list_sessions", "search_requests", "get_request", "replay_request", "export_request",
         "diff_requests", "export_session", "start_session", "stop_session"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("mcp")) as running:
        running.rpc("session.start", name="seen by the agent")
        running.curl(origin.url("/hello"))
        running.curl("-H", "Content-Type: application/json", "-d", json.dumps({"big": "x" * 10_000}),
                     origin.url("/echo?k=v"))
        running.rpc("session.stop")
        yield running


def mcp_session(server: PostcapProcess, data_dir: str | None = None) -> Any:
    parameters = StdioServerParameters(
        command=sys.executable, args=["-m", "postcap", "mcp", "--data-dir", data_dir or server.data_dir],
        env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )
    return stdio_client(parameters)


def result_data(result: Any) -> Any:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        content = result.structured_content
        return content.get("result", content) if set(content) == {"result"} else content
    return json.loads(result.content[0].text)


def error_text(result: Any) -> str:
    assert result.is_error
    return result.content[0].text


async def conversation(server: PostcapProcess, tmp_path: Any) -> None:
    async with mcp_session(server) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        listed = await client.list_tools()
        assert {tool.name for tool in listed.tools} == TOOLS
        for tool in listed.tools:
            assert len(tool.description or "") > 60, tool.name

        sessions = result_data(await client.call_tool("list_sessions", {}))
        (session,) = [s for s in sessions["items"] if s["name"] == "seen by the agent"]

        found = result_data(await client.call_tool(
            "search_requests", {"session_id": session["id"], "query": "echo", "method": "POST"}))
        (echo,) = found["items"]
        assert echo["url"].endswith("/echo?k=v")
        by_body = result_data(await client.call_tool(
            "search_requests", {"session_id": session["id"], "query": "xxxxxxxx", "search_in": ["body"]}))
        assert [item["id"] for item in by_body["items"]] == [echo["id"]]

        first = result_data(await client.call_tool("get_request", {"id": echo["id"], "body_length": 100}))
        body = first["request"]["body"]
        assert len(body["text"]) == 100 and body["more"] is True
        assert body["text_total_chars"] == len(json.dumps({"big": "x" * 10_000}))
        rest = result_data(await client.call_tool(
            "get_request", {"id": echo["id"], "body_offset": 100, "body_length": 100_000}))
        assert body["text"] + rest["request"]["body"]["text"] == json.dumps({"big": "x" * 10_000})
        assert rest["request"]["body"]["more"] is False

        replayed = result_data(await client.call_tool(
            "replay_request", {"id": echo["id"], "method": "PUT", "headers": {"X-Agent": "yes"},
                               "body": '{"small": 1}'}))
        assert replayed["replay_of"] == echo["id"] and replayed["method"] == "PUT"
        echoed = json.loads(replayed["response"]["body"]["text"])
        assert echoed["method"] == "PUT" and echoed["body"] == '{"small": 1}'
        assert ["X-Agent", "yes"] in echoed["headers"]

        command = result_data(await client.call_tool("export_request", {"id": echo["id"]}))
        assert command.startswith("curl ")
        diff = result_data(await client.call_tool("diff_requests", {"a": echo["id"], "b": replayed["id"]}))
        assert diff["method"] == {"a": "POST", "b": "PUT"}

        har_path = tmp_path / "session.har"
        written = result_data(await client.call_tool(
            "export_session", {"id": session["id"], "path": str(har_path)}))
        assert written["path"] == str(har_path) and written["bytes"] == har_path.stat().st_size
        assert len(json.loads(har_path.read_text())["log"]["entries"]) == 2
        openapi = await client.call_tool(
            "export_session", {"id": session["id"], "path": str(tmp_path / "api.json"), "format": "openapi"})
        assert not openapi.is_error, error_text(openapi)
        assert json.loads((tmp_path / "api.json").read_text())["openapi"].startswith("3.1")

        started = result_data(await client.call_tool("start_session", {"name": "agent"}))
        assert started["state"] == "running"
        again = await client.call_tool("start_session", {"name": "second"})
        assert "already running" in error_text(again) and "-32001" in error_text(again)
        stopped = result_data(await client.call_tool("stop_session", {}))
        assert stopped["id"] == started["id"] and stopped["state"] == "stopped"

        missing = await client.call_tool("get_request", {"id": "no-such-id"})
        assert "not found" in error_text(missing)
        bad_dir = await client.call_tool("export_session", {"id": session["id"], "path": "/no/such/dir/x.har"})
        assert "no such directory" in error_text(bad_dir)


def test_mcp_over_stdio(server: PostcapProcess, tmp_path: Any) -> None:
    asyncio.run(asyncio.wait_for(conversation(server, tmp_path), 90))


async def unreachable(server: PostcapProcess, tmp_path: Any) -> None:
    async with mcp_session(server, str(tmp_path)) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        result = await client.call_tool("list_sessions", {})
        text = error_text(result)
        assert "no running postcap found" in text and "server.json is missing" in text


def test_mcp_without_a_server_answers_with_tool_errors(server: PostcapProcess, tmp_path: Any) -> None:
    asyncio.run(asyncio.wait_for(unreachable(server, tmp_path), 60))
