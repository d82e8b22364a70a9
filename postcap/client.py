"""A small Python client for postcap's control channel.

Two faces over one set of method helpers (:class:`MethodHelpers`):

- :class:`PostcapClient`: Twisted, every call returns a ``Deferred`` (treq).
- :class:`BlockingClient`: plain scripts, every call blocks (``http.client``, over TCP,
  TLS or a UNIX socket); :func:`connect` finds the local server through
  :mod:`postcap.discovery`, the one way every postcap tool finds it.

    from postcap.client import connect
    client = connect()
    session = client.session_start(name="login flow")
    for item in client.request_list(session_id=session["id"])["items"]:
        print(item["method"], item["url"], item["status"])

Errors are :class:`PostcapError` (``code``, ``message``, ``data`` from the server);
:class:`ServerUnreachable` and :class:`AuthenticationFailed` are its transport kinds.
"""

from __future__ import annotations

import http.client
import itertools
import json
import urllib.parse
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterator

from postcap.discovery import (
    DEFAULT_CONTROL_URL,
    PostcapError,
    ServerLocation,
    ServerNotRunning,
    ServerUnreachable,
    TokenUnreadable,
    data_dir,
    locate,
    parse_control,
    read_token,
    resolve,
)

CHUNK = 64 * 1024


class AuthenticationFailed(PostcapError):
    """The control channel refused the token (HTTP 401)."""

    def __init__(self, url: str) -> None:
        super().__init__(401, f"postcap at {url} refused the token (HTTP 401); check --token-file")


def connect(
    control_url: str | None = None,
    token: str | None = None,
    token_file: str | None = None,
    timeout: float = 60.0,
    home: str | None = None,
) -> "BlockingClient":
    """A blocking client for the local server: ``control_url`` (any ``--control`` form)
    if given, else the server discovered in the data dir ``home`` (see
    :mod:`postcap.discovery`); the token from ``token``, ``token_file`` or discovery."""
    endpoint, discovered_token_file = resolve(control_url, home, token_file)
    if token is None:
        token = read_token(discovered_token_file)
    return BlockingClient(endpoint.url, token, timeout=timeout)


# -- one set of method helpers -----------------------------------------------------------


def _params(**given: Any) -> dict[str, Any]:
    return {name: value for name, value in given.items() if value is not None}


