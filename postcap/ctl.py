"""``postcapctl``: postcap's control channel from a terminal or a script.

A thin JSON-RPC client over :class:`postcap.client.BlockingClient`.  ``--json``
prints each result as JSON; otherwise results are short human tables.

Exit codes: 0 success; 1 the server answered with an error (its message is
printed), or ``api diff`` found drift; 2 usage error; 3 the server cannot be reached, or the token was refused
or cannot be read.  Errors are a single line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Sequence

from postcap.client import (
    AuthenticationFailed,
    BlockingClient,
    PostcapError,
    ServerUnreachable,
    TokenUnreadable,
    read_token,
    resolve,
)
from postcap.ctl_api import add_api_commands, add_openapi_export
from postcap.ctl_stats import add_stats_parser
from postcap.discovery import BadControlEndpoint

EXIT_OK = 0
EXIT_SERVER_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

#: Options accepted anywhere on the command line: name → takes a value.
GLOBAL_OPTIONS = {"--json": False, "--control": True, "--token-file": True, "--data-dir": True}


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


# -- output -------------------------------------------------------------------------------


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[("" if value is None else str(value)) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, value in enumerate(row):
            widths[index] = min(max(widths[index], len(value)), 80)

    def line(values: Sequence[str]) -> str:
        return "  ".join(value[:80].ljust(width) for value, width in zip(values, widths)).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def human_bytes(size: Any) -> str:
    if not isinstance(size, (int, float)):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def human_ms(ms: Any) -> str:
    if not isinstance(ms, (int, float)):
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def session_rows(sessions: list[dict[str, Any]]) -> str:
    return table(
        [
            [
                s["id"],
                s["name"],
                s["source"],
                s["state"],
                s["started_at"],
                human_ms(s["duration_ms"]),
                s["request_count"],
                human_bytes(s["total_bytes"]),
            ]
            for s in sessions
        ],
        ["ID", "NAME", "SOURCE", "STATE", "STARTED", "DURATION", "REQUESTS", "SIZE"],
    )


def show_session(session: dict[str, Any]) -> str:
    return session_rows([session])


def show_requests(result: dict[str, Any]) -> str:
    rows = [
        [
            r["id"],
            r["method"],
            r["status"] if r["status"] is not None else (r.get("error") or "-"),
            human_ms(r["duration_ms"]),
            human_bytes(r["response_bytes"]),
            r["url"],
        ]
        for r in result["items"]
    ]
    shown = len(rows)
    footer = f"\n{shown} of {result['total']} requests"
    return table(rows, ["ID", "METHOD", "STATUS", "TIME", "SIZE", "URL"]) + footer


def show_messages(result: dict[str, Any]) -> str:
    """WebSocket messages as a table: time, direction, type, size, the payload's start."""
    rows = []
    for message in result["items"]:
        arrow = "->" if message["direction"] == "client" else "<-"
        text = message["text"] if message["encoding"] == "utf-8" else f"[base64] {message['text']}"
        if "code" in message:
            text = f"{message['code']} {text}".strip()
        rows.append([message["at"], arrow, message["type"], message["size"],
                     text[:80].replace("\n", " ") + ("…" if message["truncated"] or len(text) > 80 else "")])
    return table(rows, ["AT", "DIR", "TYPE", "SIZE", "DATA"]) + f"\n{len(rows)} of {result['total']} message(s)"


