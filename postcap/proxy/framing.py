"""Sans-IO HTTP/1.1 message framing: bytes in, events out.

:class:`MessageParser` parses one message at a time (a request or a
response) and stops after its end, so that a pipelined next message waits
in the buffer until the caller asks for it with :meth:`MessageParser.next`.
It rejects, and never repairs, anything ambiguous: a request that frames
its body two ways, obfuscated ``Transfer-Encoding``, obs-fold, bare CR,
control bytes in headers, bad chunk sizes.  Limits are class attributes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

RawHeaders = list[tuple[bytes, bytes]]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)\Z")
# Reason phrase: HTAB, SP, visible ASCII and obs-text (RFC 9112 §4); no controls.
_STATUS_LINE = re.compile(rb"(HTTP/\d\.\d) (\d{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?\Z")
# Field values: visible ASCII, obs-text, SP and HTAB; no NUL, CR, LF or other controls.
_BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(;[^\r\n]*)?\Z")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_CHUNK_EXT_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class ProtocolError(Exception):
    """A message that cannot be parsed; ``status`` is the HTTP answer to give."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes
    version: bytes
    headers: RawHeaders
    #: "none", "length" or "chunked" (requests are never close-delimited)
    framing: str
    length: int


@dataclass(slots=True)
class ResponseHead:
    version: bytes
    status: int
    reason: bytes
    headers: RawHeaders
    #: "none", "length", "chunked" or "close"
    framing: str
    length: int

    @property
    def informational(self) -> bool:
        return 100 <= self.status < 200


@dataclass(slots=True)
class Data:
    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    trailers: RawHeaders


Event = Union[RequestHead, ResponseHead, Data, EndOfMessage]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


#: Fields that frame or route a message: never accepted in a trailer section
#: (RFC 9110 §6.5.1), where a recipient merging trailers into headers would be fooled.
FORBIDDEN_TRAILERS = frozenset(
    {b"content-length", b"transfer-encoding", b"host", b"content-type", b"content-encoding",
     b"content-range", b"trailer", b"connection", b"te", b"upgrade", b"expect"}
)


def header_values(headers: RawHeaders, name: bytes) -> list[bytes]:
    """Every value of ``name`` (lower-case), comma lists split and stripped."""
    values: list[bytes] = []
    for key, value in headers:
        if key.lower() == name:
            values.extend(part.strip() for part in value.split(b","))
    return [v for v in values if v]


def connection_tokens(headers: RawHeaders) -> set[bytes]:
    """The lower-cased tokens of the Connection header(s)."""
    return {token.lower() for token in header_values(headers, b"connection")}


def end_to_end(headers: RawHeaders) -> RawHeaders:
    """The headers a proxy forwards: hop-by-hop ones and those named in Connection
    removed, and Content-Length as one field with one value (:func:`single_content_length`)."""
    drop = HOP_BY_HOP | connection_tokens(headers)
    return single_content_length([(k, v) for k, v in headers if k.lower() not in drop])


def single_content_length(headers: RawHeaders) -> RawHeaders:
    """``Content-Length: 5, 5`` (or the field repeated with the same value) as one
    ``Content-Length: 5``, where the first one was (RFC 9110 §8.6: a list is never
    forwarded).  Values that differ are left alone: the parser refuses those."""
    positions = [i for i, (k, _) in enumerate(headers) if k.lower() == b"content-length"]
    if not positions or (len(positions) == 1 and b"," not in headers[positions[0]][1]):
        return headers
    values = {part.strip() for i in positions for part in headers[i][1].split(b",")}
    if len(values) != 1:
        return headers
    first, (value,) = positions[0], values
    repeated = set(positions[1:])
    return [
        (field[0], value) if i == first else field
        for i, field in enumerate(headers)
        if i not in repeated
    ]


def wants_keep_alive(version: bytes, headers: RawHeaders) -> bool:
    """Persistence per RFC 9112 §9.3 for a message of ``version``."""
    tokens = connection_tokens(headers)
    if b"close" in tokens:
        return False
    if version == b"HTTP/1.1":
        return True
    return b"keep-alive" in tokens


