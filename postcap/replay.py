"""``request.replay``: send a captured request again, with treq, and record the result.

The request goes out under the proxy's own upstream rules: TLS verified with
the system trust store and service-identity unless ``--insecure-upstream``, and
through ``--upstream-proxy`` when one is set (plain HTTP as absolute-form through
:class:`~twisted.web.client.ProxyAgent`, TLS through ``CONNECT``).  The answer,
or the error that prevented one, becomes a new transaction of kind ``"replay"``.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, Mapping, Protocol as TypingProtocol, Sequence
from urllib.parse import urlsplit

import treq
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.web.client import Agent, ProxyAgent, ResponseFailed, ResponseNeverReceived
from twisted.web.http_headers import Headers as TwistedHeaders
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from postcap.capture import BodyCapture, Spooler
from postcap.model import Address, Body, Request, Response, Timings, Transaction, new_id
from postcap.proxy.connector import UpstreamConnector
from postcap.proxy.framing import HOP_BY_HOP
from postcap.proxy.upstream import Origin, describe_connect_failure
from postcap.tls.client import InsecureClientCreator, VerifyingClientCreator, describe_tls_failure

#: An HTTP method (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}")
#: Headers the HTTP client sets itself from the URL and the body.
_CLIENT_MANAGED = HOP_BY_HOP | {b"host", b"content-length"}


class CookieSource(TypingProtocol):
    """Where ``use_cookie_jar`` finds cookies (the cookie jar)."""

    def cookie_header_for(self, url: str) -> str | None: ...


class ReplayError(ValueError):
    """The captured request cannot be sent as asked; ``param`` names the culprit."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(problem)
        self.param = param
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """What to send: the captured request with any overrides applied."""

    method: str
    url: str
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def _latin1(text: str) -> bytes:
    return text.encode("latin-1", "replace")


def _body_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, Mapping) and value.get("encoding") in ("utf-8", "base64"):
        text = value.get("text")
        if isinstance(text, str):
            if value["encoding"] == "base64":
                try:
                    return base64.b64decode(text, validate=True)
                except ValueError as exc:
                    raise ReplayError("body", "text is not valid base64") from exc
            return text.encode("utf-8")
    raise ReplayError("body", 'must be a string or {"encoding": "utf-8"|"base64", "text": …}')


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_CHARACTER = re.compile(r"[\x00\r\n]")
MAX_URL_LENGTH = 8192
MAX_REPLAY_HEADERS = 500


def _header_pairs(value: Any) -> list[tuple[str, str | None]]:
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        pairs = [(p[0], p[1]) for p in value]
    else:
        raise ReplayError("headers", "must be an object {name: value|null} or a list of [name, value]")
    if len(pairs) > MAX_REPLAY_HEADERS:
        raise ReplayError("headers", f"at most {MAX_REPLAY_HEADERS} headers")
    for name, header_value in pairs:
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ReplayError("headers", f"invalid header name {name!r}: must be an HTTP token")
        if header_value is not None and (not isinstance(header_value, str)
                                         or _BAD_VALUE_CHARACTER.search(header_value)):
            raise ReplayError("headers", f"invalid value for header {name!r}")
    return pairs


def replay_url(value: Any) -> str:
    """An absolute ``http(s)://`` URL with a host and, if any, a port of 1 to 65535."""
    problem = "must be an absolute http:// or https:// URL"
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH \
            or any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in value):
        raise ReplayError("url", problem)
    try:
        parts = urlsplit(value)
        port = parts.port
        host = parts.hostname
        if host and not host.isascii():
            host.encode("idna")
    except (ValueError, UnicodeError):
        raise ReplayError("url", f"{problem} with a valid host and port") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ReplayError("url", problem)
    if port == 0:
        raise ReplayError("url", f"{problem}: the port must be 1 to 65535")
    return value


def replay_headers(value: Any) -> Any:
    """Header overrides: ``{name: value|null}`` or ``[[name, value], …]``."""
    _header_pairs(value)
    return value


def replay_body(value: Any) -> Any:
    """A body override: a string or ``{"encoding": "utf-8"|"base64", "text": …}``."""
    _body_bytes(value)
    return value


def build_replay(
    detail: Mapping[str, Any],
    url: Any = None,
    headers: Any = None,
    body: Any = None,
    cookie_header: str | None = None,
    method: Any = None,
) -> ReplayRequest:
    """The request to send for a captured ``detail`` (the contract's detail shape).

    ``headers`` as an object changes or (with ``null``) removes single headers; as a
    list of pairs it replaces them all.  ``body`` replaces the body.  A cookie
    header from the jar replaces the captured ``Cookie`` header.
    """
    if detail.get("kind") == "tunnel":
        raise ReplayError("id", "a blind tunnel has no request to replay")
    captured = detail["request"]
    target_url = detail["url"] if url is None else url
    replay_url(target_url)
    pairs = [(_latin1(k), _latin1(v)) for k, v in captured["headers"]]
    if isinstance(headers, list):
        pairs = [(_latin1(k), _latin1(v)) for k, v in _header_pairs(headers) if v is not None]
    elif headers is not None:
        for name, new_value in _header_pairs(headers):
            lowered = name.lower().encode("latin-1")
            pairs = [(k, v) for k, v in pairs if k.lower() != lowered]
            if new_value is not None:
                pairs.append((_latin1(name), _latin1(new_value)))
    if cookie_header:
        pairs = [(k, v) for k, v in pairs if k.lower() != b"cookie"]
        pairs.append((b"Cookie", _latin1(cookie_header)))
    pairs = [(k, v) for k, v in pairs if k.lower() not in _CLIENT_MANAGED]
    if body is not None:
        payload = _body_bytes(body)
    else:
        stored = captured["body"]
        if stored["size"] and (not stored["captured"] or stored["truncated"]):
            raise ReplayError("body", "the captured request body is incomplete; pass one")
        text = stored.get("text") or ""
        payload = base64.b64decode(text) if stored.get("encoding") == "base64" else text.encode("utf-8")
    if method is not None and (not isinstance(method, str) or not _TOKEN.fullmatch(method)):
        raise ReplayError("method", "must be an HTTP method token such as GET or POST")
    return ReplayRequest(method or captured["method"], target_url, tuple(pairs), payload)


