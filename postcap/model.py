"""The transaction model: one immutable record per proxied exchange.

The record is true to the wire: the request line as received, header names in
their original case and order, bodies as bytes.  ``str`` views (URL, host,
content type) are derived.  :meth:`Transaction.summary` and
:meth:`Transaction.detail` emit the shapes written in the contract.

Every transaction ends exactly once: it carries a ``response`` *or* an
``error`` (a response cut short carries both the head that was seen and the
error that ended it).
"""

from __future__ import annotations

import base64
import ipaddress
import os
import random
import secrets
import time
from dataclasses import dataclass, field, fields
from operator import attrgetter
from datetime import datetime, timezone
from typing import Any, Iterable

from postcap.datamode import data_mode
from postcap.encodings import content_encoding_of

#: Bumped whenever the JSON shapes or the stored record change incompatibly.
SCHEMA_VERSION = 1

Headers = tuple[tuple[bytes, bytes], ...]

MEDIA_TYPE_PREFIXES = ("image/", "audio/", "video/")


#: Identifiers name records, they guard nothing: a seeded PRNG, not a syscall per id.
_id_random = random.Random(secrets.randbits(64))


def new_id() -> str:
    """A time-ordered, URL-safe identifier: 12 hex digits of milliseconds, 8 random."""
    return f"{time.time_ns() // 1_000_000:012x}{_id_random.getrandbits(32):08x}"


_second_prefix: tuple[int, str] = (-1, "")


