"""Find the running postcap server for the bridge, through :mod:`postcap.discovery`
(the one way every postcap tool finds it), with the doctor's error codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from postcap.discovery import (
    BadControlEndpoint,
    ControlEndpoint,
    ServerNotRunning,
    TokenUnreadable,
    data_dir as default_data_dir,
    read_token,
    resolve,
)


class ServerNotFound(Exception):
    """Why the server cannot be reached; ``code`` is one of the doctor's codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ServerLocation:
    data_dir: str
    endpoint: ControlEndpoint
    token: str

    @property
    def rpc_url(self) -> str:
        """Where JSON-RPC goes, for messages (a UNIX socket shows as ``unix:PATH/rpc``)."""
        return self.endpoint.url + "/rpc"

    @property
    def request_url(self) -> str:
        """The URL an HTTP client requests (over the socket for ``unix:``)."""
        base = "http://localhost" if self.endpoint.scheme == "unix" else self.endpoint.url
        return base + "/rpc"


def locate_server(data_dir: str | None = None, token_file: str | None = None) -> ServerLocation:
    """Where the server's control channel is and its token; :class:`ServerNotFound` if not."""
    data_dir = data_dir or default_data_dir()
    try:
        endpoint, token_path = resolve(None, data_dir, token_file)
    except (ServerNotRunning, BadControlEndpoint) as exc:
        raise ServerNotFound("SERVER_NOT_RUNNING", str(exc)) from exc
    try:
        token = read_token(token_path)
    except TokenUnreadable as exc:
        raise ServerNotFound("TOKEN_UNREADABLE", str(exc)) from exc
    return ServerLocation(data_dir, endpoint, token)


def http_client(location: ServerLocation, reactor: Any = None) -> Any:
    """treq (or a treq ``HTTPClient`` bound to the UNIX socket) for ``location``."""
    from postcap.client import treq_for

    return treq_for(location.endpoint, reactor)