class MethodHelpers:
    """One helper per contract method; each returns whatever :meth:`call` returns
    (a ``Deferred`` for :class:`PostcapClient`, the result for :class:`BlockingClient`)."""

    def call(self, method: str, /, **params: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def server_info(self) -> Any:
        return self.call("server.info")

    def proxy_status(self) -> Any:
        return self.call("proxy.status")

    def session_start(self, **options: Any) -> Any:
        return self.call("session.start", **options)

    def session_pause(self, id: str | None = None) -> Any:
        return self.call("session.pause", **_params(id=id))

    def session_resume(self, id: str | None = None) -> Any:
        return self.call("session.resume", **_params(id=id))

    def session_stop(self, id: str | None = None) -> Any:
        return self.call("session.stop", **_params(id=id))

    def session_update(self, id: str, **options: Any) -> Any:
        return self.call("session.update", id=id, **options)

    def session_get(self, id: str) -> Any:
        return self.call("session.get", id=id)

    def session_delete(self, id: str) -> Any:
        return self.call("session.delete", id=id)

    def session_list(self, limit: int | None = None, offset: int | None = None) -> Any:
        return self.call("session.list", **_params(limit=limit, offset=offset))

    def session_overview(self, id: str | None = None) -> Any:
        return self.call("session.overview", **_params(id=id))

    def session_export(self, id: str, format: str = "har") -> Any:
        return self.call("session.export", id=id, format=format)

    def api_diff(self, id: str, spec: Any) -> Any:
        """Drift between a session's traffic and an OpenAPI document (object or JSON/YAML text)."""
        return self.call("api.diff", id=id, spec=spec)

    def request_list(self, **filters: Any) -> Any:
        return self.call("request.list", **_params(**filters))

    def request_get(self, id: str) -> Any:
        return self.call("request.get", id=id)

    def request_messages(self, id: str, limit: int | None = None, offset: int | None = None) -> Any:
        """``{total, items}``: the messages of a WebSocket request, oldest first."""
        return self.call("request.messages", **_params(id=id, limit=limit, offset=offset))

    def request_delete(self, ids: list[str]) -> Any:
        return self.call("request.delete", ids=list(ids))

    def request_replay(self, id: str, use_cookie_jar: bool = False, **overrides: Any) -> Any:
        """``overrides``: ``method``, ``url``, ``headers``, ``body`` (see request.replay)."""
        return self.call("request.replay", id=id, use_cookie_jar=use_cookie_jar,
                         **_params(**overrides))

    def request_export(self, id: str, format: str = "curl") -> Any:
        return self.call("request.export", id=id, format=format)

    def request_diff(self, a: str, b: str) -> Any:
        return self.call("request.diff", a=a, b=b)

    def cookie_list(self, session_id: str | None = None) -> Any:
        return self.call("cookie.list", **_params(session_id=session_id))

    def cookiejar_list(self, domain: str | None = None) -> Any:
        return self.call("cookiejar.list", **_params(domain=domain))

    def cookiejar_add(
        self, cookie_ids: list[str] | None = None, cookies: list[dict[str, Any]] | None = None
    ) -> Any:
        return self.call("cookiejar.add", **_params(cookie_ids=cookie_ids, cookies=cookies))

    def cookiejar_delete(self, domain: str | None = None, name: str | None = None) -> Any:
        return self.call("cookiejar.delete", **_params(domain=domain, name=name))

    def cookiejar_export(self, format: str = "netscape") -> Any:
        return self.call("cookiejar.export", format=format)

    def collection_create(self, name: str) -> Any:
        return self.call("collection.create", name=name)

    def collection_list(self) -> Any:
        return self.call("collection.list")

    def collection_get(self, id: str) -> Any:
        return self.call("collection.get", id=id)

    def collection_add(
        self, id: str, request_ids: list[str], organize_by: list[str] | None = None
    ) -> Any:
        return self.call(
            "collection.add",
            **_params(id=id, request_ids=list(request_ids), organize_by=organize_by),
        )

    def collection_delete(self, id: str) -> Any:
        return self.call("collection.delete", id=id)

    def ca_get(self) -> Any:
        return self.call("ca.get")


_ids = itertools.count(1)


def _request_body(method: str, params: dict[str, Any]) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}
    ).encode("utf-8")


def _result(url: str, status: int, body: bytes) -> Any:
    """The result of a JSON-RPC answer, or the :class:`PostcapError` it carries."""
    if status == 401:
        raise AuthenticationFailed(url)
    try:
        answer = json.loads(body)
    except ValueError:
        raise PostcapError(status, f"HTTP {status} from {url}: not a JSON-RPC answer") from None
    if status != 200 or not isinstance(answer, dict):
        message = answer.get("error") if isinstance(answer, dict) else None
        raise PostcapError(status, f"HTTP {status} from {url}: {message or 'unexpected answer'}")
    if "error" in answer:
        error = answer["error"] or {}
        raise PostcapError(
            error.get("code"), str(error.get("message", "unknown error")), error.get("data")
        )
    return answer.get("result")