def iso8601(ts: float | None) -> str | None:
    """Format a POSIX timestamp as ISO 8601 UTC with milliseconds (``…Z``)."""
    global _second_prefix
    if ts is None:
        return None
    if ts < 0:
        moment = datetime.fromtimestamp(ts, tz=timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    # As datetime.fromtimestamp: microseconds rounded half to even, then milliseconds floored.
    second = int(ts)
    micro = round((ts - second) * 1e6)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    cached_second, prefix = _second_prefix
    if cached_second != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        _second_prefix = (second, prefix)
    return f"{prefix}{micro // 1000:03d}Z"


def is_ip_literal(host: str) -> bool:
    """True for an IPv4 or IPv6 address (brackets allowed), False for a host name."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header ``name`` (case-insensitive), or None."""
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def media_type(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The lower-cased media type of a Content-Type header, without parameters."""
    raw = header_value(headers, b"content-type")
    if not raw:
        return ""
    return raw.split(b";", 1)[0].strip().decode("latin-1").lower()


def is_media_type(content_type: str) -> bool:
    """True for image/*, audio/* and video/* types, whose bodies are never stored."""
    return content_type.startswith(MEDIA_TYPE_PREFIXES)


def _latin1(value: bytes) -> str:
    return value.decode("latin-1")



def _pickled_by_fields(cls: type) -> type:
    """Pickle a frozen dataclass as its class and field values: several times faster
    than the dataclass's own ``__getstate__`` (records cross to the history's
    database process and back)."""
    values = attrgetter(*(item.name for item in fields(cls)))

    def __reduce__(self: Any) -> tuple[Any, ...]:
        return type(self), values(self)

    cls.__reduce__ = __reduce__  # type: ignore[attr-defined]
    return cls


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Body:
    """A message body as captured.

    ``size`` is the payload byte count as transferred (after de-chunking, before
    any content decoding).  ``content`` holds the stored copy when it is small;
    a larger stored copy lives in ``spool_path`` until the sinks are done with it
    (read it with :meth:`read`, off the reactor thread).
    """

    size: int = 0
    captured: bool = False
    truncated: bool = False
    content: bytes = b""
    spool_path: str | None = None

    def read(self) -> bytes:
        """The stored copy.  Blocks on file I/O when spooled: call it in a thread."""
        if self.spool_path is None:
            return self.content
        with open(self.spool_path, "rb") as spooled:
            return spooled.read()

    def discard(self) -> None:
        """Delete the spool file, if any (the sinks have finished with it)."""
        if self.spool_path is not None:
            try:
                os.unlink(self.spool_path)
            except FileNotFoundError:
                pass

    def to_json(
        self, data: bytes | None = None, content_encoding: str | None = None
    ) -> dict[str, Any]:
        """The contract's body shape; ``data`` overrides the stored copy;
        ``content_encoding`` is the message's (:func:`content_encoding_of` its headers)."""
        raw = self.content if data is None else data
        if not self.captured:
            raw = b""
        try:
            text, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        return {
            "size": self.size,
            "truncated": self.truncated,
            "captured": self.captured,
            "encoding": encoding,
            "text": text,
            "content_encoding": content_encoding,
        }


EMPTY_BODY = Body()


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def to_json(self, host_key: str = "host") -> dict[str, Any]:
        return {host_key: self.host, "port": self.port}


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class TLSInfo:
    """The client's TLS connection to postcap."""

    sni: str | None
    version: str | None
    cipher: str | None

    def to_json(self) -> dict[str, Any]:
        return {"sni": self.sni, "version": self.version, "cipher": self.cipher}


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Timings:
    """Phase durations in milliseconds (-1 where a phase did not happen, as in HAR)."""

    connect_ms: float = -1.0
    tls_ms: float = -1.0
    send_ms: float = 0.0
    wait_ms: float = 0.0
    receive_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "connect_ms": round(self.connect_ms, 3),
            "tls_ms": round(self.tls_ms, 3),
            "send_ms": round(self.send_ms, 3),
            "wait_ms": round(self.wait_ms, 3),
            "receive_ms": round(self.receive_ms, 3),
        }


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: bytes
    http_version: str
    headers: Headers
    body: Body = EMPTY_BODY
    #: Trailer fields after the body (chunked HTTP/1.1 or HTTP/2), in order.
    trailers: Headers = ()

    def to_json(self, body: bytes | None = None) -> dict[str, Any]:
        headers = [[_latin1(k), _latin1(v)] for k, v in self.headers]
        return {
            "method": self.method,
            "target": _latin1(self.target),
            "http_version": self.http_version,
            "headers": headers,
            "body": self.body.to_json(body, content_encoding_of(headers)),
            "trailers": [[_latin1(k), _latin1(v)] for k, v in self.trailers],
        }


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    http_version: str
    headers: Headers
    body: Body = EMPTY_BODY
    #: Trailer fields after the body (chunked HTTP/1.1 or HTTP/2; gRPC's grpc-status).
    trailers: Headers = ()

    def to_json(self, body: bytes | None = None) -> dict[str, Any]:
        headers = [[_latin1(k), _latin1(v)] for k, v in self.headers]
        return {
            "status": self.status,
            "reason": self.reason,
            "http_version": self.http_version,
            "headers": headers,
            "body": self.body.to_json(body, content_encoding_of(headers)),
            "trailers": [[_latin1(k), _latin1(v)] for k, v in self.trailers],
        }


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Transaction:
    """One finished exchange: a request and its response or the error that ended it."""

    id: str
    session_id: str | None
    started_at: float
    duration_ms: float
    url: str
    scheme: str
    client: Address
    server: Address
    request: Request
    response: Response | None = None
    error: str | None = None
    timings: Timings = field(default_factory=Timings)
    tls: TLSInfo | None = None
    kind: str = "http"  # "http", or "tunnel" for a blind CONNECT relay
    schema_version: int = SCHEMA_VERSION

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def status(self) -> int | None:
        return None if self.response is None else self.response.status

    @property
    def content_type(self) -> str:
        return "" if self.response is None else media_type(self.response.headers)

    @property
    def request_bytes(self) -> int:
        return self.request.body.size

    @property
    def data_mode(self) -> str:
        """The request's body mode (see :mod:`postcap.datamode`)."""
        size = self.request.body.size
        return data_mode(media_type(self.request.headers), size) if size > 0 else "none"

    @property
    def response_bytes(self) -> int:
        return 0 if self.response is None else self.response.body.size

    def summary(self) -> dict[str, Any]:
        """The contract's summary shape."""
        return {
            "id": self.id,
            "session_id": self.session_id,
            "started_at": iso8601(self.started_at),
            "method": self.method,
            "url": self.url,
            "host": self.host,
            "status": self.status,
            "duration_ms": round(self.duration_ms, 3),
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
            "content_type": self.content_type,
            "error": self.error,
        }

    def detail(
        self, request_body: bytes | None = None, response_body: bytes | None = None
    ) -> dict[str, Any]:
        """The contract's detail shape; bodies default to the in-memory copies."""
        result = self.summary()
        result.update(
            {
                "kind": self.kind,
                "schema_version": self.schema_version,
                "request": self.request.to_json(request_body),
                "response": None
                if self.response is None
                else self.response.to_json(response_body),
                "timings": self.timings.to_json(),
                "client": self.client.to_json("ip"),
                "server": self.server.to_json(),
                "tls": None if self.tls is None else self.tls.to_json(),
            }
        )
        return result

    def content_encoding(self, part: str) -> str | None:
        """The ``Content-Encoding`` of the ``"request"`` or ``"response"`` body, or None."""
        message = self.request if part == "request" else self.response
        if message is None:
            return None
        headers = [(k.decode("latin-1"), v.decode("latin-1"))
                   for k, v in message.headers if k.lower() == b"content-encoding"]
        return content_encoding_of(headers) if headers else None

    def bodies(self) -> tuple[Body, ...]:
        return (self.request.body,) + (() if self.response is None else (self.response.body,))

    def discard_spools(self) -> None:
        """Delete any spooled body copies once every sink is done with them."""
        for body in self.bodies():
            body.discard()


class SessionDelta:
    """What some transactions add to their session: a count, bytes, the last activity."""

    __slots__ = ("count", "size", "last_activity")

    def __init__(self) -> None:
        self.count = 0
        self.size = 0
        self.last_activity = float("-inf")

    def add(self, txn: Transaction) -> None:
        self.count += 1
        self.size += txn.request_bytes + txn.response_bytes
        end = txn.started_at + txn.duration_ms / 1000.0
        if end > self.last_activity:
            self.last_activity = end


SESSION_STATES = ("running", "paused", "stopped")


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A capture session as stored; change it with :func:`dataclasses.replace`.

    ``options`` is the validated option mapping of the contract (name and
    source are kept both here, as the session's own fields, and in options).
    """

    id: str
    name: str
    source: str
    state: str
    started_at: float
    stopped_at: float | None
    options: dict[str, Any]
    request_count: int = 0
    total_bytes: int = 0
    last_activity: float | None = None

    def duration_ms(self, now: float) -> float:
        end = self.stopped_at if self.stopped_at is not None else now
        return max(0.0, (end - self.started_at) * 1000.0)

    def to_json(self, now: float) -> dict[str, Any]:
        """The contract's session shape (``now`` sizes a live session's duration)."""
        return {
            "id": self.id,
            "name": self.name,
            "source": self.source,
            "state": self.state,
            "started_at": iso8601(self.started_at),
            "stopped_at": iso8601(self.stopped_at),
            "duration_ms": round(self.duration_ms(now), 3),
            "request_count": self.request_count,
            "total_bytes": self.total_bytes,
            "options": self.options,
        }


#: The message types of a WebSocket connection, as the contract names them.
WEBSOCKET_MESSAGE_TYPES = ("text", "binary", "ping", "pong", "close")


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class WebSocketMessage:
    """One WebSocket message as captured (fragments joined, compression undone).

    ``size`` is the whole payload's length; ``data`` the stored copy (at most what
    the connection's ``--max-capture-body`` budget had left: ``truncated`` says when
    it is shorter).  A close message's ``data`` is its reason and ``code`` its code.
    """

    transaction_id: str
    direction: str  # "client" or "server": who sent it
    type: str  # one of WEBSOCKET_MESSAGE_TYPES
    at: float  # when its first frame arrived (epoch seconds)
    size: int
    truncated: bool = False
    data: bytes = b""
    code: int | None = None

    def to_json(self, text_limit: int | None = None) -> dict[str, Any]:
        """The contract's message shape; ``text_limit`` shortens the stored copy
        (flagging it truncated) for places that must stay small, such as events."""
        data, truncated = self.data, self.truncated
        if text_limit is not None and len(data) > text_limit:
            data, truncated = data[:text_limit], True
        try:
            if self.type == "binary":  # binary payloads are always base64, as in HAR
                raise UnicodeDecodeError("utf-8", b"", 0, 1, "binary message")
            text, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(data).decode("ascii"), "base64"
        result: dict[str, Any] = {
            "direction": self.direction,
            "type": self.type,
            "at": iso8601(self.at),
            "size": self.size,
            "truncated": truncated,
            "encoding": encoding,
            "text": text,
        }
        if self.code is not None:
            result["code"] = self.code
        return result