def show_detail(detail: dict[str, Any]) -> str:
    lines = [
        f"{detail['method']} {detail['url']}",
        f"id {detail['id']}  session {detail['session_id']}  started {detail['started_at']}",
    ]
    response = detail.get("response")
    for title, part in (("request", detail.get("request")), ("response", response)):
        if not part:
            continue
        head = f"{title}: {part.get('http_version', '')}"
        if title == "response":
            head += f" {part.get('status')} {part.get('reason', '')}"
        lines += ["", head]
        lines += [f"  {name}: {value}" for name, value in part.get("headers", [])]
        body = part.get("body") or {}
        if body.get("size"):
            lines.append(
                f"  [body {body['size']} bytes"
                + (", truncated" if body.get("truncated") else "")
                + ("" if body.get("captured", True) else ", not stored")
                + "]"
            )
            if body.get("encoding") == "utf-8" and body.get("text"):
                lines.append("  " + body["text"][:2000].replace("\n", "\n  "))
        if part.get("trailers"):
            lines.append("  trailers:")
            lines += [f"    {name}: {value}" for name, value in part["trailers"]]
    websocket = detail.get("websocket")
    if websocket:
        ended = "open" if websocket["close_code"] is None else (
            f"closed by {websocket['closed_by'] or 'postcap'} with {websocket['close_code']}")
        lines += ["", f"websocket: {websocket['message_count']} message(s), {ended}"
                      f" (postcapctl request messages {detail['id']})"]
    if detail.get("error"):
        lines += ["", f"error: {detail['error']}"]
    timings = detail.get("timings") or {}
    if timings:
        lines += [
            "",
            "timings: "
            + ", ".join(f"{k[:-3]} {v} ms" for k, v in timings.items() if v is not None),
        ]
    return "\n".join(lines)


def show_diff(diff: dict[str, Any]) -> str:
    """``request diff``: one line per difference, bodies last."""
    if diff.get("same"):
        return f"{diff['a']} and {diff['b']} do not differ"
    lines = [f"--- {diff['a']}", f"+++ {diff['b']}"]
    for key in ("method", "status"):
        if diff.get(key):
            lines.append(f"{key}: {diff[key]['a']} -> {diff[key]['b']}")
    url = diff.get("url")
    if url:
        lines += [f"url: {url['a']}", f"  -> {url['b']}"]
        lines += [f"  {name}: {part['a']} -> {part['b']}" for name, part in url["parts"].items()]
        lines += [f"  query {q['name']} {q['change']}: {q['a']} -> {q['b']}" for q in url["query"]]
    for key in ("request_headers", "response_headers"):
        for change in diff.get(key) or []:
            lines.append(f"{key.replace('_', ' ')[:-1]} {change['name']} {change['change']}: "
                         f"{', '.join(change['a']) or '-'} -> {', '.join(change['b']) or '-'}")
    for key in ("request_body", "response_body"):
        body = diff.get(key)
        if not body:
            continue
        title = key.replace("_", " ")
        if body["kind"] == "json":
            lines.append(f"{title} (JSON):")
            lines += [f"  {c['path']} {c['change']}: {json.dumps(c['a'])} -> {json.dumps(c['b'])}"
                      for c in body["changes"]]
        elif body["kind"] == "text":
            lines += [f"{title} (text):", body["unified"].rstrip("\n")]
        else:
            lines.append(f"{title} (binary): {body['a']['size']} bytes sha256 "
                         f"{body['a']['sha256'][:16]} -> {body['b']['size']} bytes sha256 "
                         f"{body['b']['sha256'][:16]}")
    return "\n".join(lines)


def show_overview(overview: dict[str, Any]) -> str:
    blocks = []
    for key, title in (
        ("by_method", "METHOD"),
        ("by_domain", "DOMAIN"),
        ("by_data_mode", "DATA MODE"),
        ("by_status", "STATUS"),
    ):
        counts = overview.get(key) or {}
        rows = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
        blocks.append(table(rows, [title, "COUNT"]))
    return "\n\n".join(blocks)


def show_status(info: dict[str, Any]) -> str:
    proxy = info["proxy"]
    active = info.get("active_session")
    lines = [
        f"postcap {info['version']}, up {human_ms(info['uptime_s'] * 1000)}",
        f"proxy: port {proxy['port']}, {'enabled' if proxy['enabled'] else 'disabled'}",
        f"data dir: {info['data_dir']}",
    ]
    if active:
        lines.append(
            f"session: {active['name']} ({active['id']}), {active['state']}, "
            f"{active['request_count']} requests, {human_bytes(active['total_bytes'])}"
        )
    else:
        lines.append("session: none active")
    return "\n".join(lines)


