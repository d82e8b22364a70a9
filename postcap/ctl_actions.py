"""``postcapctl`` commands beyond the basics: proxy on/off, ``session clear``, cookie sync,
hand-made jar cookies, captured-cookie deletion, the live request tail (``requests
--follow``) and the one-step ``export collection``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from postcap.client import BlockingClient
from postcap.ctl_output import Progress

#: Requests per ``collection.add`` call (and per ``request.list`` page) of ``export collection``.
BATCH = 1000

Render = Callable[[Any], str]


def show_proxy(proxy: dict[str, Any]) -> str:
    return f"proxy: port {proxy['port']}, {'enabled' if proxy['enabled'] else 'disabled'}"


def cmd_proxy(client: BlockingClient, args: argparse.Namespace) -> tuple[Any, Render]:
    if args.action == "enable":
        params = {} if args.port is None else {"port": args.port}
        return client.call("proxy.enable", **params), show_proxy
    return client.call(f"proxy.{args.action}"), show_proxy


def add_proxy_parser(commands: Any, parser_class: type) -> None:
    proxy = commands.add_parser("proxy", help="the proxy port: status, enable, disable")
    proxy.set_defaults(handler=cmd_proxy)
    actions = proxy.add_subparsers(dest="action", required=True, parser_class=parser_class)
    actions.add_parser("status", help="whether the proxy port is listening")
    enable = actions.add_parser("enable", help="listen again (on --port, or the last port)")
    enable.add_argument("--port", type=int, help="0 picks a free port")
    actions.add_parser("disable", help="stop accepting new proxy connections")


def show_sync(sync: dict[str, Any]) -> str:
    state = "enabled" if sync["enabled"] else "disabled"
    return f"cookie sync {state}: {', '.join(sync['domains']) or 'no domains'}"


def cmd_cookie_sync(client: BlockingClient, args: argparse.Namespace) -> tuple[Any, Render]:
    params: dict[str, Any] = {}
    if args.enabled is not None:
        params["enabled"] = args.enabled
    if args.domains is not None:
        params["domains"] = [domain for domain in args.domains.split(",") if domain]
    if params:
        return client.call("cookiesync.set", **params), show_sync
    return client.call("cookiesync.get"), show_sync


def cmd_cookie_delete(client: BlockingClient, args: argparse.Namespace) -> tuple[Any, Render]:
    deleted = client.call("cookie.delete", ids=args.ids)
    return deleted, lambda n: f"deleted {n} captured cookie(s)"


def add_cookie_parsers(cookie_actions: Any) -> None:
    """``cookies delete IDS`` and ``cookies sync [--enable|--disable] [--domains A,B]``."""
    delete = cookie_actions.add_parser("delete", help="delete captured cookies by id")
    delete.add_argument("ids", nargs="+")
    delete.set_defaults(handler=cmd_cookie_delete)
    sync = cookie_actions.add_parser(
        "sync", help="show, or with options set, which domains' cookies sync into the jar"
    )
    sync.add_argument("--enable", dest="enabled", action="store_true", default=None)
    sync.add_argument("--disable", dest="enabled", action="store_false")
    sync.add_argument("--domains", help="comma-separated host names (replaces the list)")
    sync.set_defaults(handler=cmd_cookie_sync)


def jar_cookie(args: argparse.Namespace) -> dict[str, Any]:
    """The hand-made cookie of ``jar add --name N --value V --domain D [--path P]``."""
    cookie: dict[str, Any] = {"name": args.name, "value": args.value or "", "domain": args.domain}
    if args.path:
        cookie["path"] = args.path
    return cookie


def cmd_session_clear(client: BlockingClient, args: argparse.Namespace) -> tuple[Any, Render]:
    session = client.call("session.clear", **({"id": args.id} if args.id else {}))
    return session, lambda s: f"cleared session {s['id']} ({s['name']}): 0 requests"


def cmd_export_collection(client: BlockingClient, args: argparse.Namespace) -> tuple[Any, Render]:
    """Create (or reuse) the collection named after the session, add every request of the
    session, and write the Postman document."""
    session = client.session_get(args.session)
    name = args.name or session["name"] or session["id"]
    existing = [c for c in client.collection_list()["items"] if c["name"] == name]
    collection = existing[0] if existing else client.collection_create(name)
    organize = [part for part in (args.organize_by or "").split(",") if part]
    ids: list[str] = []
    offset = 0
    while True:
        page = client.request_list(session_id=session["id"], limit=BATCH, offset=offset)
        ids += [item["id"] for item in page["items"]]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            break
    added = 0
    progress = Progress(noun="requests")
    try:
        for start in range(0, len(ids), BATCH):
            added += client.collection_add(collection["id"], ids[start:start + BATCH],
                                           organize_by=organize)
            progress(min(start + BATCH, len(ids)), len(ids))
    finally:
        progress.finish()
    document = client.collection_get(collection["id"])
    output = args.output or f"{name}.postman_collection.json".replace(os.sep, "_")
    with open(output, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
    result = {"path": os.path.abspath(output), "collection_id": collection["id"],
              "name": name, "added": added, "reused": bool(existing)}
    return result, lambda r: (f"wrote {r['path']} (collection {r['name']!r}, "
                              f"{r['added']} request(s) added{', reused' if r['reused'] else ''})")


def add_collection_export(export_formats: Any) -> None:
    collection = export_formats.add_parser(
        "collection", help="a session as a Postman collection, in one step")
    collection.add_argument("session")
    collection.add_argument("--name", help="collection name [default: the session's name]")
    collection.add_argument("--organize-by", help="comma-separated: domain,endpoint")
    collection.add_argument("-o", "--output",
                            help="file to write [default: NAME.postman_collection.json]")
    collection.set_defaults(handler=cmd_export_collection)


def follow(client: BlockingClient, args: argparse.Namespace, line: Callable[[dict[str, Any]], str],
           stdout: Any = None) -> tuple[Any, Render]:
    """Print each newly captured transaction as it arrives, until interrupted or the
    server ends the stream (``--follow``)."""
    stdout = stdout or sys.stdout
    shown = 0
    try:
        for event in client.events(types="transaction", timeout=None):
            summary = event.data
            if event.event != "transaction" or not isinstance(summary, dict):
                continue
            if args.session and summary.get("session_id") != args.session:
                continue
            stdout.write((json.dumps(summary) if args.json else line(summary)) + "\n")
            stdout.flush()
            shown += 1
    except KeyboardInterrupt:
        pass
    args.json = False
    return shown, lambda n: ""


def show_interceptor(status: dict[str, Any]) -> str:
    link = "connected" if status.get("connected") else "not connected"
    secure = ", secure" if status.get("secure") else ""
    key = "custom key" if status.get("custom_key") else "default key"
    lines = [f"browser extension: {link}{secure}, {key}"]
    counts = ("captured_requests", "ignored_requests", "authenticated_frames", "rejected_frames")
    lines += [f"{name.replace('_', ' ')}: {status[name]}" for name in counts if name in status]
    if status.get("last_error"):
        lines.append(f"last error: {status['last_error']}")
    return "\n".join(lines)


def cmd_interceptor(client: BlockingClient, args: argparse.Namespace) -> tuple[Any, Render]:
    if args.action == "set-key":
        key = sys.stdin.readline().strip() if args.key == "-" else args.key
        client.call("interceptor.set_key", key=key)
    elif args.action == "clear-key":
        client.call("interceptor.clear_key")
    return client.call("interceptor.status"), show_interceptor


def add_interceptor_parser(commands: Any, parser_class: type) -> None:
    interceptor = commands.add_parser("interceptor", help="the browser extension's link")
    interceptor.set_defaults(handler=cmd_interceptor)
    actions = interceptor.add_subparsers(dest="action", required=True, parser_class=parser_class)
    actions.add_parser("status", help="whether the extension is connected, and its counts")
    set_key = actions.add_parser("set-key", help="set the custom key the extension must use")
    set_key.add_argument("key", help="at least 10 letters or digits; - reads it from stdin")
    actions.add_parser("clear-key", help="back to the default key")
