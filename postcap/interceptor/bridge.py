"""``postcap-bridge``: the native-messaging host, and its install/uninstall/doctor commands.

As a host (Chrome starts it with the extension's origin as first argument, or
``postcap-bridge host``) it reads frames from the extension on stdin and
forwards each sealed frame, still encrypted, to the running server
(``interceptor.submit``), writing the server's reply back; every second it
asks the server for the extension's settings (``interceptor.config``) and
pushes them when they change.  Logs go to stderr, never stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any, Awaitable, Callable

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from postcap.interceptor import hosts
from postcap.interceptor.extension_id import EXTENSION_ID, HOST_NAME, extension_dir, extension_origin
from postcap.interceptor.framing import NativeMessagingProtocol, error_message
from postcap.interceptor.locate import ServerLocation, ServerNotFound, http_client, locate_server

POLL_S = 1.0
RPC_TIMEOUT_S = 10.0

RPCCall = Callable[[str, dict[str, Any]], Awaitable[Any]]


class ServerError(Exception):
    """The server could not be reached or answered with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TreqRPC:
    """JSON-RPC over the control channel with the bearer token, finding the server anew
    after a failure (it may have restarted on another port)."""

    def __init__(self, data_dir: str | None, token_file: str | None) -> None:
        self.data_dir = data_dir
        self.token_file = token_file
        self._location: ServerLocation | None = None
        self._ids = 0

    async def __call__(self, method: str, params: dict[str, Any]) -> Any:
        try:
            location = self._location or locate_server(self.data_dir, self.token_file)
        except ServerNotFound as exc:
            raise ServerError(exc.code, str(exc)) from exc
        self._ids += 1
        try:
            response = await http_client(location).post(
                location.request_url,
                json={"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params},
                headers={"Authorization": f"Bearer {location.token}"},
                timeout=RPC_TIMEOUT_S,
            )
            if response.code == 401:
                raise ServerError("TOKEN_REJECTED", "the server rejected the control token")
            answer = await response.json()
        except ServerError:
            self._location = None
            raise
        except Exception as exc:
            self._location = None
            raise ServerError("SERVER_UNREACHABLE", f"postcap at {location.rpc_url}: {exc}") from exc
        self._location = location
        if "error" in answer:
            error = answer["error"]
            raise ServerError("SERVER_ERROR", f"{error.get('code')}: {error.get('message')}")
        return answer["result"]


class Bridge:
    """Relays between the extension (framed stdio) and the server (JSON-RPC)."""

    _log = Logger()

    def __init__(self, reactor: Any, call: RPCCall, origin: str | None = None) -> None:
        self._reactor = reactor
        self._call = call
        self.origin = origin
        self.bridge_id = uuid.uuid4().hex
        self.protocol = NativeMessagingProtocol(self.on_message, self.on_close)
        self._poll = LoopingCall(lambda: ensureDeferred(self._push_config()))
        self._poll.clock = reactor
        self._digest: str | None = None
        self._server_ok: bool | None = None
        self.closed = False

    def start(self) -> None:
        ensureDeferred(self._announce("connect"))
        self._poll.start(POLL_S, now=True)

    def on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "sealed":
            kind = message.get("type")
            self.protocol.send(error_message(
                "unexpected_message", f"the bridge only relays sealed frames, not {kind!r}"))
            return
        ensureDeferred(self._forward(message))

    async def _forward(self, frame: dict[str, Any]) -> None:
        try:
            result = await self._call(
                "interceptor.submit", {"frame": frame, "bridge_id": self.bridge_id})
        except ServerError as exc:
            self._server_failed(exc, always=True)
            return
        reply = result.get("reply") if isinstance(result, dict) else None
        if reply is not None:
            self.protocol.send(reply)

    async def _announce(self, event: str) -> None:
        try:
            await self._call("interceptor.bridge",
                             {"event": event, "bridge_id": self.bridge_id, "origin": self.origin})
        except ServerError as exc:
            self._log.warn("cannot tell the server that the bridge {event}s: {error}",
                           event=event, error=str(exc))

    async def _push_config(self) -> None:
        try:
            result = await self._call("interceptor.config", {"bridge_id": self.bridge_id})
        except ServerError as exc:
            self._server_failed(exc)
            return
        if self._server_ok is False:
            self._digest = None  # the server came back, perhaps with other settings
        self._server_ok = True
        if result["digest"] != self._digest:
            self._digest = result["digest"]
            self.protocol.send(result["frame"])

    def _server_failed(self, exc: ServerError, always: bool = False) -> None:
        if always or self._server_ok is not False:
            self._log.warn("postcap server: {error}", error=str(exc))
            self.protocol.send(error_message(exc.code.lower(), str(exc)))
        self._server_ok = False

    def on_close(self) -> None:
        """The browser closed the port: tell the server (bounded) and exit."""
        if self.closed:
            return
        self.closed = True
        if self._poll.running:
            self._poll.stop()
        done = ensureDeferred(self._announce("disconnect"))
        timeout = self._reactor.callLater(3.0, done.cancel)
        done.addBoth(lambda _: timeout.cancel() if timeout.active() else None)
        done.addBoth(lambda _: self._reactor.stop() if self._reactor.running else None)


def run_host(data_dir: str | None, token_file: str | None, origin: str | None) -> int:
    from twisted.internet import reactor, stdio
    from twisted.logger import LogLevel, LogLevelFilterPredicate, FilteringLogObserver
    from twisted.logger import globalLogBeginner, textFileLogObserver

    observer = FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.info)])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    bridge = Bridge(reactor, TreqRPC(data_dir, token_file), origin)
    stdio.StandardIO(bridge.protocol, reactor=reactor)
    reactor.callWhenRunning(bridge.start)
    reactor.run()
    return 0


