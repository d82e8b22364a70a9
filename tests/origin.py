"""A small real origin server for end-to-end tests, run as a subprocess.

    python tests/origin.py [--tls CERT KEY] [--port N]

Binds 127.0.0.1 (port 0 unless ``--port``), prints ``READY <port>`` on its own
line, and serves until SIGTERM or SIGINT, then exits 0.  With ``--tls`` it serves
the same endpoints over TLS.  Only the standard library and Twisted are used.

Endpoints (HEAD works wherever GET does; ``/encoded`` also uses brotli and zstandard):

- ``GET /hello``: ``hello from origin\\n`` as text/plain
- ``ANY /echo``: JSON ``{method, path, headers, body, body_encoding, body_size}``
- ``GET /status/<code>``: that status, a short body (none for 1xx, 204, 304)
- ``GET /bytes/<n>``: n bytes of ``0123456789abcdef`` repeated, streamed in
  64 KiB pieces by a pull producer, with Content-Length
- ``GET /chunked?n=<count>[&delay=<s>]``: ``line i\\n`` in ``count`` writes, no
  Content-Length (so chunked); ``delay`` spaces the writes out
- ``GET /image.png``, ``/script.js``, ``/style.css``, ``/page.html`` (which uses the others)
- ``GET /browse.html``: the page's subresources, a ``theme=dark`` cookie set by script, then
  ``fetch`` of ``/cookies/set?flavour=oatmeal``
  and a POST of ``posted from the page`` to ``/echo``; the title becomes ``browse done``
- ``GET /slow?delay=<s>``: ``slow done\\n`` after the delay
- ``GET /stall``: declares Content-Length 1000, sends 100 bytes, never finishes
- ``GET /close-mid-body``: declares Content-Length 1000, sends 100 bytes, closes
- ``GET /cookies/set?name=value&...``: one ``Set-Cookie`` per pair
- ``GET /cookies/show``: JSON of the Cookie header received
- ``GET /cookies/expire?name&...``: ``Set-Cookie: name=; Max-Age=0`` for each name
- ``GET /headers-big?n=<bytes>``: a response header ``X-Big`` of that many bytes
- ``POST /upload``: JSON ``{size, sha256}`` of the request body
- ``GET /encoded/<codings>?text=<text>``: ``text`` (default ``encoded hello``) and
  `` [<codings joined by +>]`` as text/plain, encoded in ``codings`` (``gzip``, ``deflate``, ``br``, ``zstd``, or a
  comma-separated stack applied left to right) and sent with that ``Content-Encoding``;
  ``/encoded/broken`` says gzip but is not
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
import zlib
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from twisted.internet.interfaces import IDelayedCall, IPullProducer, IReactorTime
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

PIECE = 64 * 1024
PATTERN = b"0123456789abcdef"
NO_BODY_STATUSES = frozenset({204, 304})


def pattern_bytes(offset: int, size: int) -> bytes:
    """``size`` bytes of the repeating pattern, starting at stream ``offset``."""
    start = offset % len(PATTERN)
    repeats = (start + size) // len(PATTERN) + 1
    return (PATTERN * repeats)[start : start + size]


def _png_1x1() -> bytes:
    """A valid 1x1 opaque red PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return (
            struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte + one RGB pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG = _png_1x1()
SCRIPT = b'document.title = "postcap origin";\nconsole.log("script loaded");\n'
STYLE = b"body { font-family: sans-serif; color: #222; }\nimg { width: 16px; }\n"
PAGE = b"""<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>postcap test page</title>
<link rel="stylesheet" href="/style.css">
<script src="/script.js"></script>
</head>
<body>
<h1>postcap test page</h1>
<img src="/image.png" alt="pixel">
</body>
</html>
"""

BROWSE_PAGE = b"""<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>postcap browse page</title>
<link rel="stylesheet" href="/style.css">
<script src="/script.js"></script>
</head>
<body>
<h1>postcap browse page</h1>
<img src="/image.png" alt="pixel">
<script>
document.cookie = "theme=dark; path=/";
fetch("/cookies/set?flavour=oatmeal")
  .then(() => fetch("/echo", {method: "POST", headers: {"Content-Type": "text/plain"},
                              body: "posted from the page"}))
  .then(() => { document.title = "browse done"; });
</script>
</body>
</html>
"""


@implementer(IPullProducer)
class PatternProducer:
    """Write ``size`` pattern bytes to ``request`` one piece per ``resumeProducing``."""

    def __init__(self, request: Request, size: int) -> None:
        self.request: Request | None = request
        self.size = size
        self.sent = 0

    def start(self) -> None:
        assert self.request is not None
        self.request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self.request.registerProducer(self, False)

    def resumeProducing(self) -> None:
        request = self.request
        if request is None:
            return
        if self.sent < self.size:
            piece = min(PIECE, self.size - self.sent)
            data = pattern_bytes(self.sent, piece)
            self.sent += piece
            request.write(data)  # may re-enter resumeProducing
        else:
            self.request = None
            request.unregisterProducer()
            request.finish()

    def stopProducing(self) -> None:
        self.request = None


def _query(request: Request) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(request.uri.decode("latin-1")).query, keep_blank_values=True)


