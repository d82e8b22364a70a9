"""Tests for the sans-IO HTTP/1.1 parser (postcap.proxy.framing) and target parsing
(postcap.proxy.targets): exact events for good messages, exact statuses for bad ones,
and properties that must hold however the bytes are split."""

from __future__ import annotations

from typing import Iterable, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from postcap.proxy.framing import (
    Data,
    EndOfMessage,
    Event,
    MessageParser,
    ProtocolError,
    RawHeaders,
    RequestHead,
    ResponseHead,
    connection_tokens,
    end_to_end,
    header_values,
    single_content_length,
    wants_keep_alive,
)
from postcap.proxy.targets import Target, parse_absolute_target, parse_connect_target
from postcap.proxy.upstream import Origin

URL = b"http://example.com/"

# -- helpers ------------------------------------------------------------------------


def request_bytes(
    headers: Sequence[bytes] = (b"Host: example.com",),
    body: bytes = b"",
    start: bytes = b"GET " + URL + b" HTTP/1.1",
) -> bytes:
    """A request head from a start line and raw header lines, then ``body`` verbatim."""
    return start + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


def merge(events: Iterable[Event]) -> list[Event]:
    """Coalesce adjacent Data events (how bytes are split must not matter beyond that)."""
    merged: list[Event] = []
    for event in events:
        if isinstance(event, Data) and merged and isinstance(merged[-1], Data):
            merged[-1] = Data(merged[-1].data + event.data)
        else:
            merged.append(event)
    return [e for e in merged if not (isinstance(e, Data) and not e.data)]


