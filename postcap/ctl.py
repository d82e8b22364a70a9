"""``postcapctl``: postcap's control channel from a terminal or a script.

A thin JSON-RPC client over :class:`postcap.client.BlockingClient`.  ``--json``
prints each result as JSON; otherwise results are short human tables.

Exit codes: 0 success; 1 the server answered with an error (its message is
printed), or ``api diff`` found drift; 2 usage error; 3 the server cannot be reached, or the token was refused
or cannot be read.  Errors are a single line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import base64
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
from postcap._version import __version__
from postcap.ctl_actions import (
    add_collection_export,
    add_cookie_parsers,
    add_interceptor_parser,
    add_proxy_parser,
    cmd_session_clear,
    follow,
    jar_cookie,
)
from postcap.ctl_api import add_api_commands, add_openapi_export
from postcap import ctl_output
from postcap.ctl_output import (
    colour_wanted,
    shown_of,
    table,
    human_bytes,
    human_ms,
    session_rows,
    show_session,
    request_row,
    request_line,
    show_requests,
    show_messages,
    show_detail,
    show_diff,
    show_overview,
    show_status,
    show_cookies,
    Progress,
)
from postcap.ctl_session_options import add_session_options, session_options
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


# -- commands -----------------------------------------------------------------------------

Handler = Callable[[BlockingClient, argparse.Namespace], tuple[Any, Callable[[Any], str]]]


def cmd_status(client: BlockingClient, args: argparse.Namespace) -> Any:
    return client.server_info(), show_status


def cmd_session(client: BlockingClient, args: argparse.Namespace) -> Any:
    action = args.action
    if action == "start":
        return client.session_start(**session_options(args)), show_session
    if action in ("pause", "resume", "stop"):
        return (
            client.call(f"session.{action}", **({"id": args.id} if args.id else {})),
            show_session,
        )
    if action == "list":
        result = client.session_list(limit=args.limit, offset=args.offset)
        return (
            result,
            lambda r: session_rows(r["items"]) + "\n" + shown_of(len(r["items"]), r["total"], "sessions"),
        )
    if action == "show":
        return client.session_get(args.id), lambda s: json.dumps(s, indent=2)
    if action == "update":
        options = session_options(args)
        if not options:
            raise UsageError("postcapctl session update: give at least one option to change")
        return client.session_update(args.id, **options), show_session
    if action == "delete":
        client.session_delete(args.id)
        return True, lambda _: f"deleted session {args.id}"
    if action == "overview":
        return client.session_overview(args.id), show_overview
    if action == "clear":
        return cmd_session_clear(client, args)
    raise UsageError(f"unknown session action {action}")


def epoch_or_text(value: str | None) -> Any:
    """``--since 1700000000`` as epoch seconds, anything else as ISO 8601 text."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


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
    if args.follow:
        ignored = [f"--{name.replace('_', '-')}" for name in
                   ("query", "search_in", "method", "status", "domain", "since", "until", "order",
                    "limit", "offset") if getattr(args, name) is not None]
        if ignored:
            raise UsageError(f"postcapctl requests --follow: takes only --session, not "
                             f"{', '.join(ignored)}".replace("--search-in", "--in"))
        return follow(client, args, request_line)
    where = [part for part in (args.search_in or "").split(",") if part]
    result = client.request_list(
        session_id=args.session,
        query=args.query,
        method=method,
        status=status,
        domain=args.domain,
        limit=args.limit,
        offset=args.offset,
        since=epoch_or_text(args.since),
        until=epoch_or_text(args.until),
        order=args.order,
        **({"in": where} if where else {}),
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
        return client.request_replay(args.id, use_cookie_jar=args.use_cookie_jar,
                                     **replay_overrides(args)), show_detail
    if args.action == "messages":
        return client.request_messages(args.id, limit=args.limit, offset=args.offset), show_messages
    deleted = client.request_delete(args.ids)
    return deleted, lambda n: f"deleted {n} request(s)"


def replay_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``request replay`` options as ``request.replay`` params: ``--header 'N: V'`` sets a
    header, ``--header 'N:'`` removes it."""
    overrides: dict[str, Any] = {}
    if args.header:
        headers: dict[str, str | None] = {}
        for item in args.header:
            name, colon, value = item.partition(":")
            if not colon or not name.strip():
                raise UsageError(f"postcapctl: --header {item!r}: give it as 'Name: value'")
            headers[name.strip()] = value.strip() or None
        overrides["headers"] = headers
    for name in ("url", "method", "body"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.body_file is not None:
        with open(args.body_file, "rb") as handle:
            overrides["body"] = {"encoding": "base64",
                                 "text": base64.b64encode(handle.read()).decode("ascii")}
    return overrides


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
        given = {"session_id": args.session, "limit": args.limit, "offset": args.offset}
        found = client.call("cookie.list", **{k: v for k, v in given.items() if v is not None})
        return found, show_cookies
    return cmd_jar(client, args)


def cmd_jar(client: BlockingClient, args: argparse.Namespace) -> Any:
    action = args.jar_action
    if action == "list":
        return client.cookiejar_list(domain=args.domain), show_cookies
    if action == "add":
        if bool(args.cookie_ids) == bool(args.name):
            raise UsageError("postcapctl jar add: give captured cookie ids, or --name and --domain")
        if args.name and not args.domain:
            raise UsageError("postcapctl jar add: --name needs --domain")
        params = ({"cookie_ids": args.cookie_ids} if args.cookie_ids
                  else {"cookies": [jar_cookie(args)]})
        return client.cookiejar_add(**params), lambda n: f"added {n} cookie(s)"
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


def _add_jar_commands(parser: argparse.ArgumentParser) -> None:
    jar = parser.add_subparsers(dest="jar_action", required=True, parser_class=Parser)
    listing = jar.add_parser("list", help="cookies in the jar")
    listing.add_argument("--domain")
    adding = jar.add_parser(
        "add", help="add captured cookies (by id), or one cookie given with --name/--domain"
    )
    adding.add_argument("cookie_ids", nargs="*")
    adding.add_argument("--name", help="a new cookie's name (with --value, --domain)")
    adding.add_argument("--value")
    adding.add_argument("--domain", help="a leading dot makes a domain cookie")
    adding.add_argument("--path")
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
    parser.add_argument("--version", action="version", version=f"postcapctl {__version__}")
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
    add_session_options(actions.add_parser("start", help="start capturing"))
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
    add_session_options(update)
    actions.add_parser("delete", help="delete a stopped session").add_argument("id")
    actions.add_parser(
        "clear", help="delete every request of a session, keep the session (default: active)"
    ).add_argument("id", nargs="?")
    actions.add_parser("overview", help="counts by method, domain, data mode, status").add_argument(
        "id", nargs="?"
    )

    requests = commands.add_parser("requests", help="captured requests as a table")
    requests.set_defaults(handler=cmd_requests)
    requests.add_argument("--session", help="session id")
    requests.add_argument("--query", help="substring of the URL (and, with --in, more)")
    requests.add_argument("--in", dest="search_in", metavar="WHERE",
                          help="comma-separated: headers,body: where else --query looks")
    requests.add_argument("--since", help="ISO 8601 time or epoch seconds (inclusive)")
    requests.add_argument("--until", help="ISO 8601 time or epoch seconds (inclusive)")
    requests.add_argument("--order", choices=["asc", "desc"], help="desc: newest first")
    requests.add_argument("--follow", "-f", action="store_true",
                          help="print new requests as they are captured, until Ctrl-C")
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
    replay.add_argument("--header", "-H", action="append",
                        help="'Name: value' sets, 'Name:' removes; repeatable")
    replay.add_argument("--body", help="the body to send instead (text)")
    replay.add_argument("--body-file", help="the body to send instead, read from a file")
    replay.add_argument("--url", help="another absolute http(s) URL")
    replay.add_argument("--method", help="another method")
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
    add_collection_export(export_formats)
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
    cookie_list = cookie_actions.add_parser("list", help="cookies captured in a session")
    cookie_list.add_argument("--session", help="session id [default: the active session]")
    cookie_list.add_argument("--limit", type=int)
    cookie_list.add_argument("--offset", type=int)
    add_cookie_parsers(cookie_actions)
    _add_jar_commands(cookie_actions.add_parser("jar", help="the cookie jar"))

    jar = commands.add_parser("jar", help="the cookie jar (same as: cookies jar)")
    jar.set_defaults(handler=cmd_jar)
    _add_jar_commands(jar)

    ca = commands.add_parser("ca", help="print the CA certificate's path; -o writes the PEM")
    ca.set_defaults(handler=cmd_ca)
    ca.add_argument("-o", "--output")
    add_proxy_parser(commands, Parser)
    add_interceptor_parser(commands, Parser)
    completion = commands.add_parser(
        "completion", help="print a shell completion script: bash, zsh or fish",
        description="eval \"$(postcapctl completion bash)\" in ~/.bashrc; "
        "postcapctl completion zsh > ~/.zfunc/_postcapctl; "
        "postcapctl completion fish > ~/.config/fish/completions/postcapctl.fish")
    completion.add_argument("shell", choices=["bash", "zsh", "fish"])
    completion.set_defaults(handler=cmd_completion, offline=True)
    return parser


def cmd_completion(client: Any, args: argparse.Namespace) -> Any:
    """The completion script, generated by ``shtab`` from this very parser."""
    import shtab

    script = shtab.complete(build_parser(), shell=args.shell)
    args.json = False
    return script, lambda text: text.rstrip("\n")


#: Server parameter names that postcapctl sets with another option or an argument.
CLI_NAMES = {"session_id": "--session", "request_ids": "REQUEST_ID", "cookie_ids": "COOKIE_ID",
             "ids": "ID", "id": "ID", "in": "--in", "a": "A", "b": "B"}


def in_cli_words(error: PostcapError) -> str:
    """The server's error message with its parameter names said as postcapctl options."""
    message = str(error)
    if "'(active)' not found" in message or "required when no session is active" in message:
        return ("no active session: start one (postcapctl session start) or name one with "
                "--session or a session ID")
    param = error.data.get("param") if isinstance(error.data, dict) else None
    if isinstance(param, str) and f"'{param}'" in message:
        option = CLI_NAMES.get(param, "--" + param.replace("_", "-"))
        message = message.replace(f"parameter '{param}'", option).replace(f"'{param}'", option)
    return message


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
        ctl_output.COLOUR = colour_wanted(stdout, args.json)
        if getattr(args, "offline", False):
            result, render = args.handler(None, args)
        else:
            endpoint, token_file = resolve(args.control, args.data_dir, args.token_file)
            client = BlockingClient(endpoint.url, read_token(token_file))
            result, render = args.handler(client, args)
    except UsageError as exc:
        print(str(exc), file=stderr)
        return EXIT_USAGE
    except BadControlEndpoint as exc:
        print(f"postcapctl: {exc}", file=stderr)
        return EXIT_USAGE
    except TokenUnreadable as exc:
        print(f"postcapctl: {exc} (is the server running with this data dir? "
              "set POSTCAP_HOME or pass --data-dir, or --token-file)", file=stderr)
        return EXIT_UNREACHABLE
    except (ServerUnreachable, AuthenticationFailed) as exc:
        print(f"postcapctl: {exc}", file=stderr)
        return EXIT_UNREACHABLE
    except PostcapError as exc:
        print(f"postcapctl: {in_cli_words(exc)}", file=stderr)
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
    text = json.dumps(result, indent=2) if args.json else render(result)
    if text:
        print(text, file=stdout)
    return int(getattr(args, "exit_status", EXIT_OK))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
