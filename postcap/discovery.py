"""Finding the local postcap server, and speaking HTTP to its control endpoint.

The one way every client (``postcapctl``, :mod:`postcap.client`, the interceptor
bridge, ``postcap run``, ``postcap mcp``) finds the server:

1. ``--control`` given: that endpoint, in any form the server accepts for its own
   ``--control`` (``tcp:PORT[:interface=ADDR]``, ``tcp6:…``, ``unix:PATH``,
   ``ssl:PORT[:interface=ADDR]``) or as a URL (``http://HOST:PORT``,
   ``https://HOST:PORT``, ``unix:/PATH``).
2. Otherwise ``DATA_DIR/server.json`` (``--data-dir``, else ``$POSTCAP_HOME``, else
   ``~/.postcap``), which the server writes once it listens and removes when it stops.
   No ``server.json``, or one naming a process that is gone: :class:`ServerNotRunning`.
   There is no fallback address: the bearer token only ever goes to an endpoint that
   was given or that the server itself wrote down.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

DEFAULT_CONTROL_URL = "http://127.0.0.1:5556"


class PostcapError(Exception):
    """The server answered with an error (JSON-RPC ``error`` or an HTTP error)."""

    def __init__(self, code: Any, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})" if self.code is not None else self.message


class ServerUnreachable(PostcapError):
    """No postcap answers at the control endpoint."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(None, f"cannot reach postcap at {url}: {reason}")
        self.url = url


class ServerNotRunning(ServerUnreachable):
    """Discovery found no running server in the data dir (and ``--control`` was not given)."""

    def __init__(self, home: str, reason: str) -> None:
        PostcapError.__init__(
            self, None,
            f"no running postcap found in {home}: {reason}; start it, or give --control "
            "(and --data-dir or --token-file)",
        )
        self.url = ""
        self.home = home


class TokenUnreadable(PostcapError):
    """The token file could not be read."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(None, f"cannot read token file {path}: {reason}")


class BadControlEndpoint(PostcapError):
    """A ``--control`` value that names no endpoint postcap can speak to."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(None, f"--control {text!r}: {reason}")