def feed_all(parser: MessageParser, chunks: Iterable[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def parse(data: bytes, is_request: bool = True, method: bytes = b"GET") -> list[Event]:
    """Events from feeding ``data`` at once."""
    return MessageParser(is_request, method).feed(data)


def parse_split(data: bytes, is_request: bool = True, method: bytes = b"GET") -> list[Event]:
    """Events from feeding ``data`` one byte at a time."""
    return feed_all(MessageParser(is_request, method), bytewise(data))


def rejection(chunks: Sequence[bytes], is_request: bool = True, method: bytes = b"GET") -> int:
    """The status of the ProtocolError that feeding ``chunks`` raises (fails if none)."""
    parser = MessageParser(is_request, method)
    try:
        feed_all(parser, chunks)
    except ProtocolError as exc:
        return exc.status
    raise AssertionError(f"no ProtocolError for {b''.join(chunks)[:200]!r}")


class FramingTestCase(SynchronousTestCase):
    def assertRejected(
        self, data: bytes, status: int, is_request: bool = True, method: bytes = b"GET"
    ) -> None:
        """``data`` is refused with ``status`` whether fed at once or byte by byte."""
        self.assertEqual(rejection([data], is_request, method), status, data[:200])
        self.assertEqual(rejection(bytewise(data), is_request, method), status, data[:200])

    def assertSameBytewise(
        self, data: bytes, is_request: bool = True, method: bytes = b"GET"
    ) -> list[Event]:
        """Parse at once and byte by byte, assert the same events, return them merged."""
        whole = merge(parse(data, is_request, method))
        self.assertEqual(merge(parse_split(data, is_request, method)), whole)
        return whole


# -- requests -------------------------------------------------------------------------


class RequestTests(FramingTestCase):
    def test_no_body(self) -> None:
        events = parse(request_bytes([b"Host: example.com", b"Accept: */*"]))
        self.assertEqual(
            events,
            [
                RequestHead(
                    b"GET",
                    URL,
                    b"HTTP/1.1",
                    [(b"Host", b"example.com"), (b"Accept", b"*/*")],
                    "none",
                    0,
                ),
                EndOfMessage([]),
            ],
        )

    def test_header_case_order_and_ows(self) -> None:
        [head, _] = parse(
            request_bytes(
                [b"X-B:  two\t ", b"x-a:one", b"X-B: three", b"Empty:", b"Obs: caf\xc3\xa9\tx"]
            )
        )
        assert isinstance(head, RequestHead)
        self.assertEqual(
            head.headers,
            [
                (b"X-B", b"two"),
                (b"x-a", b"one"),
                (b"X-B", b"three"),
                (b"Empty", b""),
                (b"Obs", b"caf\xc3\xa9\tx"),
            ],
        )

    def test_content_length(self) -> None:
        data = request_bytes(
            [b"Host: a", b"Content-Length: 5"], b"hello", start=b"POST " + URL + b" HTTP/1.1"
        )
        self.assertEqual(
            parse(data),
            [
                RequestHead(
                    b"POST",
                    URL,
                    b"HTTP/1.1",
                    [(b"Host", b"a"), (b"Content-Length", b"5")],
                    "length",
                    5,
                ),
                Data(b"hello"),
                EndOfMessage([]),
            ],
        )

    def test_content_length_zero(self) -> None:
        events = parse(request_bytes([b"Content-Length: 0"], start=b"POST " + URL + b" HTTP/1.1"))
        self.assertEqual(
            events,
            [
                RequestHead(b"POST", URL, b"HTTP/1.1", [(b"Content-Length", b"0")], "length", 0),
                EndOfMessage([]),
            ],
        )

    def test_content_length_body_in_pieces(self) -> None:
        parser = MessageParser(is_request=True)
        [head] = parser.feed(
            request_bytes([b"Content-Length: 10"], start=b"PUT " + URL + b" HTTP/1.1")
        )
        assert isinstance(head, RequestHead)
        self.assertEqual((head.framing, head.length), ("length", 10))
        self.assertEqual(parser.feed(b"01234"), [Data(b"01234")])
        self.assertFalse(parser.idle)
        self.assertEqual(parser.feed(b"56789"), [Data(b"56789"), EndOfMessage([])])
        self.assertTrue(parser.idle)

    def test_repeated_equal_content_length(self) -> None:
        for headers in ([b"Content-Length: 3", b"Content-Length: 3"], [b"Content-Length: 3, 3"]):
            events = parse(request_bytes(headers, b"abc", start=b"POST " + URL + b" HTTP/1.1"))
            self.assertEqual(events[1:], [Data(b"abc"), EndOfMessage([])])
            assert isinstance(events[0], RequestHead)
            self.assertEqual((events[0].framing, events[0].length), ("length", 3))

    def test_differing_content_lengths_are_refused(self) -> None:
        for headers in ([b"Content-Length: 5, 6"], [b"Content-Length: 5", b"Content-Length: 6"],
                        [b"Content-Length: 5", b"Content-Length: 5, 6"]):
            with self.assertRaises(ProtocolError) as raised:
                parse(request_bytes(headers, b"hello", start=b"POST " + URL + b" HTTP/1.1"))
            self.assertEqual(raised.exception.status, 400)

    def test_chunked_with_extensions_and_trailers(self) -> None:
        body = (
            b"5;name=value\r\nhello\r\n"
            b'6 ; ext ;q="x"\r\n world\r\n'
            b"A\t;e\r\n0123456789\r\n"
            b"0;last\r\nX-Checksum: abc\r\nx-other:  1 \r\n\r\n"
        )
        data = request_bytes(
            [b"Host: a", b"Transfer-Encoding: chunked"], body, start=b"POST " + URL + b" HTTP/1.1"
        )
        events = parse(data)
        self.assertEqual(
            events,
            [
                RequestHead(
                    b"POST",
                    URL,
                    b"HTTP/1.1",
                    [(b"Host", b"a"), (b"Transfer-Encoding", b"chunked")],
                    "chunked",
                    0,
                ),
                Data(b"hello"),
                Data(b" world"),
                Data(b"0123456789"),
                EndOfMessage([(b"X-Checksum", b"abc"), (b"x-other", b"1")]),
            ],
        )
        self.assertEqual(merge(parse_split(data)), merge(events))

    def test_chunked_without_trailers_and_case(self) -> None:
        data = request_bytes(
            [b"transfer-encoding: Chunked"],
            b"b\r\nhello world\r\n0\r\n\r\n",
            start=b"POST " + URL + b" HTTP/1.1",
        )
        events = self.assertSameBytewise(data)
        self.assertEqual(events[1:], [Data(b"hello world"), EndOfMessage([])])

    def test_chunk_size_sixteen_hex_digits(self) -> None:
        data = request_bytes(
            [b"Transfer-Encoding: chunked"],
            b"0000000000000003\r\nabc\r\n0\r\n\r\n",
            start=b"POST / HTTP/1.1",
        )
        self.assertEqual(parse(data)[1:], [Data(b"abc"), EndOfMessage([])])

    def test_bytewise_equals_one_feed(self) -> None:
        messages = [
            request_bytes(),
            request_bytes(
                [b"Content-Length: 11"], b"hello world", start=b"POST " + URL + b" HTTP/1.1"
            ),
            request_bytes(
                [b"Transfer-Encoding: chunked"],
                b"3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n",
                start=b"POST " + URL + b" HTTP/1.1",
            ),
            b"\r\n\r\n" + request_bytes(),
            request_bytes([b"Content-Length: 4"], b"\r\n\r\n", start=b"POST " + URL + b" HTTP/1.0"),
        ]
        for data in messages:
            events = self.assertSameBytewise(data)
            self.assertIsInstance(events[-1], EndOfMessage)

    def test_http10(self) -> None:
        [head, end] = parse(request_bytes(start=b"GET " + URL + b" HTTP/1.0"))
        assert isinstance(head, RequestHead)
        self.assertEqual(head.version, b"HTTP/1.0")
        self.assertEqual(end, EndOfMessage([]))

    def test_pipelined_requests_wait_for_next(self) -> None:
        first = request_bytes([b"Content-Length: 3"], b"one", start=b"POST http://a/1 HTTP/1.1")
        second = request_bytes(start=b"GET http://a/2 HTTP/1.1")
        third = request_bytes([b"Content-Length: 5"], b"three", start=b"PUT http://a/3 HTTP/1.1")
        parser = MessageParser(is_request=True)
        events = parser.feed(first + second + third[:10])
        self.assertEqual([type(e) for e in events], [RequestHead, Data, EndOfMessage])
        self.assertEqual(parser.buffered, len(second) + 10)
        self.assertFalse(parser.idle)
        # More bytes while the first exchange runs are held, not parsed.
        self.assertEqual(parser.feed(third[10:]), [])
        self.assertEqual(parser.buffered, len(second) + len(third))

        events = parser.next()
        assert isinstance(events[0], RequestHead)
        self.assertEqual(events[0].target, b"http://a/2")
        self.assertEqual(events[1:], [EndOfMessage([])])
        self.assertEqual(parser.buffered, len(third))

        events = parser.next()
        assert isinstance(events[0], RequestHead)
        self.assertEqual((events[0].method, events[0].target), (b"PUT", b"http://a/3"))
        self.assertEqual(events[1:], [Data(b"three"), EndOfMessage([])])
        self.assertTrue(parser.idle)
        self.assertEqual(parser.next(), [])

    def test_leading_crlfs_ignored(self) -> None:
        for count in (1, 2, 8):
            data = b"\r\n" * count + request_bytes()
            events = self.assertSameBytewise(data)
            assert isinstance(events[0], RequestHead)
            self.assertEqual(events[0].method, b"GET")

    def test_leading_crlfs_between_pipelined_requests(self) -> None:
        parser = MessageParser(is_request=True)
        parser.feed(request_bytes() + b"\r\n" + request_bytes(start=b"GET http://b/ HTTP/1.1"))
        events = parser.next()
        assert isinstance(events[0], RequestHead)
        self.assertEqual(events[0].target, b"http://b/")

    def test_too_many_leading_crlfs(self) -> None:
        self.assertRejected(b"\r\n" * 9 + request_bytes(), 400)
        self.assertEqual(rejection([b"\r\n"] * 9 + [request_bytes()]), 400)

    def test_connect_take_buffered(self) -> None:
        parser = MessageParser(is_request=True)
        events = parser.feed(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01"
        )
        self.assertEqual(
            events,
            [
                RequestHead(
                    b"CONNECT",
                    b"example.com:443",
                    b"HTTP/1.1",
                    [(b"Host", b"example.com:443")],
                    "none",
                    0,
                ),
                EndOfMessage([]),
            ],
        )
        self.assertEqual(parser.take_buffered(), b"\x16\x03\x01")
        self.assertEqual(parser.buffered, 0)

    def test_feed_eof(self) -> None:
        parser = MessageParser(is_request=True)
        self.assertEqual(parser.feed_eof(), [])
        parser = MessageParser(is_request=True)
        parser.feed(request_bytes())
        self.assertEqual(parser.feed_eof(), [])
        parser = MessageParser(is_request=True)
        parser.feed(b"GET http://a/ HTTP/1.1\r\nHo")
        self.assertEqual(self._eof_status(parser), 400)
        parser = MessageParser(is_request=True)
        parser.feed(request_bytes([b"Content-Length: 5"], b"ab", start=b"POST / HTTP/1.1"))
        self.assertEqual(self._eof_status(parser), 400)

    def _eof_status(self, parser: MessageParser) -> int:
        with self.assertRaises(ProtocolError) as caught:  # type: ignore[attr-defined]
            parser.feed_eof()
        return caught.exception.status

    def test_in_head_and_idle(self) -> None:
        parser = MessageParser(is_request=True)
        self.assertTrue(parser.idle)
        self.assertTrue(parser.in_head)
        parser.feed(b"GET ")
        self.assertFalse(parser.idle)
        self.assertTrue(parser.in_head)
        parser.feed(b"http://a/ HTTP/1.1\r\nContent-Length: 2\r\n\r\n")
        self.assertFalse(parser.in_head)


# -- responses ------------------------------------------------------------------------


class ResponseTests(FramingTestCase):
    def test_content_length(self) -> None:
        data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
        self.assertEqual(
            parse(data, is_request=False),
            [
                ResponseHead(
                    b"HTTP/1.1",
                    200,
                    b"OK",
                    [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5")],
                    "length",
                    5,
                ),
                Data(b"hello"),
                EndOfMessage([]),
            ],
        )
        self.assertSameBytewise(data, is_request=False)

    def test_chunked(self) -> None:
        data = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4;a=b\r\nwiki\r\n5\r\npedia\r\n0\r\nEtag: x\r\n\r\n"
        )
        events = self.assertSameBytewise(data, is_request=False)
        self.assertEqual(
            events,
            [
                ResponseHead(
                    b"HTTP/1.1", 200, b"OK", [(b"Transfer-Encoding", b"chunked")], "chunked", 0
                ),
                Data(b"wikipedia"),
                EndOfMessage([(b"Etag", b"x")]),
            ],
        )

    def test_close_delimited(self) -> None:
        parser = MessageParser(is_request=False)
        events = parser.feed(b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nsome ")
        self.assertEqual(
            events,
            [
                ResponseHead(b"HTTP/1.0", 200, b"OK", [(b"Server", b"old")], "close", 0),
                Data(b"some "),
            ],
        )
        self.assertEqual(
            parser.feed(b"body\r\n\r\nHTTP/1.1 200 OK"), [Data(b"body\r\n\r\nHTTP/1.1 200 OK")]
        )
        self.assertEqual(parser.feed_eof(), [EndOfMessage([])])
        self.assertEqual(parser.feed_eof(), [])

    def test_close_delimited_empty(self) -> None:
        parser = MessageParser(is_request=False)
        self.assertEqual(len(parser.feed(b"HTTP/1.1 200 OK\r\n\r\n")), 1)
        self.assertEqual(parser.feed_eof(), [EndOfMessage([])])

    def test_transfer_coding_not_chunked_is_close_delimited(self) -> None:
        [head, data] = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nxyz", False
        )
        assert isinstance(head, ResponseHead)
        self.assertEqual(head.framing, "close")
        self.assertEqual(data, Data(b"xyz"))

    def test_transfer_encoding_and_content_length_chunked_wins(self) -> None:
        data = (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
        )
        events = self.assertSameBytewise(data, is_request=False)
        assert isinstance(events[0], ResponseHead)
        self.assertEqual((events[0].framing, events[0].length), ("chunked", 0))
        self.assertEqual(events[1:], [Data(b"abc"), EndOfMessage([])])

    def test_informational_then_final(self) -> None:
        parser = MessageParser(is_request=False, request_method=b"POST")
        events = parser.feed(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        )
        self.assertEqual(events, [ResponseHead(b"HTTP/1.1", 100, b"Continue", [], "none", 0)])
        assert isinstance(events[0], ResponseHead)
        self.assertTrue(events[0].informational)
        # Further bytes are held until the caller continues.
        self.assertEqual(parser.feed(b""), [])
        events = parser.continue_after_informational()
        self.assertEqual(
            events,
            [
                ResponseHead(
                    b"HTTP/1.1",
                    103,
                    b"Early Hints",
                    [(b"Link", b"</style.css>; rel=preload")],
                    "none",
                    0,
                )
            ],
        )
        events = parser.continue_after_informational()
        self.assertEqual(
            events,
            [
                ResponseHead(
                    b"HTTP/1.1", 201, b"Created", [(b"Content-Length", b"2")], "length", 2
                ),
                Data(b"ok"),
                EndOfMessage([]),
            ],
        )
        assert isinstance(events[0], ResponseHead)
        self.assertFalse(events[0].informational)

    def test_head_response_has_no_body(self) -> None:
        parser = MessageParser(is_request=False)
        parser.next(b"HEAD")
        events = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        self.assertEqual(
            events,
            [
                ResponseHead(b"HTTP/1.1", 200, b"OK", [(b"Content-Length", b"1234")], "none", 0),
                EndOfMessage([]),
            ],
        )
        events = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", False, b"HEAD")
        self.assertEqual(events[1:], [EndOfMessage([])])

    def test_204_and_304_have_no_body(self) -> None:
        for status, reason in ((204, b"No Content"), (304, b"Not Modified")):
            data = b"HTTP/1.1 %d %s\r\nContent-Length: 10\r\n\r\n" % (status, reason)
            events = parse(data, is_request=False)
            self.assertEqual(
                events,
                [
                    ResponseHead(
                        b"HTTP/1.1", status, reason, [(b"Content-Length", b"10")], "none", 0
                    ),
                    EndOfMessage([]),
                ],
            )

    def test_next_response_with_method(self) -> None:
        parser = MessageParser(is_request=False)
        parser.feed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
        )
        self.assertEqual(parser.buffered, len(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"))
        events = parser.next(b"HEAD")
        self.assertEqual(events[1:], [EndOfMessage([])])
        assert isinstance(events[0], ResponseHead)
        self.assertEqual(events[0].framing, "none")

    def test_status_line_without_reason(self) -> None:
        for line in (b"HTTP/1.1 200", b"HTTP/1.1 200 "):
            [head, _, _] = parse(line + b"\r\nContent-Length: 1\r\n\r\nx", is_request=False)
            assert isinstance(head, ResponseHead)
            self.assertEqual((head.status, head.reason), (200, b""))

    def test_reason_with_spaces_and_odd_status(self) -> None:
        [head] = parse(b"HTTP/1.1 599 Very Odd Reason\r\n\r\n", is_request=False)
        assert isinstance(head, ResponseHead)
        self.assertEqual(
            (head.status, head.reason, head.framing), (599, b"Very Odd Reason", "close")
        )

    def test_bare_lf_tolerated_in_responses(self) -> None:
        data = b"HTTP/1.0 200 OK\nContent-Type: text/plain\nContent-Length: 4\n\nbody"
        events = self.assertSameBytewise(data, is_request=False)
        self.assertEqual(
            events,
            [
                ResponseHead(
                    b"HTTP/1.0",
                    200,
                    b"OK",
                    [(b"Content-Type", b"text/plain"), (b"Content-Length", b"4")],
                    "length",
                    4,
                ),
                Data(b"body"),
                EndOfMessage([]),
            ],
        )

    def test_bare_lf_head_followed_by_crlfcrlf_in_body(self) -> None:
        # The earlier terminator ends the head, whether the bytes come at once or not.
        data = b"HTTP/1.0 200 OK\nContent-Type: text/plain\n\nbody\r\n\r\nmore"
        events = self.assertSameBytewise(data, is_request=False)
        self.assertEqual(
            events,
            [
                ResponseHead(
                    b"HTTP/1.0", 200, b"OK", [(b"Content-Type", b"text/plain")], "close", 0
                ),
                Data(b"body\r\n\r\nmore"),
            ],
        )

    def test_malformed_status_lines(self) -> None:
        for line in (
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 OK",
            b"HTTP/1.1  200 OK",
            b"http/1.1 200 OK",
            b"HTTP/1.1\t200 OK",
            b"HTTP/11 200 OK",
            b"ICY 200 OK",
            b"HTTP/2.0 200 OK",
            b"HTTP/1.1 099 Low",
            b"HTTP/1.1 200 OK\x00",
            b"",
            b"garbage",
        ):
            self.assertRejected(line + b"\r\nContent-Length: 0\r\n\r\n", 502, is_request=False)

    def test_invalid_content_length_is_502(self) -> None:
        for value in (b"abc", b"5, 6", b"-1", b"0x10", b""):
            self.assertRejected(
                b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\n", 502, is_request=False
            )
        self.assertRejected(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            502,
            is_request=False,
        )

    def test_oversized_response_head_is_502(self) -> None:
        self.assertEqual(rejection([b"HTTP/1.1 200 " + b"x" * (17 * 1024)], is_request=False), 502)
        big = b"HTTP/1.1 200 OK\r\nX: " + b"a" * (65 * 1024) + b"\r\n\r\n"
        self.assertEqual(rejection([big], is_request=False), 502)
        many = b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 501 + b"\r\n"
        self.assertEqual(rejection([many], is_request=False), 502)

    def test_eof_mid_body_raises(self) -> None:
        parser = MessageParser(is_request=False)
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        self.assertRaises(ProtocolError, parser.feed_eof)


# -- rejections -----------------------------------------------------------------------


def _line_of(length: int) -> bytes:
    """A GET request line of exactly ``length`` bytes."""
    fixed = len(b"GET http://a/ HTTP/1.1")
    return b"GET http://a/" + b"a" * (length - fixed) + b" HTTP/1.1"


class LimitTests(FramingTestCase):
    def test_request_line_limit(self) -> None:
        limit = MessageParser.max_request_line
        self.assertEqual(limit, 16 * 1024)
        at_limit = _line_of(limit)
        self.assertEqual(len(at_limit), limit)
        rest = b"\r\nHost: a\r\n\r\n"
        for chunks in ([at_limit + rest], [at_limit + b"\r", rest[1:]], [at_limit, rest]):
            events = feed_all(MessageParser(is_request=True), chunks)
            self.assertEqual([type(e) for e in events], [RequestHead, EndOfMessage])
        over = _line_of(limit + 1)
        for chunks in ([over + rest], [over + b"\r", rest[1:]], [over, rest], [over + b"a"]):
            self.assertEqual(rejection(chunks), 414)

    def test_request_line_limit_without_crlf_yet(self) -> None:
        self.assertEqual(rejection([b"GET http://a/" + b"a" * 20000]), 414)

    def test_header_section_limit(self) -> None:
        limit = MessageParser.max_header_bytes
        self.assertEqual(limit, 64 * 1024)
        start = b"GET http://a/ HTTP/1.1"
        # The header section counts from the CRLF after the start line to the last field.
        prefix = b"\r\nX-Big: "
        at_limit = start + prefix + b"v" * (limit - len(prefix)) + b"\r\n\r\n"
        self.assertEqual([type(e) for e in parse(at_limit)], [RequestHead, EndOfMessage])
        over = start + prefix + b"v" * (limit - len(prefix) + 1) + b"\r\n\r\n"
        self.assertEqual(rejection([over]), 431)
        self.assertEqual(rejection([over[:40000], over[40000:]]), 431)

    def test_header_section_limit_many_fields(self) -> None:
        headers = [b"X-Field-%05d: %s" % (i, b"v" * 100) for i in range(700)]
        self.assertEqual(rejection([request_bytes(headers)]), 431)

    def test_header_section_limit_before_end(self) -> None:
        # A head that never ends is refused once it is too large to be acceptable.
        parser = MessageParser(is_request=True)
        parser.feed(b"GET http://a/ HTTP/1.1\r\nX: ")
        with self.assertRaises(ProtocolError) as caught:  # type: ignore[attr-defined]
            for _ in range(100):
                parser.feed(b"v" * 1024)
        self.assertEqual(caught.exception.status, 431)

    def test_long_request_line_and_headers_together(self) -> None:
        # A start line at its limit plus a header section at its limit is acceptable
        # however it arrives.
        line = _line_of(MessageParser.max_request_line)
        prefix = b"\r\nX: "
        data = line + prefix + b"v" * (MessageParser.max_header_bytes - len(prefix)) + b"\r\n\r\n"
        for cut in (len(data) - 1, len(data) - 2, len(data) - 3):
            events = feed_all(MessageParser(is_request=True), [data[:cut], data[cut:]])
            self.assertEqual([type(e) for e in events], [RequestHead, EndOfMessage])

    def test_field_count_limit(self) -> None:
        limit = MessageParser.max_header_fields
        self.assertEqual(limit, 500)
        fields = [b"X-%d: v" % i for i in range(limit)]
        [head, _] = parse(request_bytes(fields))
        assert isinstance(head, RequestHead)
        self.assertEqual(len(head.headers), limit)
        self.assertEqual(rejection([request_bytes(fields + [b"One-More: v"])]), 431)

    def test_limits_are_class_attributes(self) -> None:
        class Strict(MessageParser):
            max_request_line = 100
            max_header_fields = 2

        parser = Strict(is_request=True)
        self.assertRaises(ProtocolError, parser.feed, request_bytes([b"A: 1", b"B: 2", b"C: 3"]))
        with self.assertRaises(ProtocolError) as caught:  # type: ignore[attr-defined]
            Strict(is_request=True).feed(_line_of(101) + b"\r\n\r\n")
        self.assertEqual(caught.exception.status, 414)


class RejectionTests(FramingTestCase):
    def test_content_length_and_transfer_encoding(self) -> None:
        for headers in (
            [b"Content-Length: 5", b"Transfer-Encoding: chunked"],
            [b"Transfer-Encoding: chunked", b"Content-Length: 5"],
            [b"Transfer-Encoding: chunked", b"Content-Length: 0"],
        ):
            self.assertRejected(request_bytes(headers, b"0\r\n\r\n", start=b"POST / HTTP/1.1"), 400)

    def test_conflicting_content_length(self) -> None:
        for headers in (
            [b"Content-Length: 5", b"Content-Length: 6"],
            [b"Content-Length: 5, 6"],
            [b"Content-Length: 5,"],
            [b"Content-Length: 5", b"content-length: 05, 5"],
        ):
            self.assertRejected(request_bytes(headers, b"hello", start=b"POST / HTTP/1.1"), 400)

    def test_invalid_content_length(self) -> None:
        for value in (
            b"abc",
            b"+5",
            b"-1",
            b"0x10",
            b"5 5",
            b"",
            b"1e3",
            b"5.0",
            b"9" * 19,
            b"\xd9\xa5",
        ):
            self.assertRejected(
                request_bytes([b"Content-Length: " + value], start=b"POST / HTTP/1.1"), 400
            )

    def test_obfuscated_transfer_encoding(self) -> None:
        for value in (
            b"xchunked",
            b"chunkedx",
            b"chunked, identity",
            b"identity",
            b"identity, chunked",
            b"gzip, chunked",
            b"chunked, chunked",
            b"chunked;",
            b"chunked;q=1",
            b'"chunked"',
            b"chunked\x0b",
            b"\x0cchunked",
            b"chunked\x00",
            b"chunked\xa0",
            b"chunk ed",
            b"",
        ):
            data = request_bytes(
                [b"Transfer-Encoding: " + value], b"0\r\n\r\n", start=b"POST / HTTP/1.1"
            )
            self.assertRejected(data, 400)
        two = request_bytes(
            [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
            b"0\r\n\r\n",
            start=b"POST / HTTP/1.1",
        )
        self.assertRejected(two, 400)
        spaced_name = request_bytes(
            [b"Transfer-Encoding : chunked"], b"0\r\n\r\n", start=b"POST / HTTP/1.1"
        )
        self.assertRejected(spaced_name, 400)

    def test_transfer_encoding_optional_whitespace_accepted(self) -> None:
        # Spaces and tabs around a field value are OWS (RFC 9110 §5.5), not part of it;
        # the proxy re-frames the body itself, so nothing downstream sees the original.
        for value in (b"chunked ", b" chunked", b"\tchunked\t", b"CHUNKED"):
            data = request_bytes(
                [b"Transfer-Encoding:" + value], b"0\r\n\r\n", start=b"POST / HTTP/1.1"
            )
            [head, end] = parse(data)
            assert isinstance(head, RequestHead)
            self.assertEqual(head.framing, "chunked")
            self.assertEqual(end, EndOfMessage([]))

    def test_transfer_encoding_in_http10(self) -> None:
        data = request_bytes(
            [b"Transfer-Encoding: chunked"], b"0\r\n\r\n", start=b"POST / HTTP/1.0"
        )
        self.assertRejected(data, 400)

    def test_obs_fold(self) -> None:
        self.assertRejected(request_bytes([b"X-A: one", b" two"]), 400)
        self.assertRejected(request_bytes([b"X-A: one", b"\ttwo"]), 400)
        self.assertRejected(request_bytes([b" Host: a"]), 400)

    def test_bare_lf(self) -> None:
        self.assertRejected(b"GET http://a/ HTTP/1.1\nHost: a\n\n", 400)
        self.assertRejected(b"GET http://a/ HTTP/1.1\nHost: a\r\n\r\n", 400)
        self.assertRejected(b"GET http://a/ HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400)
        self.assertRejected(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\n", 400)

    def test_bare_cr(self) -> None:
        self.assertRejected(b"GET http://a/ HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400)
        self.assertRejected(b"GET http://a/ HTTP/1.1\rHost: a\r\n\r\n", 400)
        self.assertRejected(b"GET http://a/\r HTTP/1.1\r\nHost: a\r\n\r\n", 400)
        self.assertRejected(request_bytes([b"X: a\r"]), 400)

    def test_control_bytes_in_header_values(self) -> None:
        for byte in (b"\x00", b"\x01", b"\x08", b"\x0b", b"\x0c", b"\x1b", b"\x1f", b"\x7f"):
            self.assertRejected(request_bytes([b"X-Test: a" + byte + b"b"]), 400)

    def test_tab_and_obs_text_allowed_in_values(self) -> None:
        [head, _] = parse(request_bytes([b"X-Test: a\tb\x80\xff"]))
        assert isinstance(head, RequestHead)
        self.assertEqual(head.headers, [(b"X-Test", b"a\tb\x80\xff")])

    def test_malformed_field_names(self) -> None:
        for line in (
            b"Host : a",
            b"Host\t: a",
            b": a",
            b"No colon",
            b"Bad(Name): a",
            b"Na\x00me: a",
            b"N\xc3\xa9: a",
        ):
            self.assertRejected(request_bytes([line]), 400)

    def test_malformed_request_lines(self) -> None:
        for line in (
            b"GET  http://a/ HTTP/1.1",
            b"GET http://a/  HTTP/1.1",
            b" GET http://a/ HTTP/1.1",
            b"GET http://a/",
            b"GET",
            b"GET http://a/ HTTP/1.1 extra",
            b"G(T http://a/ HTTP/1.1",
            b"GET http://a/\x7f HTTP/1.1",
            b"GET http://a/\x00 HTTP/1.1",
            b"GET http://a/ http/1.1",
            b"GET http://a/ HTTP/1.10",
            b"GET http://a/ HTTP/1",
            b"GET\thttp://a/\tHTTP/1.1",
        ):
            self.assertRejected(request_bytes(start=line), 400)

    def test_unsupported_versions(self) -> None:
        for version in (b"HTTP/2.0", b"HTTP/3.0", b"HTTP/0.9"):
            self.assertRejected(request_bytes(start=b"GET http://a/ " + version), 505)

    def test_invalid_chunk_sizes(self) -> None:
        for size_line in (
            b"z",
            b"0x10",
            b"-1",
            b"+1",
            b" 1",
            b"",
            b"1" * 17,
            b"1\x00",
            b"1;ext\x01",
            b"1;ext\x7f",
            b"1 2",
            b"1\t\x0b",
        ):
            data = request_bytes(
                [b"Transfer-Encoding: chunked"],
                size_line + b"\r\na\r\n0\r\n\r\n",
                start=b"POST / HTTP/1.1",
            )
            self.assertRejected(data, 400)

    def test_chunk_size_line_limit(self) -> None:
        limit = MessageParser.max_chunk_line
        head = request_bytes([b"Transfer-Encoding: chunked"], start=b"POST / HTTP/1.1")
        ok_line = b"1;" + b"e" * (limit - 2)
        self.assertEqual(len(ok_line), limit)
        for chunks in (
            [head + ok_line + b"\r\na\r\n0\r\n\r\n"],
            [head, ok_line + b"\r", b"\na\r\n0\r\n\r\n"],
        ):
            events = merge(feed_all(MessageParser(is_request=True), chunks))
            self.assertEqual(events[1:], [Data(b"a"), EndOfMessage([])])
        long_line = ok_line + b"e"
        for chunks in (
            [head + long_line + b"\r\na\r\n0\r\n\r\n"],
            [head, long_line + b"\r", b"\n"],
            [head, long_line + b"e"],
        ):
            self.assertEqual(rejection(chunks), 400)

    def test_chunk_data_without_crlf(self) -> None:
        for body in (
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r0\r\n\r\n",
            b"3\r\nhello\r\n",
        ):
            data = request_bytes([b"Transfer-Encoding: chunked"], body, start=b"POST / HTTP/1.1")
            self.assertRejected(data, 400)

    def test_bad_trailers(self) -> None:
        for trailer in (b" folded", b"Bad Name: x", b"X: a\x00", b"X: a\rb", b"nocolon"):
            data = request_bytes(
                [b"Transfer-Encoding: chunked"],
                b"0\r\n" + trailer + b"\r\n\r\n",
                start=b"POST / HTTP/1.1",
            )
            self.assertRejected(data, 400)

    def test_framing_fields_in_trailers(self) -> None:
        for trailer in (b"Content-Length: 5", b"transfer-encoding: chunked", b"Host: evil.test"):
            data = request_bytes(
                [b"Transfer-Encoding: chunked"],
                b"1\r\na\r\n0\r\n" + trailer + b"\r\n\r\n",
                start=b"POST / HTTP/1.1",
            )
            self.assertRejected(data, 400)

    def test_trailer_section_limit(self) -> None:
        head = request_bytes([b"Transfer-Encoding: chunked"], b"0\r\n", start=b"POST / HTTP/1.1")
        trailers = b"".join(b"T-%04d: %s\r\n" % (i, b"v" * 1000) for i in range(70))
        self.assertEqual(rejection([head + trailers + b"\r\n"]), 431)

    def test_error_carries_reason(self) -> None:
        try:
            parse(
                request_bytes(
                    [b"Content-Length: 1", b"Transfer-Encoding: chunked"], start=b"POST / HTTP/1.1"
                )
            )
        except ProtocolError as exc:
            self.assertEqual(exc.status, 400)
            self.assertIn("Transfer-Encoding", exc.reason)
            self.assertEqual(str(exc), f"400 {exc.reason}")
        else:
            self.fail("no ProtocolError")


# -- header helpers -------------------------------------------------------------------


class HeaderHelperTests(SynchronousTestCase):
    def test_end_to_end(self) -> None:
        headers: RawHeaders = [
            (b"Host", b"example.com"),
            (b"Connection", b"keep-alive, X-Custom , x-other"),
            (b"X-Custom", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Accept", b"*/*"),
            (b"Proxy-Connection", b"keep-alive"),
            (b"Proxy-Authorization", b"Basic eDp5"),
            (b"Proxy-Authenticate", b"Basic"),
            (b"TE", b"trailers"),
            (b"Trailer", b"X-Checksum"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Upgrade", b"h2c"),
            (b"X-OTHER", b"2"),
            (b"accept", b"text/html"),
            (b"X-Keep", b"kept"),
        ]
        self.assertEqual(
            end_to_end(headers),
            [
                (b"Host", b"example.com"),
                (b"Accept", b"*/*"),
                (b"accept", b"text/html"),
                (b"X-Keep", b"kept"),
            ],
        )

    def test_end_to_end_untouched_without_hop_by_hop(self) -> None:
        headers: RawHeaders = [(b"B", b"1"), (b"a", b"2"), (b"B", b"3")]
        self.assertEqual(end_to_end(headers), headers)

    def test_header_values_and_connection_tokens(self) -> None:
        headers: RawHeaders = [
            (b"Connection", b"Keep-Alive, , Upgrade"),
            (b"connection", b" close "),
        ]
        self.assertEqual(
            header_values(headers, b"connection"), [b"Keep-Alive", b"Upgrade", b"close"]
        )
        self.assertEqual(connection_tokens(headers), {b"keep-alive", b"upgrade", b"close"})
        self.assertEqual(header_values(headers, b"missing"), [])

    def test_wants_keep_alive(self) -> None:
        cases = [
            (b"HTTP/1.1", [], True),
            (b"HTTP/1.1", [(b"Connection", b"close")], False),
            (b"HTTP/1.1", [(b"Connection", b"Keep-Alive, Close")], False),
            (b"HTTP/1.1", [(b"connection", b"upgrade")], True),
            (b"HTTP/1.0", [], False),
            (b"HTTP/1.0", [(b"Connection", b"keep-alive")], True),
            (b"HTTP/1.0", [(b"CONNECTION", b"Keep-Alive")], True),
            (b"HTTP/1.0", [(b"Connection", b"keep-alive"), (b"Connection", b"close")], False),
        ]
        for version, headers, expected in cases:
            self.assertEqual(wants_keep_alive(version, headers), expected, (version, headers))


# -- targets --------------------------------------------------------------------------


def _target_status(target: bytes) -> int:
    try:
        parse_absolute_target(target)
    except ProtocolError as exc:
        return exc.status
    raise AssertionError(f"{target!r} accepted")


def _connect_status(target: bytes) -> int:
    try:
        parse_connect_target(target)
    except ProtocolError as exc:
        return exc.status
    raise AssertionError(f"{target!r} accepted")


class AbsoluteTargetTests(SynchronousTestCase):
    def test_parses(self) -> None:
        cases = [
            (b"http://example.com/path?q=1", Origin("http", "example.com", 80), b"/path?q=1"),
            (b"http://example.com", Origin("http", "example.com", 80), b"/"),
            (b"https://example.com", Origin("https", "example.com", 443), b"/"),
            (b"https://example.com:443/x", Origin("https", "example.com", 443), b"/x"),
            (b"http://example.com:8080/a/b", Origin("http", "example.com", 8080), b"/a/b"),
            (b"http://example.com:80/", Origin("http", "example.com", 80), b"/"),
            (b"http://example.com?q", Origin("http", "example.com", 80), b"/?q"),
            (b"http://example.com?", Origin("http", "example.com", 80), b"/?"),
            (b"http://[::1]:8080/", Origin("http", "::1", 8080), b"/"),
            (b"http://[::1]/x", Origin("http", "::1", 80), b"/x"),
            (b"http://[2001:DB8::1]:65535/", Origin("http", "2001:db8::1", 65535), b"/"),
            (b"http://127.0.0.1:1/", Origin("http", "127.0.0.1", 1), b"/"),
            (b"HTTP://Example.COM/Path?Q=A", Origin("http", "example.com", 80), b"/Path?Q=A"),
            (b"http://example.com:/", Origin("http", "example.com", 80), b"/"),
            (
                b"http://a/%20b?c=%ZZ&d=/~!$'()*+,;=:@",
                Origin("http", "a", 80),
                b"/%20b?c=%ZZ&d=/~!$'()*+,;=:@",
            ),
        ]
        for raw, origin, path in cases:
            self.assertEqual(parse_absolute_target(raw), Target(origin, path), raw)

    def test_url(self) -> None:
        self.assertEqual(
            parse_absolute_target(b"http://Example.com:80/a?b").url, "http://example.com/a?b"
        )
        self.assertEqual(parse_absolute_target(b"http://[::1]:8080/").url, "http://[::1]:8080/")
        self.assertEqual(parse_absolute_target(b"https://h:8443").url, "https://h:8443/")

    def test_userinfo_rejected(self) -> None:
        for raw in (
            b"http://user@example.com/",
            b"http://user:pw@example.com/",
            b"http://@example.com/",
        ):
            self.assertEqual(_target_status(raw), 400)

    def test_bad_ports(self) -> None:
        for port in (
            b"0",
            b"65536",
            b"99999999999999999999",
            b"abc",
            b"-1",
            b"+80",
            b"8o",
            b"80:80",
        ):
            self.assertEqual(_target_status(b"http://example.com:" + port + b"/"), 400, port)
        self.assertEqual(_target_status(b"http://[::1]:0/"), 400)

    def test_non_http_schemes(self) -> None:
        for raw in (
            b"ftp://example.com/",
            b"ws://example.com/",
            b"file:///etc/passwd",
            b"gopher://h/",
            b"h2://h/",
        ):
            self.assertEqual(_target_status(raw), 400, raw)

    def test_not_absolute_form(self) -> None:
        for raw in (
            b"/path",
            b"*",
            b"example.com:80",
            b"example.com/",
            b"http:/example.com/",
            b"//example.com/",
        ):
            self.assertEqual(_target_status(raw), 400, raw)

    def test_fragment_rejected(self) -> None:
        for raw in (
            b"http://example.com/a#frag",
            b"http://example.com#x",
            b"http://example.com/?q#",
        ):
            self.assertEqual(_target_status(raw), 400, raw)

    def test_bad_hosts(self) -> None:
        for raw in (
            b"http:///path",
            b"http://:80/",
            b"http://exa\xc3\xa9mple.com/",
            b"http://ex ample.com/",
            b"http://::1/",
            b"http://[::1/",
            b"http://[zz::1]/",
            b"http://[::1]x/",
            b"http://[127.0.0.1]/",
            b'http://exa"mple/',
        ):
            self.assertEqual(_target_status(raw), 400, raw)

    def test_bad_paths(self) -> None:
        for raw in (b"http://a/\xc3\xa9", b"http://a/\x7f", b"http://a/b\tc", b"http://a/b c"):
            self.assertEqual(_target_status(raw), 400, raw)


class ConnectTargetTests(SynchronousTestCase):
    def test_parses(self) -> None:
        self.assertEqual(
            parse_connect_target(b"example.com:443"), Origin("https", "example.com", 443)
        )
        self.assertEqual(
            parse_connect_target(b"Example.COM:8443"), Origin("https", "example.com", 8443)
        )
        self.assertEqual(parse_connect_target(b"[::1]:8443"), Origin("https", "::1", 8443))
        self.assertEqual(parse_connect_target(b"10.0.0.1:22"), Origin("https", "10.0.0.1", 22))

    def test_port_required(self) -> None:
        for raw in (b"example.com", b"example.com:", b"[::1]", b"[::1]:"):
            self.assertEqual(_connect_status(raw), 400, raw)

    def test_rejected(self) -> None:
        for raw in (
            b"",
            b":443",
            b"user@example.com:443",
            b"example.com:0",
            b"example.com:65536",
            b"example.com:https",
            b"http://example.com:443",
            b"example.com:443/path",
            b"::1:443",
            b"[::1:443",
        ):
            self.assertEqual(_connect_status(raw), 400, raw)


# -- properties -----------------------------------------------------------------------

_FRAGMENTS = [
    b"GET ",
    b"POST ",
    b"CONNECT ",
    b"http://a/ ",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 100 Continue",
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b" ",
    b":",
    b";",
    b",",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: ",
    b"Connection: close",
    b"0",
    b"5",
    b"ff",
    b"0\r\n\r\n",
    b"hello",
    b"\x00",
    b"\t",
    b"\xff",
]

_chunk_soup = st.lists(
    st.one_of(st.sampled_from(_FRAGMENTS), st.binary(max_size=12)), max_size=40
).map(b"".join)


def _cuts(data: bytes, positions: list[int]) -> list[bytes]:
    cuts = sorted({p % (len(data) + 1) for p in positions})
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


def _drive(
    is_request: bool, method: bytes, chunks: Iterable[bytes]
) -> tuple[list[Event], int | None]:
    """Feed ``chunks``, going on to the next message after each end; then end of stream.
    Returns the merged events and the status of the ProtocolError, if one was raised."""
    parser = MessageParser(is_request, method)
    events: list[Event] = []

    def advance(new: list[Event]) -> None:
        events.extend(new)
        while new and (
            isinstance(new[-1], EndOfMessage)
            or (isinstance(new[-1], ResponseHead) and new[-1].informational)
        ):
            new = (
                parser.next(method)
                if isinstance(new[-1], EndOfMessage)
                else parser.continue_after_informational()
            )
            events.extend(new)

    try:
        for chunk in chunks:
            advance(parser.feed(chunk))
        advance(parser.feed_eof())
    except ProtocolError as exc:
        assert exc.status in (400, 414, 431, 505, 502), exc.status
        return merge(events), exc.status
    return merge(events), None


class ArbitraryBytesProperties(SynchronousTestCase):
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        data=st.one_of(st.binary(max_size=300), _chunk_soup),
        positions=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
        is_request=st.booleans(),
        method=st.sampled_from([b"GET", b"HEAD", b"POST", b"CONNECT"]),
    )
    def test_only_protocol_errors(
        self, data: bytes, positions: list[int], is_request: bool, method: bytes
    ) -> None:
        _drive(is_request, method, _cuts(data, positions))

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        data=_chunk_soup,
        positions=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
        is_request=st.booleans(),
    )
    def test_split_invariant(self, data: bytes, positions: list[int], is_request: bool) -> None:
        """However the bytes are split, the same events come out, and an error either way."""
        whole_events, whole_error = _drive(is_request, b"GET", [data])
        split_events, split_error = _drive(is_request, b"GET", _cuts(data, positions))
        self.assertEqual(split_error is None, whole_error is None)
        if whole_error is None:
            self.assertEqual(split_events, whole_events)


_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_token = st.text(alphabet=_TOKEN_CHARS, min_size=1, max_size=12).map(str.encode)
_value = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E) | st.sampled_from(" \t"),
    max_size=30,
).map(lambda s: s.strip(" \t").encode("ascii"))
_FRAMING_NAMES = {b"content-length", b"transfer-encoding"}
_header = st.tuples(_token, _value).filter(lambda h: h[0].lower() not in _FRAMING_NAMES)
_path = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E).filter(lambda c: c != "#"),
    max_size=20,
)


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[bytes, RequestHead, bytes]:
    """Bytes of a valid request, the head expected from them, and the body."""
    method = draw(_token)
    target = b"http://example.com/" + draw(_path).encode("ascii")
    headers: RawHeaders = draw(st.lists(_header, max_size=12))
    body = draw(st.binary(max_size=200))
    version = b"HTTP/1.1"
    if draw(st.booleans()):
        framing, length = "length", len(body)
        name = draw(st.sampled_from([b"Content-Length", b"content-length", b"CONTENT-LENGTH"]))
        headers.insert(draw(st.integers(0, len(headers))), (name, str(len(body)).encode()))
        wire_body = body
        version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    else:
        framing, length = "chunked", 0
        name = draw(st.sampled_from([b"Transfer-Encoding", b"transfer-encoding"]))
        headers.insert(draw(st.integers(0, len(headers))), (name, b"chunked"))
        sizes = draw(st.lists(st.integers(1, 64), max_size=8))
        wire_body, rest = b"", body
        for size in sizes:
            piece, rest = rest[:size], rest[size:]
            if piece:
                ext = draw(st.sampled_from([b"", b";a=b", b" ;x"]))
                wire_body += b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)
        if rest:
            wire_body += b"%X\r\n%s\r\n" % (len(rest), rest)
        wire_body += b"0\r\n\r\n"
    wire = method + b" " + target + b" " + version + b"\r\n"
    wire += b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n" + wire_body
    return wire, RequestHead(method, target, version, headers, framing, length), body


