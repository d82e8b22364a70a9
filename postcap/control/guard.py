"""Protections of the control channel that sit in front of every resource.

- **DNS rebinding**: a web page on ``evil.example`` whose name is re-pointed to
  127.0.0.1 reaches the control port with ``Host: evil.example:5556``.  Only Host
  headers naming an IP literal or ``localhost``, with the control channel's own
  port, are served; anything else gets ``421 Misdirected Request``.
- **Oversized bodies**: Twisted reads a whole request body before any resource (or
  the token check) sees it.  A body beyond :attr:`ControlSite.max_request_body` is
  discarded as it arrives and answered ``413``; one announced as far larger is
  answered at once and the connection closed, so no one fills the disk or memory
  through the control port.
- **Monitors**: ``GET /healthz`` answers ``ok`` (200) without a token, or
  ``draining`` (503) while the server stops; it carries no other detail.
- **Slow clients**: header and body deadlines, a short idle timeout and a cap on
  open connections (:mod:`postcap.control.channel`).
- **Secrets in URLs**: the access log shows ``?REDACTED`` for every query string;
  a ``token`` (or ``access_token``) query parameter is refused with ``400``.
- No CORS headers are ever sent, and every answer says ``nosniff``.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Callable

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.http import combinedLogFormatter
from twisted.web.server import Request, Site

from postcap.control.channel import BusyProtocol, ControlChannel

#: Upper bound of any request body on the control channel (JSON-RPC bodies included).
MAX_REQUEST_BODY = 1024 * 1024

#: Paths served whatever the Host header says (they reveal nothing).
HOST_EXEMPT = frozenset({b"/healthz", b"/readyz"})

_log = Logger()


def host_allowed(host_header: bytes | None, local_port: int | None) -> bool:
    """Whether ``Host`` names this control channel: an IP literal or ``localhost``,
    with ``local_port`` (the port may be left out only when it is 80)."""
    if host_header is None or local_port is None:
        return True  # HTTP/1.0 without Host, or a UNIX socket: no browser rebinding there
    try:
        text = host_header.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return False
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return False
        port_text = rest[1:] if rest else ""
    else:
        name, _, port_text = text.partition(":")
    port = 80 if port_text == "" else int(port_text) if port_text.isdigit() else -1
    if port != local_port:
        return False
    if name.rstrip(".") == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _json(request: Request, status: int, message: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps({"error": message}).encode("utf-8")


class MisdirectedResource(Resource):
    """421 for a Host header that is not this control channel's (DNS rebinding)."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        _log.warn("refused control request {method} {path} from {client}: Host {host!r} "
                  "is not this control channel's address",
                  method=request.method.decode("latin-1"), path=request.path.decode("latin-1"),
                  client=getattr(request.getClientAddress(), "host", "?"), host=host)
        return _json(request, 421, f"Host {host!r} is not this control channel's address; "
                                   "use http://127.0.0.1:PORT/ or http://localhost:PORT/")


class HealthResource(Resource):
    """``GET /healthz``: ``ok`` (200), or ``draining`` (503) while the server stops."""

    isLeaf = True

    def __init__(self, draining: Callable[[], bool]) -> None:
        super().__init__()
        self._draining = draining

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if self._draining():
            request.setResponseCode(503)
            return b"draining\n"
        return b"ok\n"

    render_HEAD = render_GET


