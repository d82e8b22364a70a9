"""WebSocket messages in HAR, as Chrome's DevTools write them (``_webSocketMessages``)."""

from __future__ import annotations

import datetime
from typing import Any

#: The frame opcode of each message type.
OPCODES = {"text": 1, "binary": 2, "close": 8, "ping": 9, "pong": 10}


def _epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def har_message(message: dict[str, Any]) -> dict[str, Any]:
    """One ``_webSocketMessages`` entry: ``type`` send (client to server) or receive,
    ``time`` in epoch seconds, ``opcode``, ``data`` (binary payloads in base64)."""
    return {
        "type": "send" if message["direction"] == "client" else "receive",
        "time": _epoch(message["at"]),
        "opcode": OPCODES.get(message["type"], 2),
        "data": message["text"],
    }


def add_websocket_messages(entry: dict[str, Any], detail: dict[str, Any]) -> None:
    """Give the HAR entry of a WebSocket handshake its messages."""
    websocket = detail.get("websocket")
    if detail.get("kind") != "websocket" or websocket is None:
        return
    entry["_resourceType"] = "websocket"
    entry["_webSocketMessages"] = [har_message(m) for m in websocket["messages"]]