def _har_path(session_id: str) -> str:
    return "/sessions/" + urllib.parse.quote(session_id, safe="") + ".har"


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One Server-Sent Event: ``id``, ``event`` kind and ``data`` decoded from JSON."""

    id: str | None
    event: str
    data: Any


class SSEParser:
    """Incremental ``text/event-stream`` parser: feed bytes, get :class:`ServerEvent`."""

    def __init__(self) -> None:
        self._buffer = b""
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []
        self.last_id: str | None = None

    def feed(self, chunk: bytes) -> list[ServerEvent]:
        self._buffer += chunk
        events: list[ServerEvent] = []
        while True:
            line, found, rest = self._buffer.partition(b"\n")
            if not found:
                return events
            self._buffer = rest
            event = self._line(line.rstrip(b"\r").decode("utf-8", "replace"))
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> ServerEvent | None:
        if not line:
            if not self._data:
                self._event = "message"
                return None
            text = "\n".join(self._data)
            try:
                data: Any = json.loads(text)
            except ValueError:
                data = text
            event = ServerEvent(self._id, self._event, data)
            if self._id is not None:
                self.last_id = self._id
            self._event, self._data = "message", []
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            self._id = value
        return None


# -- blocking ----------------------------------------------------------------------------


class BlockingClient(MethodHelpers):
    """Blocking calls with ``http.client``, for plain scripts and ``postcapctl``.

    ``control_url`` is any form ``--control`` accepts: ``http://HOST:PORT``,
    ``https://HOST:PORT``, ``unix:/PATH`` or a server endpoint string such as
    ``tcp:5556:interface=127.0.0.1``."""

    def __init__(self, control_url: str, token: str, timeout: float = 60.0) -> None:
        self.endpoint = parse_control(control_url)
        self.control_url = self.endpoint.url
        self.token = token
        self.timeout = timeout

    def _open(
        self,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The response (a context manager that owns its connection)."""
        connection = self.endpoint.http_connection(timeout or self.timeout)
        sent = {"Authorization": f"Bearer {self.token}", "Connection": "close", **(headers or {})}
        try:
            connection.request("POST" if body is not None else "GET", path, body, sent)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ServerUnreachable(self.control_url, reason) from None
        if response.status == 401:
            response.close()
            raise AuthenticationFailed(self.control_url)
        return response

    def call(self, method: str, /, **params: Any) -> Any:
        with self._open(
            "/rpc", _request_body(method, params), {"Content-Type": "application/json"}
        ) as response:
            return _result(self.control_url, response.status, response.read())

    def stream_har(
        self,
        session_id: str,
        file: IO[bytes],
        progress: Callable[[int, int | None], None] | None = None,
    ) -> int:
        """Write the session's HAR export to ``file`` as it streams; returns bytes written.
        ``progress(done, total_or_None)`` is called after every chunk."""
        with self._open(_har_path(session_id)) as response:
            if response.status != 200:
                _raise_http(self.control_url, response.status, response.read())
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            written = 0
            while chunk := response.read(CHUNK):
                file.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written, total)
            return written

    def events(
        self,
        types: str | None = None,
        last_event_id: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[ServerEvent]:
        """Live events from ``GET /events`` until the server ends the stream."""
        path = "/events" + ("?" + urllib.parse.urlencode({"types": types}) if types else "")
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        parser = SSEParser()
        with self._open(path, headers=headers, timeout=timeout) as response:
            if response.status != 200:
                _raise_http(self.control_url, response.status, response.read())
            while chunk := response.read1(CHUNK):
                yield from parser.feed(chunk)


def _raise_http(url: str, status: int, body: bytes) -> None:
    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError):
        text = body.decode("utf-8", "replace").strip()
        message = "no such resource" if text.startswith("<") else " ".join(text.split())[:200]
    if isinstance(message, dict):
        message = message.get("message")
    raise PostcapError(
        -32004 if status == 404 else status, f"HTTP {status} from {url}: {message or 'error'}"
    )


# -- Deferred (treq) ---------------------------------------------------------------------


def treq_for(endpoint: Any, reactor: Any) -> Any:
    """treq itself for TCP; for a UNIX socket, a treq ``HTTPClient`` whose Agent always
    connects to that socket."""
    import treq

    if endpoint.scheme != "unix":
        return treq
    from treq.client import HTTPClient
    from twisted.web.client import Agent
    from zope.interface import implementer
    from twisted.web.iweb import IAgentEndpointFactory

    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor

    @implementer(IAgentEndpointFactory)
    class ToSocket:
        def endpointForURI(self, uri: Any) -> Any:
            return endpoint.twisted_endpoint(reactor)

    return HTTPClient(Agent.usingEndpointFactory(reactor, ToSocket()))