def _query_value(request: Request, name: str, default: str) -> str:
    for key, value in _query(request):
        if key == name:
            return value
    return default


def _json(request: Request, obj: Any) -> bytes:
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(obj, indent=None).encode("utf-8") + b"\n"


def _text(request: Request, body: str, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return body.encode("utf-8")


class OriginResource(Resource):
    """Every endpoint, dispatched on the path."""

    isLeaf = True

    def __init__(self, reactor: IReactorTime) -> None:
        super().__init__()
        self.reactor = reactor
        exact: dict[bytes, Callable[[Request], bytes | int]] = {
            b"/hello": self.hello,
            b"/echo": self.echo,
            b"/chunked": self.chunked,
            b"/image.png": self.static(b"image/png", PNG),
            b"/script.js": self.static(b"application/javascript", SCRIPT),
            b"/style.css": self.static(b"text/css", STYLE),
            b"/page.html": self.static(b"text/html; charset=utf-8", PAGE),
            b"/browse.html": self.static(b"text/html; charset=utf-8", BROWSE_PAGE),
            b"/slow": self.slow,
            b"/stall": self.stall,
            b"/close-mid-body": self.close_mid_body,
            b"/cookies/set": self.cookies_set,
            b"/cookies/show": self.cookies_show,
            b"/cookies/expire": self.cookies_expire,
            b"/headers-big": self.headers_big,
            b"/upload": self.upload,
        }
        self.exact = exact

    def render(self, request: Request) -> bytes | int:
        path = request.path
        handler = self.exact.get(path)
        if handler is not None:
            if not self._method_allowed(path, request):
                return _text(request, "method not allowed\n", 405)
            return handler(request)
        for prefix, prefixed in ((b"/status/", self.status), (b"/bytes/", self.bytes_),
                                 (b"/encoded/", self.encoded)):
            if path.startswith(prefix):
                return prefixed(request, path[len(prefix) :])
        return _text(request, f"no such endpoint: {path.decode('latin-1')}\n", 404)

    @staticmethod
    def _method_allowed(path: bytes, request: Request) -> bool:
        if path == b"/echo":
            return True
        if path == b"/upload":
            return request.method in (b"POST", b"PUT")
        if request.method in (b"GET", b"HEAD"):
            return True
        request.setHeader(b"allow", b"GET, HEAD")
        return False

    # -- endpoints -----------------------------------------------------------------

    def hello(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return b"hello from origin\n"

    def echo(self, request: Request) -> bytes:
        body = request.content.read() if request.content is not None else b""
        try:
            text, encoding = body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(body).decode("ascii"), "base64"
        headers = [
            [name.decode("latin-1"), value.decode("latin-1")]
            for name, values in request.requestHeaders.getAllRawHeaders()
            for value in values
        ]
        return _json(
            request,
            {
                "method": request.method.decode("latin-1"),
                "path": request.uri.decode("latin-1"),
                "headers": headers,
                "body": text,
                "body_encoding": encoding,
                "body_size": len(body),
            },
        )

    def status(self, request: Request, rest: bytes) -> bytes:
        if not rest.isdigit() or not 100 <= int(rest) <= 999:
            return _text(request, "status must be a number from 100 to 999\n", 400)
        code = int(rest)
        request.setResponseCode(code)
        if code in NO_BODY_STATUSES or code < 200:
            return b""
        request.setHeader(b"content-type", b"text/plain")
        return b"status %d\n" % code

    def bytes_(self, request: Request, rest: bytes) -> bytes | int:
        if not rest.isdigit():
            return _text(request, "size must be a non-negative integer\n", 400)
        size = int(rest)
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % size)
        if request.method == b"HEAD" or size == 0:
            return b""
        PatternProducer(request, size).start()
        return NOT_DONE_YET

    def chunked(self, request: Request) -> bytes | int:
        try:
            count = int(_query_value(request, "n", "5"))
            delay = float(_query_value(request, "delay", "0"))
        except ValueError:
            return _text(request, "n must be an integer and delay a number\n", 400)
        request.setHeader(b"content-type", b"text/plain")
        if delay <= 0:
            for i in range(count):
                request.write(b"line %d\n" % i)
            request.finish()
            return NOT_DONE_YET
        self._write_lines_later(request, 0, count, delay)
        return NOT_DONE_YET

    def _write_lines_later(self, request: Request, index: int, count: int, delay: float) -> None:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def step(i: int) -> None:
            if gone:
                return
            if i >= count:
                request.finish()
                return
            request.write(b"line %d\n" % i)
            self.reactor.callLater(delay, step, i + 1)

        step(index)

    def static(self, content_type: bytes, body: bytes) -> Callable[[Request], bytes]:
        def render(request: Request) -> bytes:
            request.setHeader(b"content-type", content_type)
            return body

        return render

    def slow(self, request: Request) -> int:
        try:
            delay = float(_query_value(request, "delay", "1"))
        except ValueError:
            delay = 1.0

        def done() -> None:
            request.setHeader(b"content-type", b"text/plain")
            request.setHeader(b"content-length", b"10")
            request.write(b"slow done\n")
            request.finish()

        self._later(request, delay, done)
        return NOT_DONE_YET

    def stall(self, request: Request) -> int:
        request.setHeader(b"content-type", b"text/plain")
        request.setHeader(b"content-length", b"1000")
        request.write(b"s" * 100)
        return NOT_DONE_YET  # never finished: the client or a timeout ends it

    def close_mid_body(self, request: Request) -> int:
        request.setHeader(b"content-type", b"text/plain")
        request.setHeader(b"content-length", b"1000")
        request.write(b"c" * 100)
        transport = request.channel.transport
        # The channel is registered as the transport's producer; TLS would wait for it
        # to go before shutting down, so take it away first.
        transport.unregisterProducer()
        transport.loseConnection()
        return NOT_DONE_YET

    def cookies_set(self, request: Request) -> bytes:
        pairs = _query(request)
        for name, value in pairs:
            request.responseHeaders.addRawHeader(
                b"Set-Cookie", f"{name}={value}; Path=/; HttpOnly".encode("utf-8")
            )
        return _json(request, {"set": [[name, value] for name, value in pairs]})

    def cookies_expire(self, request: Request) -> bytes:
        names = [name for name, _ in _query(request)]
        for name in names:
            request.responseHeaders.addRawHeader(b"Set-Cookie", f"{name}=; Path=/; Max-Age=0".encode())
        return _json(request, {"expired": names})

    def cookies_show(self, request: Request) -> bytes:
        raw = request.requestHeaders.getRawHeaders(b"cookie")
        header = "; ".join(v.decode("latin-1") for v in raw) if raw else None
        cookies: list[list[str]] = []
        for part in (header or "").split(";"):
            name, eq, value = part.strip().partition("=")
            if name and eq:
                cookies.append([name, value])
        return _json(request, {"cookie": header, "cookies": cookies})

    def headers_big(self, request: Request) -> bytes:
        try:
            size = int(_query_value(request, "n", "1024"))
        except ValueError:
            return _text(request, "n must be an integer\n", 400)
        request.setHeader(b"x-big", b"b" * max(size, 0))
        return _text(request, "big header sent\n")

    def upload(self, request: Request) -> bytes:
        digest = hashlib.sha256()
        size = 0
        content = request.content
        if content is not None:
            content.seek(0)
            while piece := content.read(PIECE):
                digest.update(piece)
                size += len(piece)
        return _json(request, {"size": size, "sha256": digest.hexdigest()})

    def encoded(self, request: Request, rest: bytes) -> bytes:
        import brotli
        import zstandard

        encoders: dict[str, Callable[[bytes], bytes]] = {
            "gzip": lambda data: zlib.compress(data, wbits=31),
            "deflate": zlib.compress,
            "br": brotli.compress,
            "zstd": zstandard.ZstdCompressor().compress,
        }
        body = _query_value(request, "text", "encoded hello").encode("utf-8")
        codings = rest.decode("latin-1").split(",")
        if codings == ["broken"]:
            codings, body = ["gzip"], b"this was never gzipped"
        elif any(coding not in encoders for coding in codings):
            return _text(request, "codings are gzip, deflate, br, zstd\n", 400)
        else:
            body += f" [{'+'.join(codings)}]".encode("ascii")
            for coding in codings:
                body = encoders[coding](body)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"content-encoding", ", ".join(codings).encode("ascii"))
        return body

    # -- helpers -------------------------------------------------------------------

    def _later(self, request: Request, delay: float, action: Callable[[], None]) -> None:
        """Run ``action`` after ``delay`` unless the client goes away first."""
        call: IDelayedCall = self.reactor.callLater(delay, action)

        def cancel(reason: Failure) -> None:
            if call.active():
                call.cancel()

        request.notifyFinish().addErrback(cancel)


