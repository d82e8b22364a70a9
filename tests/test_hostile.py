"""Hostile requests against the real ``twistd -n postcap``, over raw sockets.

Every shape is sent to a proxy whose upstream is :class:`tests.raw_origin.RawOrigin`,
which records every byte it receives.  Each case asserts the exact status and
``X-Postcap-Error`` kind, that nothing reached the origin (or, for bodies found
malformed after the head was forwarded, that the origin's connection was cut
before a complete request), and that the listener and an already open keep-alive
connection carry on.  docs/security.md has the same table in words.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Iterator

import pytest

from tests.harness import free_port
from tests.postcap_process import PostcapProcess
from tests.raw_origin import RawOrigin

ORIGIN = b"ORIGIN"  # replaced by the raw origin's authority
SELF = b"SELF"  # replaced by the proxy's own authority


@pytest.fixture(scope="module")
def origin() -> Iterator[RawOrigin]:
    with RawOrigin() as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    data_dir = tmp_path_factory.mktemp("hostile")
    with PostcapProcess(
        data_dir, "--header-timeout", "2", "--idle-timeout", "30", "--upstream-timeout", "3",
        "--connect-timeout", "2", "--ignore-hosts", r"^127\.0\.0\.1$",
    ) as running:
        running.rpc("session.start", name="hostile")
        yield running


# -- raw HTTP helpers ------------------------------------------------------------------------


class RawConn:
    """A client socket with a buffered reader kept across responses (pipelined answers)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.stream = sock.makefile("rb")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def close(self) -> None:
        self.stream.close()
        self.sock.close()

    def __enter__(self) -> "RawConn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(port: int, source: str | None = None, timeout: float = 10.0) -> RawConn:
    sock = socket.socket()
    sock.settimeout(timeout)
    if source is not None:
        sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return RawConn(sock)