# -- endpoints ---------------------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over a connected ``AF_UNIX`` socket."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True, slots=True)
class ControlEndpoint:
    """Where the control channel listens: ``scheme`` is ``http``, ``https`` or ``unix``."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def url(self) -> str:
        """A form ``--control`` accepts back, used in messages."""
        if self.scheme == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def http_connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        """A (not yet connected) ``http.client`` connection to this endpoint."""
        if self.scheme == "unix":
            return UnixHTTPConnection(self.path, timeout=timeout)
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def twisted_endpoint(self, reactor: Any) -> Any:
        """A Twisted client endpoint to this control channel."""
        from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
        from twisted.internet.ssl import optionsForClientTLS

        if self.scheme == "unix":
            return UNIXClientEndpoint(reactor, self.path)
        endpoint = HostnameEndpoint(reactor, self.host.encode("idna"), self.port)
        if self.scheme == "https":
            return wrapClientTLS(optionsForClientTLS(self.host), endpoint)
        return endpoint


def _reachable_host(host: str | None) -> str:
    """Where to connect for a server listening on ``host`` (wildcards → loopback)."""
    if not host or host in ("0.0.0.0", "::"):
        return "127.0.0.1" if host != "::" else "::1"
    return host


def parse_control(text: str) -> ControlEndpoint:
    """A ``--control`` value (Twisted endpoint string or URL) as a :class:`ControlEndpoint`."""
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or not rest:
        raise BadControlEndpoint(text, "expected tcp:PORT, unix:PATH, ssl:PORT or http://HOST:PORT")
    if scheme in ("http", "https") and rest.startswith("//"):
        parsed = urllib.parse.urlsplit(text)
        try:
            port = parsed.port or (443 if scheme == "https" else 80)
        except ValueError as exc:
            raise BadControlEndpoint(text, str(exc)) from None
        if not parsed.hostname:
            raise BadControlEndpoint(text, "no host in the URL")
        return ControlEndpoint(scheme, parsed.hostname, port)
    if scheme == "unix":
        if rest.startswith("//"):  # unix:///run/postcap.sock
            rest = rest[2:]
        fields = _endpoint_fields(rest)
        path = fields.get("address") or fields.get("")
        if not path:
            raise BadControlEndpoint(text, "unix: needs a socket path")
        return ControlEndpoint("unix", path=os.path.expanduser(path))
    if scheme in ("tcp", "tcp6", "ssl"):
        fields = _endpoint_fields(rest)
        port_text = fields.get("port") or fields.get("")
        if not port_text or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise BadControlEndpoint(text, "needs a port 1..65535")
        default = "::1" if scheme == "tcp6" else "127.0.0.1"
        host = _reachable_host(fields.get("interface") or default)
        return ControlEndpoint("https" if scheme == "ssl" else "http", host, int(port_text))
    raise BadControlEndpoint(text, f"unknown endpoint type {scheme!r} (tcp:, tcp6:, unix:, ssl:, "
                                   "http://, https://)")


def _endpoint_fields(rest: str) -> dict[str, str]:
    """The ``:``-separated fields of a Twisted endpoint string after its type; the
    first positional one under ``""`` (``\\:`` escapes a colon, as Twisted's parser)."""
    parts: list[str] = []
    current = ""
    escaped = False
    for char in rest:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    fields: dict[str, str] = {}
    for index, part in enumerate(parts):
        name, equals, value = part.partition("=")
        if equals:
            fields[name] = value
        elif index == 0:
            fields[""] = part
    return fields


# -- discovery ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerLocation:
    """The control endpoint (``control_url``: a form ``--control`` accepts) and token file."""

    control_url: str
    token_file: str


def data_dir(environ: dict[str, str] | None = None) -> str:
    """``$POSTCAP_HOME`` or ``~/.postcap``, as the server's ``--data-dir`` default."""
    environ = os.environ if environ is None else environ
    return environ.get("POSTCAP_HOME") or os.path.join(os.path.expanduser("~"), ".postcap")


def _process_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return True  # not recorded: nothing to check
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def control_from_state(state: Any) -> str:
    """The control endpoint recorded in a ``server.json`` object, as a ``--control`` form."""
    control = state.get("control") if isinstance(state, dict) else None
    if not isinstance(control, dict):
        raise ValueError("no control endpoint recorded")
    if control.get("unix"):
        return f"unix:{control['unix']}"
    port = control.get("port")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("no control port recorded")
    host = _reachable_host(control.get("host"))
    scheme = "https" if str(control.get("endpoint", "")).startswith("ssl:") else "http"
    return ControlEndpoint(scheme, host, port).url


def locate(home: str | None = None) -> ServerLocation:
    """The running server of data dir ``home`` (default :func:`data_dir`): its control
    endpoint from ``server.json`` and its token file.  :class:`ServerNotRunning` when
    the server wrote no ``server.json`` there, or the process it names is gone."""
    home = home or data_dir()
    state_path = os.path.join(home, "server.json")
    try:
        with open(state_path, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        raise ServerNotRunning(home, f"{state_path} is missing") from None
    except (OSError, ValueError) as exc:
        raise ServerNotRunning(home, f"cannot read {state_path}: {exc}") from None
    try:
        control_url = control_from_state(state)
    except ValueError as exc:
        raise ServerNotRunning(home, f"{state_path}: {exc}") from None
    if not _process_alive(state.get("pid")):
        raise ServerNotRunning(home, f"{state_path} names process {state['pid']}, which has exited")
    token_file = state.get("token_file")
    if not isinstance(token_file, str) or not token_file:
        token_file = os.path.join(home, "control.token")
    return ServerLocation(control_url, token_file)


def read_token(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise TokenUnreadable(path, exc.strerror or str(exc)) from exc
    if not token:
        raise TokenUnreadable(path, "file is empty")
    return token


def resolve(
    control: str | None = None, home: str | None = None, token_file: str | None = None
) -> tuple[ControlEndpoint, str]:
    """The endpoint and token file to use: ``control`` if given (its token from
    ``token_file`` or ``HOME/control.token``), else what :func:`locate` discovers."""
    if control:
        endpoint = parse_control(control)
        return endpoint, token_file or os.path.join(home or data_dir(), "control.token")
    location = locate(home)
    return parse_control(location.control_url), token_file or location.token_file
