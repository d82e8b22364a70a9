"""Find the running postcap server the way the server finds its files.

The data dir is ``--data-dir``, else ``$POSTCAP_HOME``, else ``~/.postcap``.
``DATA_DIR/server.json`` (written by :mod:`postcap.service` once it listens)
gives the control address; ``DATA_DIR/control.token`` the bearer token.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from postcap.tap import default_data_dir


class ServerNotFound(Exception):
    """Why the server cannot be reached; ``code`` is one of the doctor's codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ServerLocation:
    data_dir: str
    rpc_url: str
    token: str


def locate_server(data_dir: str | None = None, token_file: str | None = None) -> ServerLocation:
    """Where the server's control channel is and its token; :class:`ServerNotFound` if not."""
    data_dir = data_dir or default_data_dir()
    state_path = os.path.join(data_dir, "server.json")
    try:
        with open(state_path, encoding="utf-8") as handle:
            state = json.load(handle)
        control = state["control"]
        host, port = control.get("host") or "127.0.0.1", int(control["port"])
    except FileNotFoundError as exc:
        raise ServerNotFound(
            "SERVER_NOT_RUNNING", f"{state_path} is missing: is postcap running with this data dir?"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ServerNotFound("SERVER_NOT_RUNNING", f"cannot read {state_path}: {exc}") from exc
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    token_path = token_file or os.path.join(data_dir, "control.token")
    try:
        with open(token_path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise ServerNotFound(
            "TOKEN_UNREADABLE", f"cannot read the control token {token_path}: {exc.strerror}"
        ) from exc
    if not token:
        raise ServerNotFound("TOKEN_UNREADABLE", f"the control token {token_path} is empty")
    return ServerLocation(data_dir, f"http://{host}:{port}/rpc", token)
