"""Native-messaging framing over a StringTransport: split frames, limits, bad input."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from twisted.internet.testing import StringTransport

from postcap.interceptor.framing import MAX_OUTBOUND, NativeMessagingProtocol, encode_frame


def frame(payload: bytes) -> bytes:
    return struct.pack("=I", len(payload)) + payload


def decode_all(data: bytes) -> list[dict[str, Any]]:
    messages = []
    while data:
        (length,) = struct.unpack_from("=I", data)
        messages.append(json.loads(data[4:4 + length].decode("utf-8")))
        data = data[4 + length:]
    return messages


class Host:
    def __init__(self, max_inbound: int = 1024) -> None:
        self.received: list[dict[str, Any]] = []
        self.closed = False
        self.protocol = NativeMessagingProtocol(self.received.append, self.close,
                                                max_inbound=max_inbound)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def close(self) -> None:
        self.closed = True

    def replies(self) -> list[dict[str, Any]]:
        return decode_all(self.transport.value())


def test_frames_split_at_every_byte_and_joined_are_decoded() -> None:
    host = Host()
    stream = encode_frame({"n": 1}) + encode_frame({"text": "é✓"}) + encode_frame({"n": 3})
    for i in range(len(stream)):
        host.protocol.dataReceived(stream[i:i + 1])
    assert host.received == [{"n": 1}, {"text": "é✓"}, {"n": 3}]
    host.protocol.dataReceived(stream)
    assert len(host.received) == 6
    assert host.replies() == []


def test_length_prefix_is_native_endian() -> None:
    assert encode_frame({}) == struct.pack("=I", 2) + b"{}"


def test_oversize_frame_is_answered_and_skipped_and_the_stream_stays_in_sync() -> None:
    host = Host(max_inbound=100)
    big = frame(b"x" * 500)
    host.protocol.dataReceived(big[:50])
    assert host.replies()[0]["code"] == "frame_too_large"
    host.protocol.dataReceived(big[50:] + encode_frame({"after": True}))
    assert host.received == [{"after": True}]
    assert host.protocol.rejected == 1


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", "bad_json"),
        (b"\xff\xfe{}", "bad_utf8"),
        (b"[1, 2]", "bad_message"),
        (b"", "bad_json"),
    ],
)
def test_malformed_frames_get_an_error_frame_and_the_host_keeps_going(payload: bytes, code: str) -> None:
    host = Host()
    host.protocol.dataReceived(frame(payload) + encode_frame({"ok": 1}))
    (reply,) = host.replies()
    assert reply["type"] == "error" and reply["code"] == code and reply["message"]
    assert host.received == [{"ok": 1}]


def test_a_failing_handler_is_answered_not_fatal() -> None:
    transport = StringTransport()

    def boom(message: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    protocol = NativeMessagingProtocol(boom)
    protocol.makeConnection(transport)
    protocol.dataReceived(encode_frame({"a": 1}) + encode_frame({"a": 2}))
    assert [r["code"] for r in decode_all(transport.value())] == ["internal_error"] * 2


def test_outbound_messages_over_one_mebibyte_become_an_error_frame() -> None:
    host = Host()
    assert host.protocol.send({"big": "y" * MAX_OUTBOUND}) is False
    assert host.protocol.send({"small": "y"}) is True
    replies = host.replies()
    assert replies[0]["code"] == "reply_too_large"
    assert replies[1] == {"small": "y"}


def test_end_of_input_calls_on_close() -> None:
    host = Host()
    host.protocol.connectionLost(None)
    assert host.closed
