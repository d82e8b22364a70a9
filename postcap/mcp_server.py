"""``postcap mcp``: a Model Context Protocol server on stdio over the running postcap.

Built on the official ``mcp`` SDK (``MCPServer``; ``FastMCP`` on SDK 1.x).  Every tool
is a thin call through :mod:`postcap.client` (run in a worker thread, so the
protocol loop never blocks); postcap's errors come back as tool errors carrying the
server's message, never as crashes.  The server is looked up on each call, so the
MCP server starts, and says why a tool fails, while postcap is not running.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sys
from typing import Any, Callable, Literal, Sequence

from postcap.client import BlockingClient, PostcapError, ServerUnreachable

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError:  # pragma: no cover - mcp 1.x
    from mcp.server.fastmcp import FastMCP as MCPServer  # type: ignore[no-redef]
    from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[no-redef]

#: Characters of each body ``get_request`` returns unless asked for more.
DEFAULT_BODY_CHARS = 4000
MAX_BODY_CHARS = 100_000

INSTRUCTIONS = (
    "postcap is a capture proxy: it records HTTP(S) traffic into sessions. Use list_sessions "
    "and search_requests to find requests (ids), get_request to read one (bodies come in "
    "pages: body_offset/body_length), replay_request to send one again with changes, "
    "export_request to get it as a curl/python/fetch/httpie snippet, diff_requests to "
    "compare two, export_session to write a session as HAR or OpenAPI to a file, and "
    "start_session/stop_session to capture new traffic."
)


class PostcapTools:
    """The tools, over a client factory (``postcap.client``'s discovery by default)."""

    def __init__(self, open_client: Callable[[], BlockingClient]) -> None:
        self.open_client = open_client

    async def call(self, method: str, /, **params: Any) -> Any:
        """One JSON-RPC call in a worker thread; postcap's errors as tool errors."""
        def blocking() -> Any:
            return self.open_client().call(method, **params)

        return await self._guarded(blocking)

    async def _guarded(self, work: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(work)
        except ServerUnreachable as exc:
            raise ToolError(f"{exc}; is postcap running? (twistd -n postcap)") from None
        except PostcapError as exc:
            raise ToolError(f"postcap: {exc}") from None
        except OSError as exc:
            raise ToolError(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None

    # -- tools -------------------------------------------------------------------------

    async def list_sessions(self, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        """List capture sessions, newest first: {total, items: [session]}.

        A session has id, name, state ("running", "paused" or "stopped"), started_at,
        stopped_at, request_count and total_bytes. Use a session's id with
        search_requests or export_session. limit: 1..1000; offset: sessions to skip.
        """
        return await self.call("session.list", limit=limit, offset=offset)

    async def search_requests(
        self,
        session_id: str | None = None,
        query: str | None = None,
        search_in: list[Literal["headers", "body"]] | None = None,
        method: str | None = None,
        status: int | str | None = None,
        domain: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
        offset: int = 0,
        newest_first: bool = True,
    ) -> dict[str, Any]:
        """Find captured requests in one session: {total, items: [summary]}.

        Each summary has id (pass it to get_request, replay_request, export_request,
        diff_requests), method, url, status, duration_ms, request_bytes, response_bytes,
        content_type and error. session_id: default the active session (else required).
        query: full-text search, a substring of the URL (plus headers and/or bodies when
        search_in lists "headers" and/or "body"). method: e.g. "POST". status: a code
        ("404") or class ("5xx"). domain: a host name; subdomains match. since/until:
        ISO 8601 times such as 2026-11-22T10:00:00Z. limit: 1..1000.
        """
        statuses: Any = None
        if status is not None:
            statuses = int(status) if str(status).isdigit() else status
        params: dict[str, Any] = {
            "session_id": session_id, "query": query, "method": method, "status": statuses,
            "domain": domain, "since": since, "until": until, "limit": limit, "offset": offset,
            "order": "desc" if newest_first else "asc",
        }
        if search_in:
            params["in"] = list(search_in)
        return await self.call("request.list", **{k: v for k, v in params.items() if v is not None})

    async def get_request(
        self, id: str, body_offset: int = 0, body_length: int = DEFAULT_BODY_CHARS
    ) -> dict[str, Any]:
        """One captured request in full: method, url, status, timings, TLS, and request
        and response each with http_version, headers ([name, value] in order) and body.

        Bodies are paged: body.text holds at most body_length characters from
        body_offset (the same window for request and response); body.text_total_chars
        is the whole stored text and body.more says whether more follows (call again
        with a larger body_offset). body.encoding "base64" means the text is base64 of
        binary bytes. body.size is the size on the wire; body.truncated means postcap
        stored only part of it. body_length: 1..100000.
        """
        if body_offset < 0 or not 0 < body_length <= MAX_BODY_CHARS:
            raise ToolError(f"body_offset must be >= 0 and body_length 1..{MAX_BODY_CHARS}")
        detail = await self.call("request.get", id=id)
        return page_bodies(detail, body_offset, body_length)

    async def replay_request(
        self,
        id: str,
        method: str | None = None,
        url: str | None = None,
        headers: dict[str, str | None] | None = None,
        # Annotated plain ``str`` so the SDK does not parse a JSON body into an object.
        body: str = None,  # type: ignore[assignment]
        use_cookie_jar: bool = False,
    ) -> dict[str, Any]:
        """Send a captured request again and return the new capture (paged like
        get_request; replay_of names the original).

        Overrides are optional: method (e.g. "PUT"), url (absolute http(s) URL),
        headers ({name: value} changes or adds a header, {name: null} removes it; others
        stay as captured), body (the new body as text). use_cookie_jar: send the cookie
        jar's cookies for the URL instead of the captured Cookie header. The replay is
        recorded in the running session, else in the "replays" session.
        """
        params: dict[str, Any] = {"id": id, "use_cookie_jar": use_cookie_jar}
        for name, value in (("method", method), ("url", url), ("headers", headers), ("body", body)):
            if value is not None:
                params[name] = value
        detail = await self.call("request.replay", **params)
        return page_bodies(detail, 0, DEFAULT_BODY_CHARS)

    async def export_request(
        self, id: str, format: Literal["curl", "httpie", "python", "fetch"] = "curl"
    ) -> str:
        """A captured request as a command or snippet that sends it again exactly
        (method, URL, headers in order, body): "curl" or "httpie" (POSIX shell),
        "python" (standard library http.client), "fetch" (JavaScript)."""
        return await self.call("request.export", id=id, format=format)

    async def diff_requests(self, a: str, b: str) -> dict[str, Any]:
        """What differs between two captured requests (ids a and b): method, url (per
        query parameter), status, request/response headers (added, removed, changed) and
        bodies (JSON per path such as $.items[0].id, text as a unified diff, binary as
        sizes and SHA-256). Parts that are equal are null; same is true when nothing
        differs."""
        return await self.call("request.diff", a=a, b=b)

    async def export_session(
        self, id: str, path: str, format: Literal["har", "openapi"] = "har"
    ) -> dict[str, Any]:
        """Write a session to a file and return {path, format, bytes}.

        format "har": HAR 1.2 (opens in browser devtools, Charles, Fiddler); "openapi":
        an OpenAPI 3.1 document inferred from the traffic, as YAML when path ends in
        .yaml or .yml, else JSON. path: where to write (absolute, or relative to the MCP
        server's working directory); an existing file is replaced.
        """
        target = os.path.abspath(os.path.expanduser(path))
        if not os.path.isdir(os.path.dirname(target)):
            raise ToolError(f"no such directory: {os.path.dirname(target)}")

        def write() -> dict[str, Any]:
            client = self.open_client()
            partial = target + ".part"
            try:
                with open(partial, "wb") as handle:
                    if format == "har":
                        written = client.stream_har(id, handle)
                    else:
                        document = client.session_export(id, format=format)
                        data = _openapi_bytes(document, target)
                        handle.write(data)
                        written = len(data)
                os.replace(partial, target)
            finally:
                if os.path.exists(partial):
                    os.unlink(partial)
            return {"path": target, "format": format, "bytes": written}

        return await self._guarded(write)

    async def start_session(
        self,
        name: str | None = None,
        url_contains: str | None = None,
        url_excludes: str | None = None,
        methods: list[str] | None = None,
        save_responses: bool = True,
        capture_cookies: bool = False,
    ) -> dict[str, Any]:
        """Start capturing into a new session; returns the session (use its id with
        search_requests). Only one session can be active: this fails while another
        runs (stop it first with stop_session). url_contains/url_excludes: capture only
        URLs that contain (or match as a regular expression) / never those. methods:
        capture only these. save_responses: false keeps headers and status but no
        response bodies."""
        options: dict[str, Any] = {"save_responses": save_responses,
                                   "capture_cookies": capture_cookies}
        if name:
            options["name"] = name
        filters = {key: value for key, value in (("url_contains", url_contains),
                                                  ("url_excludes", url_excludes),
                                                  ("methods", methods)) if value}
        if filters:
            options["filters"] = filters
        return await self.call("session.start", **options)

    async def stop_session(self, id: str | None = None) -> dict[str, Any]:
        """Stop a session (default: the active one); its captures stay in the history."""
        return await self.call("session.stop", **({"id": id} if id else {}))

    def tools(self) -> list[Callable[..., Any]]:
        return [self.list_sessions, self.search_requests, self.get_request, self.replay_request,
                self.export_request, self.diff_requests, self.export_session,
                self.start_session, self.stop_session]


def _openapi_bytes(document: Any, path: str) -> bytes:
    if path.endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode("utf-8")
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def page_bodies(detail: dict[str, Any], offset: int, length: int) -> dict[str, Any]:
    """The detail with each body's text cut to ``[offset, offset + length)``."""
    for side in ("request", "response"):
        part = detail.get(side)
        body = part.get("body") if isinstance(part, dict) else None
        if not isinstance(body, dict):
            continue
        text = body.get("text") or ""
        body["text_total_chars"] = len(text)
        body["text_offset"] = offset
        body["text"] = text[offset:offset + length]
        body["more"] = offset + length < len(text)
    return detail


def build_server(tools: PostcapTools) -> Any:
    server = MCPServer("postcap", instructions=INSTRUCTIONS)
    for tool in tools.tools():
        server.add_tool(tool, name=tool.__name__, description=inspect.cleandoc(tool.__doc__ or ""))
    return server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="postcap mcp",
        description="A Model Context Protocol server on stdio over the running postcap.")
    parser.add_argument("--data-dir", help="postcap's data dir [default: $POSTCAP_HOME or ~/.postcap]")
    parser.add_argument("--control", metavar="ENDPOINT", help="control channel: a URL or an endpoint as the server takes it, unix: included (default: discovered in the data dir)")
    parser.add_argument("--token-file", metavar="FILE", help="token file (default: DATA_DIR/control.token)")
    args = parser.parse_args(list(sys.argv[2:] if argv is None else argv))
    from postcap.run import open_client

    tools = PostcapTools(lambda: open_client(args.data_dir, args.control, args.token_file))
    build_server(tools).run("stdio")
    return 0


__all__ = ["PostcapTools", "build_server", "main", "page_bodies"]