@implementer(IAgentEndpointFactory)
class _ReplayEndpoints:
    """Endpoints with the proxy's TLS rules; remembers why verification failed."""

    def __init__(self, connector: UpstreamConnector) -> None:
        self.connector = connector
        self.creator: VerifyingClientCreator | InsecureClientCreator | None = None

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        host = uri.host.decode("idna") if isinstance(uri.host, bytes) else uri.host
        origin = Origin(uri.scheme.decode("ascii"), host.strip("[]"), uri.port)
        if origin.scheme != "https":
            return self.connector.endpoint(origin)
        self.creator = (InsecureClientCreator(origin.host) if self.connector.insecure
                        else VerifyingClientCreator(origin.host))
        return wrapClientTLS(self.creator, self.connector.tunnel_endpoint(origin))


class Replayer:
    """Sends :class:`ReplayRequest` objects and turns the outcome into transactions."""

    def __init__(
        self,
        reactor: Any,
        connector: UpstreamConnector,
        spooler: Spooler | None,
        max_capture_body: int,
        timeout: float = 60.0,
    ) -> None:
        self.reactor = reactor
        self.connector = connector
        self.spooler = spooler
        self.max_capture_body = max_capture_body
        self.timeout = timeout

    def _agent(self, url: str, endpoints: _ReplayEndpoints) -> Any:
        proxy = self.connector.upstream_proxy
        if proxy is not None and urlsplit(url).scheme == "http":
            return ProxyAgent(self.connector.endpoint(Origin("http", "", 0)), self.reactor)
        return Agent.usingEndpointFactory(self.reactor, endpoints)

    async def send(self, request: ReplayRequest, session_id: str | None) -> Transaction:
        """Send ``request``; the transaction records the response or the error."""
        parts = urlsplit(request.url)
        scheme = parts.scheme
        port = parts.port or (443 if scheme == "https" else 80)
        host = parts.hostname or ""
        endpoints = _ReplayEndpoints(self.connector)
        headers = TwistedHeaders()
        for name, value in request.headers:
            headers.addRawHeader(name, value)
        started = self.reactor.seconds()
        capture = BodyCapture(self.max_capture_body, self.spooler)
        response_model: Response | None = None
        error: str | None = None
        first_byte: float | None = None
        try:
            answer = await treq.request(
                request.method, request.url, headers=headers,
                data=request.body if request.body or request.method not in ("GET", "HEAD") else None,
                agent=self._agent(request.url, endpoints), timeout=self.timeout,
                allow_redirects=False, persistent=False, unbuffered=True,
            )
            first_byte = self.reactor.seconds()
            await treq.collect(answer, capture.feed)
            body = await capture.finish()
            raw_headers = tuple(
                (name, value) for name, values in answer.headers.getAllRawHeaders() for value in values
            )
            response_model = Response(
                status=answer.code,
                reason=answer.phrase.decode("latin-1"),
                http_version="HTTP/%d.%d" % answer.version[1:] if answer.version else "HTTP/1.1",
                headers=raw_headers,
                body=body,
            )
        except Exception:
            error = self._describe(Failure(), Origin(scheme, host, port), endpoints)
            capture.drop()
        ended = self.reactor.seconds()
        sent_headers = ((b"Host", _latin1(parts.netloc)),) + request.headers
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Transaction(
            id=new_id(),
            session_id=session_id,
            started_at=started,
            duration_ms=(ended - started) * 1000.0,
            url=request.url,
            scheme=scheme,
            client=Address("127.0.0.1", 0),
            server=Address(host, port),
            request=Request(
                method=request.method,
                target=_latin1(target),
                http_version="HTTP/1.1",
                headers=sent_headers,
                body=Body(size=len(request.body), captured=True,
                          truncated=len(request.body) > self.max_capture_body,
                          content=request.body[: self.max_capture_body]),
            ),
            response=response_model,
            error=error,
            timings=Timings(
                wait_ms=((first_byte or ended) - started) * 1000.0,
                receive_ms=0.0 if first_byte is None else (ended - first_byte) * 1000.0,
            ),
            kind="replay",
        )

    @staticmethod
    def _describe(failure: Failure, origin: Origin, endpoints: _ReplayEndpoints) -> str:
        reasons: Sequence[Failure] = [failure]
        if failure.check(ResponseNeverReceived, ResponseFailed):
            reasons = failure.value.reasons or [failure]
        first = reasons[0]
        creator = endpoints.creator
        verify_error = getattr(creator, "last_error", None)
        if verify_error or (origin.scheme == "https" and "SSL" in first.getErrorMessage()):
            return describe_tls_failure(first, verify_error)
        if failure.check(ResponseNeverReceived, ResponseFailed):
            return f"upstream {origin.authority()} closed the connection: {first.getErrorMessage()}"
        if failure.check(CancelledError):
            return f"no answer from upstream {origin.authority()} in time"
        return str(describe_connect_failure(origin, failure))


__all__ = [
    "CookieSource", "ReplayError", "ReplayRequest", "Replayer", "build_replay", "replay_body",
    "replay_headers", "replay_url",
]