class MessageParser:
    """Parse HTTP/1.x requests (``is_request=True``) or responses from a byte stream.

    Call :meth:`feed` with received bytes and :meth:`feed_eof` at end of stream;
    both return events.  After an :class:`EndOfMessage` the parser holds any
    further bytes until :meth:`next` is called.  For responses, :meth:`next`
    takes the request method (a response to HEAD has no body).
    """

    max_request_line = 16 * 1024
    max_header_bytes = 64 * 1024
    max_header_fields = 500
    max_chunk_line = 4096
    max_leading_empty_lines = 8

    _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _CLOSE, _DONE = range(8)

    def __init__(self, is_request: bool, request_method: bytes = b"GET") -> None:
        self.is_request = is_request
        self._request_method = request_method
        self._buffer = bytearray()
        self._head_scanned = 0
        self._state = self._HEAD
        self._remaining = 0
        self._trailers: RawHeaders = []
        self._trailer_bytes = 0
        self._empty_lines = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed (e.g. a pipelined next request)."""
        return len(self._buffer)

    @property
    def idle(self) -> bool:
        """True between messages with nothing buffered."""
        return self._state in (self._HEAD, self._DONE) and not self._buffer

    @property
    def in_head(self) -> bool:
        return self._state == self._HEAD

    def take_buffered(self) -> bytes:
        """Remove and return unparsed bytes (what follows a CONNECT head)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        self._head_scanned = 0
        return data

    def next(self, request_method: bytes = b"GET") -> list[Event]:
        """Start on the next message and parse what is already buffered."""
        self._request_method = request_method
        self._state = self._HEAD
        self._empty_lines = 0
        return self._run()

    def continue_after_informational(self) -> list[Event]:
        """After a 1xx response head, parse the final response that follows."""
        return self.next(self._request_method)

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        if self._state == self._DONE:
            return []
        return self._run()

    def feed_eof(self) -> list[Event]:
        """The peer closed.  Ends a close-delimited body; anything else is an error."""
        if self._state == self._CLOSE:
            self._state = self._DONE
            return [EndOfMessage([])]
        if self._state == self._HEAD and not self._buffer:
            return []
        if self._state == self._DONE:
            return []
        raise ProtocolError(400, "connection closed in the middle of a message")

    # -- the state machine ---------------------------------------------------

    def _run(self) -> list[Event]:
        events: list[Event] = []
        while True:
            state = self._state
            if state == self._HEAD:
                head = self._parse_head()
                if head is None:
                    return events
                events.append(head)
                if isinstance(head, ResponseHead) and head.informational:
                    self._state = self._DONE
                    return events
                self._begin_body(head.framing, head.length)
                if self._state == self._DONE:
                    events.append(EndOfMessage([]))
                    return events
            elif state == self._LENGTH:
                if not self._buffer:
                    return events
                take = min(self._remaining, len(self._buffer))
                events.append(Data(bytes(self._buffer[:take])))
                del self._buffer[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._DONE
                    events.append(EndOfMessage([]))
                    return events
            elif state == self._CLOSE:
                if self._buffer:
                    events.append(Data(bytes(self._buffer)))
                    self._buffer.clear()
                return events
            elif state == self._CHUNK_SIZE:
                if not self._parse_chunk_size():
                    return events
            elif state == self._CHUNK_DATA:
                if not self._buffer:
                    return events
                take = min(self._remaining, len(self._buffer))
                events.append(Data(bytes(self._buffer[:take])))
                del self._buffer[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._CHUNK_CRLF
            elif state == self._CHUNK_CRLF:
                if len(self._buffer) < 2:
                    return events
                if self._buffer[:2] != b"\r\n":
                    raise ProtocolError(400, "chunk data not followed by CRLF")
                del self._buffer[:2]
                self._state = self._CHUNK_SIZE
            elif state == self._TRAILERS:
                done = self._parse_trailer_line()
                if done is None:
                    return events
                if done:
                    self._state = self._DONE
                    events.append(EndOfMessage(self._trailers))
                    self._trailers = []
                    return events
            else:  # _DONE
                return events

    def _begin_body(self, framing: str, length: int) -> None:
        if framing == "none" or (framing == "length" and length == 0):
            self._state = self._DONE
        elif framing == "length":
            self._state, self._remaining = self._LENGTH, length
        elif framing == "chunked":
            self._state = self._CHUNK_SIZE
            self._trailers, self._trailer_bytes = [], 0
        else:
            self._state = self._CLOSE

    def _skip_leading_empty_lines(self) -> None:
        # Counted across feeds, so the limit does not depend on how bytes arrive.
        while self._buffer[:2] == b"\r\n" and self._empty_lines < self.max_leading_empty_lines:
            del self._buffer[:2]
            self._empty_lines += 1
            self._head_scanned = 0

    def _parse_head(self) -> RequestHead | ResponseHead | None:
        if self.is_request:
            self._skip_leading_empty_lines()
        buffer = self._buffer
        # Scan only what is new since the last feed (less a terminator's length), so
        # a head trickling in byte by byte costs linear, not quadratic, time.
        start = max(0, self._head_scanned - 3)
        end = buffer.find(b"\r\n\r\n", start)
        separator = 4
        if not self.is_request:
            # Old servers end lines with a bare LF; tolerate it in responses only.
            # Whichever terminator comes first ends the head (a body may hold the other).
            lf_end = buffer.find(b"\n\n", start)
            if lf_end >= 0 and (end < 0 or lf_end < end):
                end, separator = lf_end, 2
        if end < 0:
            if self.is_request and _BARE_LF.search(buffer, start):
                raise ProtocolError(400, "bare LF in request head")
            self._head_scanned = len(buffer)
            # The slack allows for a CR (or a partial terminator) not yet followed by LF,
            # so that an incomplete head is refused only when a complete one would be.
            if buffer.find(b"\n", 0, self.max_request_line + 2) < 0 and len(buffer) > self.max_request_line + 1:
                raise ProtocolError(*self._too_large(414, "start line too long"))
            if len(buffer) > self.max_header_bytes + self.max_request_line + 3:
                raise ProtocolError(*self._too_large(431, "header section too large"))
            return None
        raw = bytes(buffer[:end])
        del buffer[: end + separator]
        self._head_scanned = 0
        if self.is_request:
            crlf = raw.count(b"\r\n")
            if raw.count(b"\n") != crlf or raw.count(b"\r") != crlf:
                raise ProtocolError(400, "bare CR or LF in request head")
            lines = raw.split(b"\r\n")
        else:
            lines = raw.replace(b"\r\n", b"\n").split(b"\n")
        start_line, header_lines = lines[0], lines[1:]
        if len(start_line) > self.max_request_line:
            raise ProtocolError(*self._too_large(414, "start line too long"))
        if len(raw) - len(start_line) > self.max_header_bytes:
            raise ProtocolError(*self._too_large(431, "header section too large"))
        if len(header_lines) > self.max_header_fields:
            raise ProtocolError(*self._too_large(431, "too many header fields"))
        headers = self._parse_headers(header_lines)
        if self.is_request:
            return self._request_head(start_line, headers)
        return self._response_head(start_line, headers)

    def _too_large(self, request_status: int, reason: str) -> tuple[int, str]:
        """A request over a limit gets ``request_status``; a response, 502."""
        if self.is_request:
            return request_status, reason
        return 502, f"upstream response {reason}"

    def _parse_headers(self, lines: list[bytes]) -> RawHeaders:
        headers: RawHeaders = []
        for line in lines:
            if not line:
                continue
            if line[:1] in (b" ", b"\t"):
                raise ProtocolError(400, "obsolete line folding in headers")
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.match(name):
                raise ProtocolError(400, "malformed header field")
            value = value.strip(b" \t")
            if _BAD_VALUE_BYTE.search(value):
                raise ProtocolError(400, "control character in header value")
            headers.append((name, value))
        return headers

    def _request_head(self, line: bytes, headers: RawHeaders) -> RequestHead:
        if b"\r" in line or b"\n" in line:
            raise ProtocolError(400, "bare CR or LF in request line")
        parts = line.split(b" ")
        if len(parts) != 3:
            raise ProtocolError(400, "malformed request line")
        method, target, version = parts
        if not _TOKEN.match(method):
            raise ProtocolError(400, "malformed request method")
        if not target or _BAD_VALUE_BYTE.search(target) or b" " in target or b"\t" in target:
            raise ProtocolError(400, "malformed request target")
        version_match = _VERSION.match(version)
        if version_match is None:
            raise ProtocolError(400, "malformed HTTP version")
        if version_match.group(1) != b"1":
            raise ProtocolError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
        framing, length = self._request_framing(version, headers)
        return RequestHead(method, target, version, headers, framing, length)

    def _request_framing(self, version: bytes, headers: RawHeaders) -> tuple[str, int]:
        codings = [c.lower() for c in header_values(headers, b"transfer-encoding")]
        has_te = any(k.lower() == b"transfer-encoding" for k, _ in headers)
        lengths = _content_lengths(headers)
        if has_te:
            if lengths is not None:
                raise ProtocolError(400, "both Transfer-Encoding and Content-Length")
            if version != b"HTTP/1.1":
                raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
            if codings != [b"chunked"]:
                raise ProtocolError(400, "unsupported Transfer-Encoding")
            return "chunked", 0
        if lengths is not None:
            return "length", lengths
        return "none", 0

    def _response_head(self, line: bytes, headers: RawHeaders) -> ResponseHead:
        match = _STATUS_LINE.match(line.rstrip(b"\r"))
        if match is None:
            raise ProtocolError(502, "malformed status line")
        version, status, reason = match.group(1), int(match.group(2)), match.group(3) or b""
        if version[:6] != b"HTTP/1":
            raise ProtocolError(502, "unsupported HTTP version in response")
        if status < 100:
            raise ProtocolError(502, "malformed status code")
        framing, length = self._response_framing(status, headers)
        return ResponseHead(version, status, reason, headers, framing, length)

    def _response_framing(self, status: int, headers: RawHeaders) -> tuple[str, int]:
        if (
            100 <= status < 200
            or status in (204, 304)
            or self._request_method == b"HEAD"
        ):
            return "none", 0
        codings = [c.lower() for c in header_values(headers, b"transfer-encoding")]
        if codings:
            return ("chunked", 0) if codings[-1] == b"chunked" else ("close", 0)
        try:
            lengths = _content_lengths(headers)
        except ProtocolError:
            raise ProtocolError(502, "invalid Content-Length in response")
        if lengths is not None:
            return "length", lengths
        return "close", 0

    def _parse_chunk_size(self) -> bool:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > self.max_chunk_line + 1:
                raise ProtocolError(400, "chunk size line too long")
            return False
        if end > self.max_chunk_line:
            raise ProtocolError(400, "chunk size line too long")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        match = _CHUNK_SIZE.match(line)
        if match is None or (match.group(2) and _CHUNK_EXT_BAD.search(match.group(2))):
            raise ProtocolError(400, "invalid chunk size")
        size = int(match.group(1), 16)
        if size == 0:
            self._state = self._TRAILERS
        else:
            self._state, self._remaining = self._CHUNK_DATA, size
        return True

    def _parse_trailer_line(self) -> bool | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > self.max_header_bytes:
                raise ProtocolError(431, "trailer section too large")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        if not line:
            return True
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > self.max_header_bytes:
            raise ProtocolError(431, "trailer section too large")
        fields = self._parse_headers([line])
        if any(name.lower() in FORBIDDEN_TRAILERS for name, _ in fields):
            raise ProtocolError(400, "framing or routing field in chunked trailers")
        self._trailers.extend(fields)
        return False


def _content_lengths(headers: RawHeaders) -> int | None:
    """The one Content-Length all values agree on, None when absent; else 400."""
    values = [v for k, v in headers if k.lower() == b"content-length"]
    if not values:
        return None
    parts = {part.strip() for value in values for part in value.split(b",")}
    if len(parts) != 1:
        raise ProtocolError(400, "conflicting Content-Length values")
    (only,) = parts
    if not only.isdigit() or len(only) > 18:
        raise ProtocolError(400, "invalid Content-Length")
    return int(only)