class BoundedRequest(Request):
    """A control request whose body may not exceed the site's ``max_request_body``.

    A body over the cap is discarded as it arrives and answered 413 once it has been
    received (so the client can read the answer); one announced as more than
    :attr:`close_factor` times the cap is answered at once and the connection closed.
    """

    close_factor = 16
    _received = 0
    _too_large = False
    _closed_early = False

    def _limit(self) -> int:
        return int(getattr(self.channel.site, "max_request_body", MAX_REQUEST_BODY))

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self._limit():
            self._too_large = True
            self._log_refusal(length)
            if length > self.close_factor * self._limit():
                self._close_now()
            length = 0  # nothing of the body is kept
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._too_large:
            return
        self._received += len(data)
        if self._received > self._limit():
            self._too_large = True
            self._log_refusal(None)
            self.content.seek(0)
            self.content.truncate()
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        if self._closed_early:
            return
        self.setHeader(b"x-content-type-options", b"nosniff")
        if self._too_large:
            self.site = self.channel.site
            self.setResponseCode(413)
            self.setHeader(b"content-type", b"application/json")
            self.setHeader(b"connection", b"close")
            self.write(self._error_body())
            self.finish()
            return
        super().process()

    def _error_body(self) -> bytes:
        return json.dumps({"error": f"request body over {self._limit()} bytes"}).encode("utf-8")

    def _log_refusal(self, length: int | None) -> None:
        _log.warn("refused control request from {client}: body of {size} bytes over {limit}",
                  client=getattr(self.getClientAddress(), "host", "?"),
                  size="more than %d" % self._limit() if length is None else length,
                  limit=self._limit())

    def _close_now(self) -> None:
        """Answer 413 straight on the connection and close it: the body is never read."""
        self._closed_early = True
        body = self._error_body()
        transport: Any = self.channel.transport
        transport.write(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        transport.loseConnection()


class RedactedURIRequest:
    """A request as the access log sees it: the query string replaced by ``?REDACTED``
    (a token someone put in a URL never reaches the log)."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self.uri = redact_query(request.uri)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def redact_query(uri: bytes) -> bytes:
    path, question, _ = uri.partition(b"?")
    return path + b"?REDACTED" if question else path


def redacted_log_formatter(timestamp: str, request: Request) -> str:
    """Twisted's combined log format, without query strings."""
    return combinedLogFormatter(timestamp, RedactedURIRequest(request))


class ControlSite(Site):
    """The control channel's Site: Host check, body cap, no tracebacks, redacted access
    log, and against slow clients (see :mod:`postcap.control.channel`) header and body
    deadlines, a short idle timeout and a cap on open connections."""

    requestFactory = BoundedRequest
    protocol = ControlChannel  # type: ignore[assignment]
    displayTracebacks = False
    max_request_body = MAX_REQUEST_BODY
    #: Seconds from a request's first byte until its headers are complete.
    header_timeout = 10.0
    #: Seconds from the headers until the body is complete.
    body_timeout = 30.0
    #: Seconds an idle keep-alive connection stays open (Twisted's default: 12 h).
    idle_timeout = 60.0
    #: Open connections (``--control-max-connections``); more are answered 503.
    max_connections = 128

    def __init__(self, resource: Resource, reactor: Any = None, **limits: Any) -> None:
        for name, value in limits.items():
            if not hasattr(type(self), name):
                raise TypeError(f"unknown ControlSite limit {name!r}")
            setattr(self, name, value)
        super().__init__(resource, timeout=self.idle_timeout,
                         logFormatter=redacted_log_formatter, reactor=reactor)
        self.channels: set[Any] = set()
        self.slow_clients = 0
        self.busy_refused = 0
        self._busy_logged_at: float | None = None

    def buildProtocol(self, addr: Any) -> Any:
        if len(self.channels) >= self.max_connections:
            self.busy_refused += 1
            now = self.reactor.seconds()
            if self._busy_logged_at is None or now - self._busy_logged_at >= 10:
                self._busy_logged_at = now
                _log.warn("control channel at {limit} connections (--control-max-connections): "
                          "refused {count} so far", limit=self.max_connections,
                          count=self.busy_refused)
            return BusyProtocol()
        return super().buildProtocol(addr)

    def channel_opened(self, channel: Any) -> None:
        self.channels.add(channel)

    def channel_closed(self, channel: Any) -> None:
        self.channels.discard(channel)

    def getResourceFor(self, request: Request) -> Resource:
        if request.path not in HOST_EXEMPT and not host_allowed(
            request.getHeader(b"host"), getattr(request.getHost(), "port", None)
        ):
            return MisdirectedResource()
        return super().getResourceFor(request)