def read_response(
    sock: RawConn, timeout: float = 10.0, no_body: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """One response from ``sock``: (status, lower-cased headers, body); ``no_body`` for
    the answer to CONNECT."""
    sock.settimeout(timeout)
    stream = sock.stream
    status_line = stream.readline()
    if not status_line:
        raise ConnectionError("closed before a response head")
    status = int(status_line.split(b" ")[1])
    headers: dict[str, str] = {}
    while True:
        line = stream.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if no_body:
        return status, headers, b""
    if "content-length" in headers:
        return status, headers, stream.read(int(headers["content-length"]))
    body = b""
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int(stream.readline().split(b";")[0], 16)
            if size == 0:
                while stream.readline() not in (b"\r\n", b""):
                    pass
                return status, headers, body
            body += stream.read(size)
            stream.readline()
    return status, headers, stream.read()


def send_raw(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes, bool]:
    """Send ``data`` on a new connection; (status, headers, body, closed-after)."""
    with connect(port, timeout=timeout) as sock:
        sock.sendall(data)
        status, headers, body = read_response(sock, timeout)
        sock.settimeout(2)
        try:
            closed = sock.stream.read(1) == b""
        except (socket.timeout, ConnectionResetError):
            closed = False
        return status, headers, body, closed


class KeepAlive:
    """A keep-alive client connection that stays open across a hostile case."""

    def __init__(self, server: PostcapProcess, origin: RawOrigin) -> None:
        self.sock = connect(server.port)
        self.url = origin.url("/keepalive").encode()

    def get(self) -> tuple[int, bytes]:
        self.sock.sendall(b"GET " + self.url + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = read_response(self.sock)
        return status, body

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def keeper(server: PostcapProcess, origin: RawOrigin) -> Iterator[KeepAlive]:
    """An open keep-alive connection; the test checks it still works afterwards."""
    client = KeepAlive(server, origin)
    assert client.get() == (200, b"ok")
    yield client
    client.close()


def fill(data: bytes, server: PostcapProcess, origin: RawOrigin) -> bytes:
    return data.replace(ORIGIN, f"127.0.0.1:{origin.port}".encode()).replace(
        SELF, f"127.0.0.1:{server.port}".encode()
    )


def assert_carries_on(server: PostcapProcess, origin: RawOrigin, keeper: KeepAlive) -> None:
    assert keeper.get() == (200, b"ok"), "an open keep-alive connection stopped working"
    status, _, body, _ = send_raw(server.port, b"GET " + origin.url("/fresh").encode()
                                  + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (status, body) == (200, b"ok"), "the listener stopped serving"


# -- rejected before anything is forwarded ---------------------------------------------------

POST = b"POST http://ORIGIN/sink HTTP/1.1\r\nHost: ORIGIN\r\n"
GET = b"GET http://ORIGIN/get HTTP/1.1\r\nHost: ORIGIN\r\n"

REJECTED: list[tuple[str, bytes, int, str]] = [
    # request smuggling: two framings, conflicting or malformed lengths
    ("cl-and-te", POST + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad-request"),
    ("te-and-cl", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400, "bad-request"),
    ("cl-conflicting-fields", POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, "bad-request"),
    ("cl-conflicting-list", POST + b"Content-Length: 3, 4\r\n\r\nabcd", 400, "bad-request"),
    ("cl-plus-sign", POST + b"Content-Length: +3\r\n\r\nabc", 400, "bad-request"),
    ("cl-negative", POST + b"Content-Length: -1\r\n\r\n", 400, "bad-request"),
    ("cl-hex", POST + b"Content-Length: 0x3\r\n\r\nabc", 400, "bad-request"),
    ("cl-inner-space", POST + b"Content-Length: 1 2\r\n\r\nabc", 400, "bad-request"),
    ("cl-huge", POST + b"Content-Length: 99999999999999999999\r\n\r\n", 400, "bad-request"),
    ("cl-empty", POST + b"Content-Length:\r\n\r\n", 400, "bad-request"),
    # obfuscated Transfer-Encoding
    ("te-chunked-identity", POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400, "bad-request"),
    ("te-identity-chunked", POST + b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 400, "bad-request"),
    ("te-xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400, "bad-request"),
    ("te-chunked-x", POST + b"Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n", 400, "bad-request"),
    ("te-twice", POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad-request"),
    ("te-gzip-chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400, "bad-request"),
    ("te-vertical-tab", POST + b"Transfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n", 400, "bad-request"),
    ("te-space-before-colon", POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, "bad-request"),
    ("te-quoted", POST + b'Transfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n', 400, "bad-request"),
    ("te-in-http10", b"POST http://ORIGIN/sink HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad-request"),
    # invalid chunk sizes and extensions (all in one segment: rejected before forwarding)
    ("chunk-size-not-hex", POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, "bad-request"),
    ("chunk-size-negative", POST + b"Transfer-Encoding: chunked\r\n\r\n-1\r\n\r\n", 400, "bad-request"),
    ("chunk-size-0x", POST + b"Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", 400, "bad-request"),
    ("chunk-size-overflow", POST + b"Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\na\r\n0\r\n\r\n", 400, "bad-request"),
    ("chunk-size-leading-space", POST + b"Transfer-Encoding: chunked\r\n\r\n 3\r\nabc\r\n0\r\n\r\n", 400, "bad-request"),
    ("chunk-size-empty", POST + b"Transfer-Encoding: chunked\r\n\r\n\r\nabc\r\n0\r\n\r\n", 400, "bad-request"),
    ("chunk-ext-control", POST + b"Transfer-Encoding: chunked\r\n\r\n3;x=\x01\r\nabc\r\n0\r\n\r\n", 400, "bad-request"),
    ("chunk-ext-bare-lf", POST + b"Transfer-Encoding: chunked\r\n\r\n3;a\nb\r\nabc\r\n0\r\n\r\n", 400, "bad-request"),
    ("chunk-data-too-long", POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n", 400, "bad-request"),
    ("chunk-size-line-4k", POST + b"Transfer-Encoding: chunked\r\n\r\n3;" + b"e" * 5000 + b"\r\nabc\r\n0\r\n\r\n", 400, "bad-request"),
    # chunked trailers that would re-frame or re-route the message
    ("trailer-content-length", POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n", 400, "bad-request"),
    ("trailer-host", POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nHost: evil.test\r\n\r\n", 400, "bad-request"),
    ("trailer-obs-fold", POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: a\r\n b\r\n\r\n", 400, "bad-request"),
    ("trailer-nul", POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: a\x00b\r\n\r\n", 400, "bad-request"),
    # line structure
    ("obs-fold", GET + b"X-Folded: a\r\n b\r\n\r\n", 400, "bad-request"),
    ("obs-fold-tab", GET + b"X-Folded: a\r\n\tb\r\n\r\n", 400, "bad-request"),
    ("bare-lf-everywhere", b"GET http://ORIGIN/get HTTP/1.1\nHost: ORIGIN\n\n", 400, "bad-request"),
    ("bare-lf-in-header", GET + b"X-A: a\nX-B: b\r\n\r\n", 400, "bad-request"),
    ("bare-lf-request-line", b"GET http://ORIGIN/get HTTP/1.1\nHost: ORIGIN\r\n\r\n", 400, "bad-request"),
    ("bare-cr-in-header", GET + b"X-A: a\rX-B: b\r\n\r\n", 400, "bad-request"),
    ("bare-cr-request-line", b"GET http://ORIGIN/get\rHTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("cr-cr-lf", GET + b"X-A: a\r\r\n\r\n", 400, "bad-request"),
    # NUL and control bytes
    ("nul-in-value", GET + b"X-A: a\x00b\r\n\r\n", 400, "bad-request"),
    ("nul-in-name", GET + b"X-\x00A: a\r\n\r\n", 400, "bad-request"),
    ("soh-in-value", GET + b"X-A: a\x01b\r\n\r\n", 400, "bad-request"),
    ("esc-in-value", GET + b"X-A: \x1b[31mred\r\n\r\n", 400, "bad-request"),
    ("del-in-value", GET + b"X-A: a\x7fb\r\n\r\n", 400, "bad-request"),
    ("nul-in-target", b"GET http://ORIGIN/a\x00b HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("nul-in-method", b"G\x00T http://ORIGIN/ HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("space-in-name", GET + b"X A: a\r\n\r\n", 400, "bad-request"),
    ("empty-name", GET + b": a\r\n\r\n", 400, "bad-request"),
    ("no-colon", GET + b"NoColonHere\r\n\r\n", 400, "bad-request"),
    # sizes
    ("request-line-16k", b"GET http://ORIGIN/" + b"a" * (16 * 1024) + b" HTTP/1.1\r\n\r\n", 414, "uri-too-long"),
    ("request-line-no-end", b"GET http://ORIGIN/" + b"a" * (20 * 1024), 414, "uri-too-long"),
    ("headers-64k", GET + b"X-Big: " + b"b" * (65 * 1024) + b"\r\n\r\n", 431, "headers-too-large"),
    ("headers-many", GET + b"".join(b"X-%d: v\r\n" % i for i in range(501)) + b"\r\n", 431, "headers-too-large"),
    ("headers-no-end", GET + b"X-Big: " + b"b" * (90 * 1024), 431, "headers-too-large"),
    # request lines and targets
    ("origin-form", b"GET /relative HTTP/1.1\r\nHost: ORIGIN\r\n\r\n", 400, "bad-request"),
    ("asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: ORIGIN\r\n\r\n", 400, "bad-request"),
    ("scheme-only", b"GET http:// HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("no-host", b"GET http:///path HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("userinfo", b"GET http://user:pw@ORIGIN/ HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("port-zero", b"GET http://127.0.0.1:0/ HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("port-65536", b"GET http://127.0.0.1:65536/ HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("port-not-digits", b"GET http://127.0.0.1:8o/ HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("ftp-scheme", b"GET ftp://ORIGIN/file HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("javascript-scheme", b"GET javascript:alert(1) HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("fragment", b"GET http://ORIGIN/a#frag HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("non-ascii-host", b"GET http://\xc3\xa9x.test/ HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("broken-ipv6", b"GET http://[::1/ HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("bad-host-chars", b"GET http://a<b>.test/ HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("two-spaces", b"GET  http://ORIGIN/ HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("http09", b"GET http://ORIGIN/\r\n\r\n", 400, "bad-request"),
    ("bad-method", b"G(T http://ORIGIN/ HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("lowercase-version", b"GET http://ORIGIN/ http/1.1\r\n\r\n", 400, "bad-request"),
    ("http2-version", b"GET http://ORIGIN/ HTTP/2.0\r\n\r\n", 505, "http-version"),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "http-version"),
    ("https-absolute", b"GET https://ORIGIN/ HTTP/1.1\r\n\r\n", 501, "unsupported"),
    ("tls-hello-as-http", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400, "bad-request"),
    ("leading-empty-lines", b"\r\n" * 20 + GET + b"\r\n", 400, "bad-request"),
    # CONNECT targets: any port 1..65535 is allowed; these are not
    ("connect-port-zero", b"CONNECT 127.0.0.1:0 HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("connect-port-65536", b"CONNECT 127.0.0.1:65536 HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("connect-port-huge", b"CONNECT 127.0.0.1:99999999999999999999 HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("connect-port-negative", b"CONNECT 127.0.0.1:-443 HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("connect-no-port", b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("connect-named-port", b"CONNECT example.test:https HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("connect-url", b"CONNECT http://example.test:443/ HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("connect-userinfo", b"CONNECT u@example.test:443 HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("connect-cl-and-te", b"CONNECT ORIGIN HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "bad-request"),
    # loops: requests to the proxy's own address, or that already went around
    ("loop-own-address", b"GET http://SELF/x HTTP/1.1\r\nHost: SELF\r\n\r\n", 508, "loop"),
    ("loop-connect-own-address", b"CONNECT SELF HTTP/1.1\r\n\r\n", 508, "loop"),
    ("loop-via", GET + b"Via: 1.1 postcap, 1.1 postcap\r\nVia: 1.1 postcap, 1.0 postcap\r\n\r\n", 508, "loop"),
]


@pytest.mark.parametrize("name, data, status, kind", REJECTED, ids=[case[0] for case in REJECTED])
def test_rejected_and_nothing_forwarded(
    server: PostcapProcess, origin: RawOrigin, keeper: KeepAlive,
    name: str, data: bytes, status: int, kind: str,
) -> None:
    before = origin.received()
    got_status, headers, body, closed = send_raw(server.port, fill(data, server, origin))
    assert (got_status, headers.get("x-postcap-error")) == (status, kind), body
    assert body.startswith(b"postcap: ") and headers["content-type"].startswith("text/plain")
    assert headers["connection"] == "close" and closed
    time.sleep(0.05)
    assert origin.received() == before, f"{name}: bytes reached the origin"
    assert_carries_on(server, origin, keeper)


def test_loop_through_a_host_name(server: PostcapProcess, keeper: KeepAlive, origin: RawOrigin) -> None:
    """``localhost:PROXYPORT`` is not recognised by its text: the looped-back connection is
    recognised as postcap's own, answered 508, and that answer is what the client gets."""
    status, headers, body, _ = send_raw(
        server.port, b"GET http://localhost:%d/x HTTP/1.1\r\nConnection: close\r\n\r\n" % server.port
    )
    assert (status, headers.get("x-postcap-error")) == (508, "loop"), body
    assert b"came back to postcap" in body
    assert_carries_on(server, origin, keeper)


# -- malformed bodies found after the head was forwarded ---------------------------------------


@pytest.mark.parametrize("bad_chunk", [b"zz\r\n", b"3\r\nabcdef\r\n", b"3;\x00\r\nabc\r\n"])
def test_bad_chunk_after_head_cuts_the_upstream(
    server: PostcapProcess, origin: RawOrigin, keeper: KeepAlive, bad_chunk: bytes
) -> None:
    marker = f"/chunk-{len(bad_chunk)}-{time.monotonic_ns()}".encode()
    head = b"POST " + origin.url("").encode() + marker + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    with connect(server.port) as sock:
        sock.sendall(head + b"2\r\nok\r\n")
        assert origin.wait_for(marker + b" HTTP/1.1"), "the head was not forwarded"
        sock.sendall(bad_chunk)
        status, headers, body = read_response(sock)
    assert (status, headers.get("x-postcap-error")) == (400, "bad-request"), body
    upstream = next(i for i in range(len(origin.connections))
                    if marker in bytes(origin.connections[i]))
    assert origin.closed[upstream].wait(5), "the upstream connection was not closed"
    received = bytes(origin.connections[upstream])
    assert bad_chunk not in received and not received.endswith(b"0\r\n\r\n")
    assert_carries_on(server, origin, keeper)


# -- accepted shapes are forwarded exactly once, normalised only where the meaning is equal -----


def test_te_with_optional_whitespace_and_case_is_chunked(server: PostcapProcess, origin: RawOrigin) -> None:
    marker = b"/te-ows"
    data = (b"POST " + origin.url("").encode() + marker + b" HTTP/1.1\r\n"
            b"Transfer-Encoding:  Chunked \r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n")
    status, _, body, _ = send_raw(server.port, data + b"")
    assert (status, body) == (200, b"ok")
    assert origin.wait_for(marker)
    received = origin.received()
    forwarded = received[received.index(b"POST " + marker):]
    assert b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n" in forwarded
    assert forwarded.count(b"POST ") == 1


def test_repeated_equal_content_length_is_one_request(server: PostcapProcess, origin: RawOrigin) -> None:
    marker = b"/cl-twice"
    data = (b"POST " + origin.url("").encode() + marker + b" HTTP/1.1\r\n"
            b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
    status, _, body, _ = send_raw(server.port, data)
    assert (status, body) == (200, b"ok")
    received = origin.received()
    forwarded = received[received.index(b"POST " + marker):]
    assert forwarded.endswith(b"\r\n\r\nabc") and forwarded.count(b"POST ") == 1


def test_single_postcap_via_is_chaining_not_a_loop(server: PostcapProcess, origin: RawOrigin) -> None:
    marker = b"/via-once"
    status, _, body, _ = send_raw(server.port, b"GET " + origin.url("").encode() + marker
                                  + b" HTTP/1.1\r\nVia: 1.1 postcap\r\n\r\n")
    assert (status, body) == (200, b"ok")
    assert origin.wait_for(marker)
    received = origin.received()
    assert b"Via: 1.1 postcap\r\nVia: 1.1 postcap\r\n" in received[received.index(marker):]


def test_connect_to_any_valid_port_is_tunnelled(server: PostcapProcess, origin: RawOrigin) -> None:
    """CONNECT policy: every port 1..65535 is allowed (here the origin's odd port,
    tunnelled blind because 127.0.0.1 is in --ignore-hosts)."""
    with connect(server.port) as sock:
        sock.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % origin.port)
        status, _, _ = read_response(sock, no_body=True)
        assert status == 200
        sock.sendall(b"GET /through-tunnel HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[2] == b"ok"
    assert origin.wait_for(b"GET /through-tunnel HTTP/1.1")


def test_pipelined_garbage_after_a_valid_request(server: PostcapProcess, origin: RawOrigin) -> None:
    """The valid first request is answered; the garbage after it gets 400 and nothing more."""
    marker = b"/pipelined-first"
    with connect(server.port) as sock:
        sock.sendall(b"GET " + origin.url("").encode() + marker + b" HTTP/1.1\r\n\r\n"
                     b"GET " + origin.url("/second").encode() + b" HTTP/1.1\r\nX: \x00\r\n\r\n")
        assert read_response(sock)[:1] == (200,)
        status, headers, _ = read_response(sock)
        assert (status, headers["x-postcap-error"]) == (400, "bad-request")
    assert b"/second" not in origin.received()


# -- slow and vanishing peers -----------------------------------------------------------------


def test_trickled_headers_get_408_on_time(server: PostcapProcess, origin: RawOrigin, keeper: KeepAlive) -> None:
    """Slowloris: one byte every 0.3 s does not extend the 2 s header deadline."""
    request = GET.replace(b"ORIGIN", f"127.0.0.1:{origin.port}".encode()) + b"X-Slow: " + b"s" * 100
    started = time.monotonic()
    answer = b""
    with connect(server.port) as sock:
        sock.settimeout(0.3)
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
                answer += sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if answer:
                break
        sock.settimeout(5)
        try:
            answer += sock.recv(4096)
        except OSError:
            pass
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"X-Postcap-Error: header-timeout" in answer
    assert 1.5 < elapsed < 6, elapsed
    assert_carries_on(server, origin, keeper)


def test_upstream_connect_timeout_is_504(server: PostcapProcess, keeper: KeepAlive, origin: RawOrigin) -> None:
    # A listener whose backlog is full drops further SYNs: connecting hangs.
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        hogs = []
        for _ in range(3):
            hog = socket.socket()
            hog.setblocking(False)
            hog.connect_ex(("127.0.0.1", port))
            hogs.append(hog)
        try:
            started = time.monotonic()
            status, headers, body, _ = send_raw(
                server.port, b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nConnection: close\r\n\r\n" % port
            )
            elapsed = time.monotonic() - started
        finally:
            for hog in hogs:
                hog.close()
    assert (status, headers["x-postcap-error"]) == (504, "connect-timeout"), body
    assert b"timed out connecting" in body
    assert 1.5 < elapsed < 8
    assert_carries_on(server, origin, keeper)


def test_upstream_read_timeout_is_504(server: PostcapProcess, origin: RawOrigin) -> None:
    status, headers, body, _ = send_raw(server.port, b"GET " + origin.url("/hang").encode() + b" HTTP/1.1\r\n\r\n")
    assert (status, headers["x-postcap-error"]) == (504, "timeout"), body
    assert b"did not answer within 3 s" in body


def _transaction_for(server: PostcapProcess, fragment: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        items = [i for i in server.requests(limit=1000) if fragment in i["url"]]
        if items or time.monotonic() > deadline:
            assert items, f"no transaction for {fragment}"
            return items[-1]
        time.sleep(0.1)


def test_client_disconnects_mid_upload(server: PostcapProcess, origin: RawOrigin) -> None:
    marker = f"/upload-cut-{time.monotonic_ns()}"
    with connect(server.port) as sock:
        sock.sendall(b"POST " + origin.url(marker).encode() + b" HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n"
                     + b"u" * 20000)
        assert origin.wait_for(b"u" * 20000)
    upstream = next(i for i in range(len(origin.connections))
                    if marker.encode() in bytes(origin.connections[i]))
    assert origin.closed[upstream].wait(5), "the upstream side was not closed"
    item = _transaction_for(server, marker)
    assert item["error"] == "client disconnected before the exchange ended"
    assert item["request_bytes"] == 20000


def test_client_disconnects_mid_download(server: PostcapProcess, origin: RawOrigin) -> None:
    marker = f"/big?cut={time.monotonic_ns()}"
    with connect(server.port) as sock:
        sock.sendall(b"GET " + origin.url(marker).encode() + b" HTTP/1.1\r\n\r\n")
        received = 0
        while received < 1_000_000:
            received += len(sock.recv(65536))
    upstream = next(i for i in range(len(origin.connections))
                    if marker.encode() in bytes(origin.connections[i]))
    assert origin.closed[upstream].wait(10), "the upstream side was not closed"
    item = _transaction_for(server, marker)
    assert item["status"] == 200
    assert item["error"] == "client disconnected before the exchange ended"


def test_upstream_closes_mid_body(server: PostcapProcess, origin: RawOrigin) -> None:
    marker = f"/short-body?n={time.monotonic_ns()}"
    with connect(server.port) as sock:
        sock.sendall(b"GET " + origin.url(marker).encode() + b" HTTP/1.1\r\n\r\n")
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: 1000" in head and len(body) == 100, "client saw the connection close short"
    item = _transaction_for(server, marker)
    assert item["status"] == 200
    assert item["error"] == "upstream closed the connection before the response ended"


def test_idle_keep_alive_connection_is_closed(tmp_path: Any, origin: RawOrigin) -> None:
    with PostcapProcess(tmp_path / "idle", "--idle-timeout", "1") as server:
        with connect(server.port) as sock:
            sock.sendall(b"GET " + origin.url("/idle").encode() + b" HTTP/1.1\r\n\r\n")
            assert read_response(sock)[2] == b"ok"
            started = time.monotonic()
            sock.settimeout(10)
            assert sock.recv(1) == b"", "idle connection closed silently"
            assert 0.5 < time.monotonic() - started < 5


def test_stalled_clients_never_delay_others(server: PostcapProcess, origin: RawOrigin) -> None:
    """20 clients stalled in headers, 20 stalled mid-upload and 20 that stop reading a
    large download: other clients are still answered at once."""
    stalled: list[RawConn] = []
    try:
        for i in range(20):
            sock = connect(server.port)
            sock.sendall(b"GET " + origin.url(f"/stall-head-{i}").encode() + b" HTTP/1.1\r\nX-Half: ")
            stalled.append(sock)
        for i in range(20):
            sock = connect(server.port)
            sock.sendall(b"POST " + origin.url(f"/stall-upload-{i}").encode()
                         + b" HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
            stalled.append(sock)
        for i in range(20):
            sock = connect(server.port)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET " + origin.url(f"/big?stall={i}").encode() + b" HTTP/1.1\r\n\r\n")
            stalled.append(sock)
        time.sleep(0.5)
        slowest = 0.0
        for i in range(20):
            started = time.monotonic()
            status, _, body, _ = send_raw(server.port, b"GET " + origin.url(f"/meanwhile-{i}").encode()
                                          + b" HTTP/1.1\r\nConnection: close\r\n\r\n")
            slowest = max(slowest, time.monotonic() - started)
            assert (status, body) == (200, b"ok")
        # Under 2.5 s even on a loaded machine; any waiting on a stalled peer would cost >= 3 s.
        assert slowest < 2.5, f"a request took {slowest:.2f} s while 60 clients were stalled"
    finally:
        for sock in stalled:
            sock.close()


# -- connection cap, access ---------------------------------------------------------------------


def test_connection_cap_per_client_address(tmp_path: Any, origin: RawOrigin) -> None:
    with PostcapProcess(tmp_path / "cap", "--max-client-connections", "5") as server:
        time.sleep(0.5)  # the start-up probe's connection is gone
        held = [connect(server.port) for _ in range(5)]
        try:
            for index, sock in enumerate(held):
                sock.sendall(b"GET " + origin.url(f"/held-{index}").encode() + b" HTTP/1.1\r\n\r\n")
                assert read_response(sock)[2] == b"ok"
            status, headers, body, closed = send_raw(server.port, b"GET " + origin.url("/over").encode()
                                                     + b" HTTP/1.1\r\n\r\n")
            assert (status, headers.get("x-postcap-error")) == (503, "too-many-connections"), body
            assert b"limit 5" in body and closed
            assert b"/over" not in origin.received()
            # the held connections work, and a freed slot is usable again
            held[0].sendall(b"GET " + origin.url("/held").encode() + b" HTTP/1.1\r\n\r\n")
            assert read_response(held[0])[2] == b"ok"
            held.pop().close()
            time.sleep(0.3)
            status, _, body, _ = send_raw(server.port, b"GET " + origin.url("/again").encode()
                                          + b" HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert (status, body) == (200, b"ok")
        finally:
            for sock in held:
                sock.close()
        counters = server.rpc("server.info")["counters"]
        assert counters["errors"]["too-many-connections"] == 1
        assert counters["refused_clients"] == 1
        assert "refused proxy client 127.0.0.1: 5 connections already open (--max-client-connections 5)" in server.log()


def test_client_outside_allow_is_refused(tmp_path: Any, origin: RawOrigin) -> None:
    with PostcapProcess(tmp_path / "allow", "--allow", "127.0.0.1/32") as server:
        with connect(server.port, source="127.0.0.2") as sock:
            sock.sendall(b"GET " + origin.url("/from-127-0-0-2").encode() + b" HTTP/1.1\r\n\r\n")
            status, headers, body = read_response(sock)
        assert (status, headers["x-postcap-error"]) == (403, "client-refused"), body
        assert b"/from-127-0-0-2" not in origin.received()
        assert "refused proxy client 127.0.0.2: not in --allow" in server.log()
        status, _, body, _ = send_raw(server.port, b"GET " + origin.url("/from-127-0-0-1").encode()
                                      + b" HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert (status, body) == (200, b"ok")
        assert server.rpc("server.info")["counters"]["refused_clients"] == 1


# -- what the operator sees ---------------------------------------------------------------------


def test_counters_and_log_lines(server: PostcapProcess, origin: RawOrigin) -> None:
    send_raw(server.port, fill(GET + b"X: \x00\r\n\r\n", server, origin))
    send_raw(server.port, b"GET http://127.0.0.1:%d/ HTTP/1.1\r\n\r\n" % free_port())
    counters = server.rpc("server.info")["counters"]
    assert counters["errors"]["bad-request"] >= 1
    assert counters["errors"]["refused"] >= 1
    assert counters["transactions"] >= 1
    assert counters["open_connections"] >= 0
    assert counters["bytes_from_clients"] > 0 and counters["bytes_from_upstreams"] > 0
    log = server.log()
    assert "400 bad-request to client 127.0.0.1: control character in header value" in log
    assert "502 refused to client 127.0.0.1 for http://127.0.0.1:" in log