def show_cookies(result: dict[str, Any]) -> str:
    return table(
        [
            [
                c.get("id"),
                c.get("domain"),
                c.get("path"),
                c.get("name"),
                str(c.get("value", ""))[:40],
                c.get("expires"),
            ]
            for c in result["items"]
        ],
        ["ID", "DOMAIN", "PATH", "NAME", "VALUE", "EXPIRES"],
    )


# -- progress -----------------------------------------------------------------------------


class Progress:
    """A one-line progress indicator on stderr, only when stderr is a terminal."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if total:
            filled = int(30 * done / total)
            bar = "#" * filled + "." * (30 - filled)
            text = f"\r[{bar}] {human_bytes(done)} / {human_bytes(total)}"
        else:
            text = f"\r{human_bytes(done)} received"
        self.stream.write(text)
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")


# -- commands -----------------------------------------------------------------------------

Handler = Callable[[BlockingClient, argparse.Namespace], tuple[Any, Callable[[Any], str]]]


def _session_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in ("name", "source", "collection"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    if args.save_responses is not None:
        options["save_responses"] = args.save_responses
    if args.capture_cookies is not None:
        options["capture_cookies"] = args.capture_cookies
    if args.organize_by is not None:
        options["organize_by"] = [part for part in args.organize_by.split(",") if part]
    filters: dict[str, Any] = {}
    if args.url_contains is not None:
        filters["url_contains"] = args.url_contains
    if args.url_excludes is not None:
        filters["url_excludes"] = args.url_excludes
    if args.filter_method:
        filters["methods"] = [m.upper() for m in args.filter_method]
    if args.filter_status:
        filters["status_codes"] = [int(s) if s.isdigit() else s for s in args.filter_status]
    if args.exclude_resources:
        filters["exclude_resources"] = args.exclude_resources.split(",")
    if filters:
        options["filters"] = filters
    return options


def cmd_status(client: BlockingClient, args: argparse.Namespace) -> Any:
    return client.server_info(), show_status


def cmd_session(client: BlockingClient, args: argparse.Namespace) -> Any:
    action = args.action
    if action == "start":
        return client.session_start(**_session_options(args)), show_session
    if action in ("pause", "resume", "stop"):
        return (
            client.call(f"session.{action}", **({"id": args.id} if args.id else {})),
            show_session,
        )
    if action == "list":
        result = client.session_list(limit=args.limit, offset=args.offset)
        return (
            result,
            lambda r: session_rows(r["items"]) + f"\n{len(r['items'])} of {r['total']} sessions",
        )
    if action == "show":
        return client.session_get(args.id), lambda s: json.dumps(s, indent=2)
    if action == "update":
        options = _session_options(args)
        if not options:
            raise UsageError("postcapctl session update: give at least one option to change")
        return client.session_update(args.id, **options), show_session
    if action == "delete":
        client.session_delete(args.id)
        return True, lambda _: f"deleted session {args.id}"
    if action == "overview":
        return client.session_overview(args.id), show_overview
    raise UsageError(f"unknown session action {action}")


def cmd_requests(client: BlockingClient, args: argparse.Namespace) -> Any:
    status: Any = None
    if args.status:
        status = [int(s) if s.isdigit() else s for s in args.status]
        status = status[0] if len(status) == 1 else status
    method = None
    if args.method:
        method = (
            args.method[0].upper() if len(args.method) == 1 else [m.upper() for m in args.method]
        )
    result = client.request_list(
        session_id=args.session,
        query=args.query,
        method=method,
        status=status,
        domain=args.domain,
        limit=args.limit,
        offset=args.offset,
    )
    return result, show_requests


def cmd_request(client: BlockingClient, args: argparse.Namespace) -> Any:
    if args.action == "show":
        return client.request_get(args.id), show_detail
    if args.action == "export":
        return client.request_export(args.id, format=args.format), str
    if args.action == "diff":
        return client.request_diff(args.a, args.b), show_diff
    if args.action == "replay":
        return client.request_replay(args.id, use_cookie_jar=args.use_cookie_jar), show_detail
    if args.action == "messages":
        return client.request_messages(args.id, limit=args.limit, offset=args.offset), show_messages
    deleted = client.request_delete(args.ids)
    return deleted, lambda n: f"deleted {n} request(s)"


def cmd_export(client: BlockingClient, args: argparse.Namespace) -> Any:
    output = args.output or f"{args.session}.har"
    progress = Progress()
    partial = output + ".part"
    try:
        with open(partial, "wb") as handle:
            written = client.stream_har(args.session, handle, progress)
        os.replace(partial, output)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    finally:
        progress.finish()
    result = {"path": os.path.abspath(output), "bytes": written}
    return result, lambda r: f"wrote {r['path']} ({human_bytes(r['bytes'])})"


def _write_or_print(output: str | None, text: str) -> dict[str, Any] | str:
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
        return {"path": os.path.abspath(output), "bytes": len(text.encode("utf-8"))}
    return text


def cmd_collection(client: BlockingClient, args: argparse.Namespace) -> Any:
    action = args.action
    if action == "create":
        return client.collection_create(args.name), lambda c: f"{c['id']}  {c['name']}"
    if action == "list":
        return client.collection_list(), lambda r: table(
            [[c["id"], c["name"], c.get("request_count")] for c in r["items"]],
            ["ID", "NAME", "REQUESTS"],
        )
    if action == "get":
        collection = client.collection_get(args.id)
        if args.output:
            written = _write_or_print(args.output, json.dumps(collection, indent=2))
            return written, lambda r: f"wrote {r['path']}"
        return collection, lambda c: json.dumps(c, indent=2)
    if action == "add":
        organize = args.organize_by.split(",") if args.organize_by else None
        added = client.collection_add(args.id, args.request_ids, organize_by=organize)
        return added, lambda n: f"added {n} request(s)"
    client.collection_delete(args.id)
    return True, lambda _: f"deleted collection {args.id}"


def cmd_cookies(client: BlockingClient, args: argparse.Namespace) -> Any:
    if args.action == "list":
        return client.cookie_list(session_id=args.session), show_cookies
    return cmd_jar(client, args)


def cmd_jar(client: BlockingClient, args: argparse.Namespace) -> Any:
    action = args.jar_action
    if action == "list":
        return client.cookiejar_list(domain=args.domain), show_cookies
    if action == "add":
        return client.cookiejar_add(cookie_ids=args.cookie_ids), lambda n: f"added {n} cookie(s)"
    if action == "export":
        exported = client.cookiejar_export(format=args.format)
        text = exported if isinstance(exported, str) else json.dumps(exported, indent=2)
        if args.output:
            written = _write_or_print(args.output, text)
            return written, lambda r: f"wrote {r['path']}"
        return exported, lambda _: text.rstrip("\n")
    deleted = client.cookiejar_delete(domain=args.domain, name=args.name)
    return deleted, lambda n: f"deleted {n} cookie(s)"


def cmd_ca(client: BlockingClient, args: argparse.Namespace) -> Any:
    ca = client.ca_get()
    if args.output:
        with open(args.output, "w", encoding="ascii") as handle:
            handle.write(ca["pem"])
        result = {"path": os.path.abspath(args.output), "sha256": ca["sha256"]}
    else:
        info = client.server_info()
        result = {
            "path": os.path.join(info["data_dir"], "ca", "postcap-ca.pem"),
            "sha256": ca["sha256"],
        }
    return result, lambda r: r["path"]


# -- parser -------------------------------------------------------------------------------


def _add_session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name")
    parser.add_argument("--source", choices=["proxy", "interceptor"])
    parser.add_argument(
        "--save-responses", dest="save_responses", action="store_true", default=None
    )
    parser.add_argument("--no-save-responses", dest="save_responses", action="store_false")
    parser.add_argument(
        "--capture-cookies", dest="capture_cookies", action="store_true", default=None
    )
    parser.add_argument("--no-capture-cookies", dest="capture_cookies", action="store_false")
    parser.add_argument("--collection", help="collection id that also receives captures")
    parser.add_argument("--organize-by", help="comma-separated: domain,endpoint")
    parser.add_argument("--url-contains")
    parser.add_argument("--url-excludes")
    parser.add_argument(
        "--filter-method", action="append", help="capture only this method (repeatable)"
    )
    parser.add_argument(
        "--filter-status", action="append", help="capture only this status or class like 2xx"
    )
    parser.add_argument("--exclude-resources", help="comma-separated subset of image,js,css")


def _add_jar_commands(parser: argparse.ArgumentParser) -> None:
    jar = parser.add_subparsers(dest="jar_action", required=True, parser_class=Parser)
    listing = jar.add_parser("list", help="cookies in the jar")
    listing.add_argument("--domain")
    adding = jar.add_parser("add", help="add captured cookies to the jar")
    adding.add_argument("cookie_ids", nargs="+")
    export = jar.add_parser("export", help="the jar as cookies.txt or JSON")
    export.add_argument("--format", choices=["netscape", "json"], default="netscape")
    export.add_argument("-o", "--output")
    delete = jar.add_parser("delete", help="remove cookies from the jar")
    delete.add_argument("--domain")
    delete.add_argument("--name")


def build_parser() -> Parser:
    parser = Parser(
        prog="postcapctl",
        description="Control a running postcap server.",
        epilog="exit codes: 0 ok, 1 server error (or drift, for api diff), 2 usage, 3 unreachable or refused token",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument(
        "--control",
        metavar="ENDPOINT",
        help="the server's control endpoint, as given to its --control (tcp:PORT:interface=ADDR, "
        "unix:PATH, ssl:PORT) or a URL (http://HOST:PORT) "
        "[default: what the running server wrote in DATA_DIR/server.json]",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="the server's data dir, for discovery [default: $POSTCAP_HOME or ~/.postcap]",
    )
    parser.add_argument(
        "--token-file", metavar="FILE",
        help="token file [default: the one the server names, else DATA_DIR/control.token]",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    commands.add_parser("status", help="server, proxy and active session").set_defaults(
        handler=cmd_status
    )
    add_stats_parser(commands)

    session = commands.add_parser("session", help="capture sessions")
    session.set_defaults(handler=cmd_session)
    actions = session.add_subparsers(dest="action", required=True, parser_class=Parser)
    _add_session_options(actions.add_parser("start", help="start capturing"))
    for name in ("pause", "resume", "stop"):
        actions.add_parser(name, help=f"{name} a session (default: the active one)").add_argument(
            "id", nargs="?"
        )
    listing = actions.add_parser("list", help="sessions, newest first")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--offset", type=int)
    actions.add_parser("show", help="one session").add_argument("id")
    update = actions.add_parser("update", help="rename or change options")
    update.add_argument("id")
    _add_session_options(update)
    actions.add_parser("delete", help="delete a stopped session").add_argument("id")
    actions.add_parser("overview", help="counts by method, domain, data mode, status").add_argument(
        "id", nargs="?"
    )

    requests = commands.add_parser("requests", help="captured requests as a table")
    requests.set_defaults(handler=cmd_requests)
    requests.add_argument("--session", help="session id")
    requests.add_argument("--query", help="substring of the URL")
    requests.add_argument("--method", action="append", help="repeatable")
    requests.add_argument("--status", action="append", help="code or class like 4xx; repeatable")
    requests.add_argument("--domain")
    requests.add_argument("--limit", type=int)
    requests.add_argument("--offset", type=int)

    request = commands.add_parser("request", help="one captured request")
    request.set_defaults(handler=cmd_request)
    request_actions = request.add_subparsers(dest="action", required=True, parser_class=Parser)
    request_actions.add_parser("show").add_argument("id")
    replay = request_actions.add_parser("replay")
    replay.add_argument("id")
    replay.add_argument("--use-cookie-jar", action="store_true")
    as_code = request_actions.add_parser("export", help="the request as a command or snippet")
    as_code.add_argument("id")
    as_code.add_argument("--format", choices=["curl", "httpie", "python", "fetch"], default="curl")
    compare = request_actions.add_parser("diff", help="what differs between two requests")
    compare.add_argument("a")
    compare.add_argument("b")
    request_actions.add_parser("delete").add_argument("ids", nargs="+")
    messages = request_actions.add_parser("messages", help="messages of a WebSocket request")
    messages.add_argument("id")
    messages.add_argument("--limit", type=int)
    messages.add_argument("--offset", type=int)

    export = commands.add_parser("export", help="export a session")
    export.set_defaults(handler=cmd_export)
    export_formats = export.add_subparsers(dest="format", required=True, parser_class=Parser)
    har = export_formats.add_parser("har", help="HAR 1.2, streamed from the server")
    har.add_argument("session")
    har.add_argument("-o", "--output", help="file to write (default: SESSION.har)")
    add_openapi_export(export_formats, Parser)
    add_api_commands(commands, Parser)

    collection = commands.add_parser("collection", help="Postman collections")
    collection.set_defaults(handler=cmd_collection)
    collection_actions = collection.add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    collection_actions.add_parser("create").add_argument("name")
    collection_actions.add_parser("list")
    get = collection_actions.add_parser("get")
    get.add_argument("id")
    get.add_argument("-o", "--output")
    add = collection_actions.add_parser("add")
    add.add_argument("id")
    add.add_argument("request_ids", nargs="+")
    add.add_argument("--organize-by", help="comma-separated: domain,endpoint")
    collection_actions.add_parser("delete").add_argument("id")

    cookies = commands.add_parser("cookies", help="captured cookies and the cookie jar")
    cookies.set_defaults(handler=cmd_cookies)
    cookie_actions = cookies.add_subparsers(dest="action", required=True, parser_class=Parser)
    cookie_actions.add_parser("list").add_argument("--session", help="session id")
    _add_jar_commands(cookie_actions.add_parser("jar", help="the cookie jar"))

    jar = commands.add_parser("jar", help="the cookie jar (same as: cookies jar)")
    jar.set_defaults(handler=cmd_jar)
    _add_jar_commands(jar)

    ca = commands.add_parser("ca", help="print the CA certificate's path; -o writes the PEM")
    ca.set_defaults(handler=cmd_ca)
    ca.add_argument("-o", "--output")
    return parser


def split_global_options(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Move ``--json``, ``--control``, ``--data-dir`` and ``--token-file`` to the front so they
    are accepted before or after the subcommand."""
    front: list[str] = []
    rest: list[str] = []
    items = iter(argv)
    for item in items:
        name = item.split("=", 1)[0]
        if item == "--":
            rest.append(item)
            rest.extend(items)
            break
        if name in GLOBAL_OPTIONS:
            front.append(item)
            if GLOBAL_OPTIONS[name] and "=" not in item:
                value = next(items, None)
                if value is None:
                    raise UsageError(f"postcapctl: {name} needs a value")
                front.append(value)
        else:
            rest.append(item)
    return front, rest