class PostcapClient(MethodHelpers):
    """Deferred calls with treq: ``client.call(...)`` and every helper return a
    ``Deferred`` that fires with the result or fails with :class:`PostcapError`."""

    def __init__(self, control_url: str, token: str, reactor: Any = None, http: Any = None) -> None:
        self.endpoint = parse_control(control_url)
        self.control_url = self.endpoint.url
        self.token = token
        self._reactor = reactor
        self._treq = http or treq_for(self.endpoint, reactor)
        #: The URL requests are made against (a UNIX socket's is ``http://localhost``).
        self._base = "http://localhost" if self.endpoint.scheme == "unix" else self.control_url

    def _headers(self, **extra: str) -> dict[bytes, list[bytes]]:
        headers = {b"Authorization": [f"Bearer {self.token}".encode("ascii")]}
        for name, value in extra.items():
            headers[name.replace("_", "-").encode()] = [value.encode("utf-8")]
        return headers

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        from twisted.internet.defer import Deferred
        from twisted.internet.error import ConnectError, DNSLookupError
        from twisted.web.client import ResponseNeverReceived

        url = self._base + path
        deferred: Deferred[Any] = self._treq.request(method, url, **kwargs)

        def unreachable(failure: Any) -> Any:
            failure.trap(ConnectError, DNSLookupError, ResponseNeverReceived)
            raise ServerUnreachable(self.control_url, failure.getErrorMessage())

        def checked(response: Any) -> Any:
            if response.code == 401:
                raise AuthenticationFailed(self.control_url)
            return response

        return deferred.addErrback(unreachable).addCallback(checked)

    def call(self, method: str, /, **params: Any) -> Any:
        import treq

        async def run() -> Any:
            response = await self._request(
                "POST",
                "/rpc",
                data=_request_body(method, params),
                headers=self._headers(Content_Type="application/json"),
            )
            return _result(self.control_url, response.code, await treq.content(response))

        from twisted.internet.defer import Deferred

        return Deferred.fromCoroutine(run())

    def stream_har(self, session_id: str, file: IO[bytes]) -> Any:
        """Stream the session's HAR export into ``file``; fires with bytes written."""
        import treq
        from twisted.internet.defer import Deferred

        async def run() -> int:
            response = await self._request(
                "GET", _har_path(session_id), headers=self._headers(), unbuffered=True
            )
            if response.code != 200:
                _raise_http(self.control_url, response.code, await treq.content(response))
            written = [0]

            def write(chunk: bytes) -> None:
                file.write(chunk)
                written[0] += len(chunk)

            await treq.collect(response, write)
            return written[0]

        return Deferred.fromCoroutine(run())

    def events(
        self,
        on_event: Callable[[ServerEvent], None],
        types: str | None = None,
        last_event_id: str | None = None,
    ) -> Any:
        """Call ``on_event`` for each live event.  The Deferred fires when the server
        ends the stream; cancelling it disconnects (and fails it with ``CancelledError``)."""
        import treq
        from twisted.internet.defer import CancelledError, Deferred
        from twisted.internet.protocol import Protocol

        path = "/events" + ("?" + urllib.parse.urlencode({"types": types}) if types else "")
        extra = {"Accept": "text/event-stream"}
        if last_event_id:
            extra["Last_Event_ID"] = last_event_id
        parser = SSEParser()
        stream: list[Any] = []

        class EventsProtocol(Protocol):
            def dataReceived(self, data: bytes) -> None:
                if not ended.called:
                    for event in parser.feed(data):
                        on_event(event)

            def connectionLost(self, reason: Any = None) -> None:
                if not ended.called:
                    ended.callback(None)

        def disconnect(_: Deferred[None]) -> None:
            for protocol in stream:
                protocol.transport.stopProducing()
            requesting.cancel()

        ended: Deferred[None] = Deferred(disconnect)

        async def connect() -> None:
            response = await self._request(
                "GET", path, headers=self._headers(**extra), unbuffered=True
            )
            if response.code != 200:
                _raise_http(self.control_url, response.code, await treq.content(response))
            protocol = EventsProtocol()
            stream.append(protocol)
            response.deliverBody(protocol)

        def failed(failure: Any) -> None:
            if not ended.called and not failure.check(CancelledError):
                ended.errback(failure)

        requesting = Deferred.fromCoroutine(connect())
        requesting.addErrback(failed)
        return ended


__all__ = [
    "AuthenticationFailed",
    "BlockingClient",
    "DEFAULT_CONTROL_URL",
    "MethodHelpers",
    "PostcapClient",
    "PostcapError",
    "SSEParser",
    "ServerNotRunning",
    "ServerEvent",
    "ServerLocation",
    "ServerUnreachable",
    "connect",
    "data_dir",
    "locate",
    "read_token",
    "resolve",
    "TokenUnreadable",
]