class ValidRequestProperties(SynchronousTestCase):
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        request=valid_requests(),
        positions=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
        pipelined=st.booleans(),
    )
    def test_parses_to_input(
        self, request: tuple[bytes, RequestHead, bytes], positions: list[int], pipelined: bool
    ) -> None:
        wire, expected_head, body = request
        follow = request_bytes(start=b"GET http://next/ HTTP/1.1") if pipelined else b""
        parser = MessageParser(is_request=True)
        events = feed_all(parser, _cuts(wire + follow, positions))
        head, *rest = events
        self.assertEqual(head, expected_head)
        assert isinstance(head, RequestHead)
        self.assertEqual(head.headers, expected_head.headers)
        self.assertTrue(all(isinstance(e, Data) for e in rest[:-1]))
        self.assertEqual(b"".join(e.data for e in rest[:-1] if isinstance(e, Data)), body)
        self.assertIsInstance(rest[-1], EndOfMessage)
        self.assertEqual(parser.buffered, len(follow))
        if pipelined:
            after = parser.next()
            assert isinstance(after[0], RequestHead)
            self.assertEqual(after[0].target, b"http://next/")


class SingleContentLengthTests(SynchronousTestCase):
    """RFC 9110 §8.6: a Content-Length list or repeated field is forwarded as one value."""

    def test_list_becomes_one_value(self) -> None:
        self.assertEqual(
            single_content_length([(b"Host", b"a"), (b"Content-Length", b"5, 5"), (b"X", b"1")]),
            [(b"Host", b"a"), (b"Content-Length", b"5"), (b"X", b"1")],
        )

    def test_repeated_fields_become_one_at_the_first_place(self) -> None:
        self.assertEqual(
            single_content_length(
                [(b"content-length", b"5"), (b"X", b"1"), (b"Content-Length", b" 5 ,5 ")]
            ),
            [(b"content-length", b"5"), (b"X", b"1")],
        )

    def test_single_value_and_absent_are_unchanged(self) -> None:
        for headers in ([(b"Content-Length", b"5")], [(b"X", b"1")], []):
            self.assertEqual(single_content_length(headers), headers)

    def test_end_to_end_never_forwards_a_list(self) -> None:
        self.assertEqual(
            end_to_end([(b"Content-Length", b"5, 5"), (b"Connection", b"close")]),
            [(b"Content-Length", b"5")],
        )

    @given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=5),
           st.booleans())
    def test_any_agreeing_repetition_forwards_one_value(self, length: int, copies: int,
                                                        as_list: bool) -> None:
        value = str(length).encode()
        if as_list:
            headers = [(b"Content-Length", b", ".join([value] * copies))]
        else:
            headers = [(b"Content-Length", value)] * copies
        self.assertEqual(single_content_length(headers), [(b"Content-Length", value)])