def main(argv: Sequence[str] | None = None, stdout: Any = None, stderr: Any = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        front, rest = split_global_options(list(sys.argv[1:] if argv is None else argv))
        args = build_parser().parse_args(front + rest)
        endpoint, token_file = resolve(args.control, args.data_dir, args.token_file)
        client = BlockingClient(endpoint.url, read_token(token_file))
        result, render = args.handler(client, args)
    except UsageError as exc:
        print(str(exc), file=stderr)
        return EXIT_USAGE
    except BadControlEndpoint as exc:
        print(f"postcapctl: {exc}", file=stderr)
        return EXIT_USAGE
    except (ServerUnreachable, AuthenticationFailed, TokenUnreadable) as exc:
        print(f"postcapctl: {exc}", file=stderr)
        return EXIT_UNREACHABLE
    except PostcapError as exc:
        print(f"postcapctl: {exc}", file=stderr)
        return EXIT_SERVER_ERROR
    except OSError as exc:
        print(f"postcapctl: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=stderr)
        return EXIT_SERVER_ERROR
    except KeyboardInterrupt:
        print("postcapctl: interrupted", file=stderr)
        return 130
    except Exception as exc:  # a bug here must still be one line, not a traceback
        print(f"postcapctl: unexpected {type(exc).__name__}: {exc}", file=stderr)
        return EXIT_SERVER_ERROR
    if args.json:
        print(json.dumps(result, indent=2), file=stdout)
    else:
        print(render(result), file=stdout)
    return int(getattr(args, "exit_status", EXIT_OK))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