# -- doctor ------------------------------------------------------------------------------


def _rpc_blocking(location: ServerLocation, method: str) -> Any:
    from postcap.client import AuthenticationFailed, BlockingClient, PostcapError, ServerUnreachable

    client = BlockingClient(location.endpoint.url, location.token, timeout=5)
    try:
        return client.call(method)
    except AuthenticationFailed as exc:
        raise ServerNotFound("TOKEN_REJECTED", "the server rejected the control token") from exc
    except ServerUnreachable as exc:
        raise ServerNotFound("SERVER_UNREACHABLE", str(exc)) from exc
    except PostcapError as exc:
        raise ServerNotFound("SERVER_ERROR", exc.message) from exc


def diagnose(browsers: list[str], user_data: str | None, data_dir: str | None,
             token_file: str | None) -> tuple[list[tuple[str, str]], list[str]]:
    """``(problems, notes)``: problems are ``(CODE, explanation)``."""
    problems: list[tuple[str, str]] = []
    notes = [f"extension id {EXTENSION_ID}; unpacked extension in {extension_dir()}"]
    found_browser = False
    for browser in browsers:
        entry = hosts.BROWSERS[browser]
        path = hosts.manifest_path(browser, user_data)
        if not (hosts.browser_installed(browser) or path.exists() or user_data):
            continue
        found_browser = True
        if not path.exists():
            problems.append(("MANIFEST_MISSING", f"{entry.name}: no host manifest at {path}; "
                             f"run postcap-bridge install --browser {browser}"))
            continue
        try:
            manifest = json.loads(path.read_text("utf-8"))
            executable = manifest["path"]
            origins = manifest["allowed_origins"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(("MANIFEST_INVALID", f"{entry.name}: {path} is not a valid manifest: {exc}"))
            continue
        if manifest.get("name") != HOST_NAME:
            problems.append(("MANIFEST_INVALID", f"{entry.name}: {path} names {manifest.get('name')!r}"))
        if not (os.path.isabs(executable) and os.path.isfile(executable)
                and os.access(executable, os.X_OK)):
            problems.append(("HOST_NOT_EXECUTABLE", f"{entry.name}: the host {executable} is missing,"
                             " not absolute or not executable; run postcap-bridge install again"))
        if extension_origin() not in origins:
            notes.append(f"{entry.name}: the manifest allows {origins}, not the shipped extension")
        else:
            notes.append(f"{entry.name}: host manifest {path} is fine")
    if not found_browser:
        names = ", ".join(hosts.BROWSERS[b].name for b in browsers)
        problems.append(("CHROME_NOT_INSTALLED", f"none of {names} was found"))
    try:
        location = locate_server(data_dir, token_file)
        status = _rpc_blocking(location, "interceptor.status")
    except ServerNotFound as exc:
        problems.append((exc.code, str(exc)))
        return problems, notes
    notes.append(f"server at {location.rpc_url}: extension connected={status['connected']}, "
                 f"secure={status['secure']}, custom key={status['custom_key']}")
    if status["rejected_frames"] and not status["secure"]:
        problems.append(("KEY_MISMATCH",
                         f"{status['rejected_frames']} frames failed authentication: "
                         f"{status['last_error']}; give the extension the key set with "
                         "interceptor.set_key"))
    return problems, notes


# -- the command line -----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="postcap-bridge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="postcap's data dir [default: $POSTCAP_HOME or ~/.postcap]")
    parser.add_argument("--token-file", help="the control token [default: DATA_DIR/control.token]")
    commands = parser.add_subparsers(dest="command", required=True)
    host = commands.add_parser("host", help="run as the native-messaging host (Chrome does this)")
    host.add_argument("origin", nargs="*", help="the caller's origin, given by the browser")
    browsers = sorted(hosts.BROWSERS)
    install = commands.add_parser("install", help="write the host manifest for a browser")
    install.add_argument("--browser", required=True, choices=browsers)
    install.add_argument("--extension-id", action="append", dest="extension_ids",
                         help=f"allowed extension id (repeatable) [default: {EXTENSION_ID}]")
    install.add_argument("--user-data-dir", help="the browser's --user-data-dir, if not the default")
    uninstall = commands.add_parser(
        "uninstall", help="remove the host manifest (from every browser unless --browser)")
    uninstall.add_argument("--browser", choices=browsers,
                           help="only this browser [default: every browser postcap knows]")
    uninstall.add_argument("--user-data-dir")
    doctor = commands.add_parser("doctor", help="report what keeps the interceptor from working")
    doctor.add_argument("--browser", choices=browsers, action="append", dest="browsers")
    doctor.add_argument("--user-data-dir")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    commands.add_parser("extension", help="print the unpacked extension's folder and id")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("chrome-extension://"):
        return run_host(None, None, argv[0])  # started by the browser from a bare manifest
    args = _parser().parse_args(argv)
    if args.command == "host":
        origin = next((a for a in args.origin if a.startswith("chrome-extension://")), None)
        return run_host(args.data_dir, args.token_file, origin)
    if args.command == "install":
        for extension_id in args.extension_ids or []:
            if len(extension_id) != 32 or not set(extension_id) <= set("abcdefghijklmnop"):
                print(f"postcap-bridge: --extension-id {extension_id!r} is not a 32-letter a-p id",
                      file=sys.stderr)
                return 2
        path = hosts.install(args.browser, args.extension_ids, args.user_data_dir, args.data_dir)
        print(f"installed {path}")
        if not hosts.browser_installed(args.browser):
            print(f"warning CHROME_NOT_INSTALLED: {hosts.BROWSERS[args.browser].name} was not found",
                  file=sys.stderr)
        return 0
    if args.command == "uninstall":
        for browser in [args.browser] if args.browser else sorted(hosts.BROWSERS):
            removed = hosts.uninstall(browser, args.user_data_dir)
            print(("removed " if removed else "nothing to remove at ")
                  + str(hosts.manifest_path(browser, args.user_data_dir)))
        return 0
    if args.command == "extension":
        print(f"{extension_dir()}\n{EXTENSION_ID}")
        return 0
    problems, notes = diagnose(args.browsers or sorted(hosts.BROWSERS), args.user_data_dir,
                               args.data_dir, args.token_file)
    if args.json:
        print(json.dumps({"ok": not problems, "extension_id": EXTENSION_ID,
                          "problems": [{"code": c, "message": m} for c, m in problems],
                          "notes": notes}, indent=2))
    else:
        for note in notes:
            print(f"ok: {note}")
        for code, message in problems:
            print(f"PROBLEM {code}: {message}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