class QuietSite(Site):
    """A Site without an access log."""

    def log(self, request: Request) -> None:
        pass


def main(argv: list[str] | None = None, resource: Callable[[Any], Resource] | None = None) -> int:
    """Serve ``OriginResource`` (or what ``resource(reactor)`` makes) until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tls", nargs=2, metavar=("CERT", "KEY"), help="serve TLS with this certificate and key"
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free port)")
    parser.add_argument("--http2", action="store_true", help="with --tls: offer h2 by ALPN (Twisted's HTTP/2)")
    args = parser.parse_args(argv)

    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(sys.stderr),
                [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)],
            )
        ],
        redirectStandardIO=False,
    )
    from twisted.internet import reactor as _reactor  # installed only when run as a program

    reactor: Any = _reactor
    site = QuietSite((resource or OriginResource)(reactor))
    site.displayTracebacks = False
    if args.tls:
        from twisted.internet import ssl

        cert, key = args.tls
        context: Any = ssl.DefaultOpenSSLContextFactory(key, cert)
        if args.http2:
            # CertificateOptions offers the site's protocols (h2, http/1.1) by ALPN.
            with open(cert, "rb") as cert_file, open(key, "rb") as key_file:
                pem = cert_file.read() + key_file.read()
            context = ssl.PrivateCertificate.loadPEM(pem).options()
        port = reactor.listenSSL(args.port, site, context, interface="127.0.0.1")
    else:
        port = reactor.listenTCP(args.port, site, interface="127.0.0.1")

    def ready() -> None:
        # After startup, so the SIGTERM/SIGINT handlers are in place once READY is read.
        sys.stdout.write(f"READY {port.getHost().port}\n")
        sys.stdout.flush()

    reactor.callWhenRunning(ready)
    reactor.run()  # SIGTERM and SIGINT stop the reactor
    return 0


if __name__ == "__main__":
    sys.exit(main())
