"""Chrome's native-messaging framing: a 4-byte native-endian length, then UTF-8 JSON.

:class:`NativeMessagingProtocol` reads frames from the browser (stdin) and
writes frames to it (stdout).  Limits: at most :data:`MAX_OUTBOUND` bytes per
message to the browser (Chrome drops the port beyond 1 MiB) and
:data:`MAX_INBOUND` from it.  A malformed or oversize inbound frame is answered
with an error frame ``{"type": "error", "code", "message"}`` and skipped; the
stream stays in sync and the host keeps running.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Callable

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from postcap.control.guard import MAX_REQUEST_BODY

#: Chrome's limit on host → browser messages.
MAX_OUTBOUND = 1024 * 1024
#: Our limit on browser → host messages (Chrome allows 64 MiB): what still fits, with
#: the JSON-RPC envelope, in a control-channel request body (the extension keeps
#: request bodies under 256 KiB, which seals to about 460 KiB).
MAX_INBOUND = MAX_REQUEST_BODY - 64 * 1024
LENGTH = struct.Struct("=I")


def encode_frame(message: Any) -> bytes:
    """One frame: native-endian length prefix plus compact UTF-8 JSON."""
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return LENGTH.pack(len(data)) + data


def error_message(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


class NativeMessagingProtocol(Protocol):
    """Frames in, frames out; ``on_message(obj)`` gets each well-formed JSON object."""

    _log = Logger()

    def __init__(
        self,
        on_message: Callable[[dict[str, Any]], None],
        on_close: Callable[[], None] | None = None,
        max_inbound: int = MAX_INBOUND,
        max_outbound: int = MAX_OUTBOUND,
    ) -> None:
        self.on_message = on_message
        self.on_close = on_close
        self.max_inbound = max_inbound
        self.max_outbound = max_outbound
        self._buffer = bytearray()
        self._skipping = 0
        self.rejected = 0

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if self._skipping:
                dropped = min(self._skipping, len(self._buffer))
                del self._buffer[:dropped]
                self._skipping -= dropped
                if self._skipping:
                    return
            if len(self._buffer) < LENGTH.size:
                return
            (length,) = LENGTH.unpack_from(self._buffer)
            if length > self.max_inbound:
                del self._buffer[: LENGTH.size]
                self._skipping = length
                self._reject("frame_too_large",
                             f"frame of {length} bytes exceeds the {self.max_inbound}-byte limit")
                continue
            end = LENGTH.size + length
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[LENGTH.size:end])
            del self._buffer[:end]
            self._deliver(payload)

    def _deliver(self, payload: bytes) -> None:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._reject("bad_utf8", f"frame is not UTF-8: {exc.reason} at byte {exc.start}")
            return
        try:
            message = json.loads(text)
        except ValueError as exc:
            self._reject("bad_json", f"frame is not JSON: {exc}")
            return
        if not isinstance(message, dict):
            self._reject("bad_message", "frame is not a JSON object")
            return
        try:
            self.on_message(message)
        except Exception:
            self._log.failure("native message handler failed")
            self.send(error_message("internal_error", "the bridge failed to handle a message"))

    def _reject(self, code: str, message: str) -> None:
        self.rejected += 1
        self._log.warn("rejected frame from the browser: {message}", message=message)
        self.send(error_message(code, message))

    def send(self, message: dict[str, Any]) -> bool:
        """Write one frame; an oversize one is replaced by an error frame (False)."""
        frame = encode_frame(message)
        if len(frame) - LENGTH.size > self.max_outbound:
            self._log.warn("message of {size} bytes to the browser is over the limit",
                           size=len(frame) - LENGTH.size)
            frame = encode_frame(error_message(
                "reply_too_large", f"a reply exceeded the {self.max_outbound}-byte limit"))
            ok = False
        else:
            ok = True
        if self.transport is not None:
            self.transport.write(frame)
        return ok

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.on_close is not None:
            self.on_close()
