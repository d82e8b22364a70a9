"""The control channel's HTTP face: bearer-token guard, ``POST /rpc`` and friends.

The resources adapt requests to the transport-free
:class:`~postcap.control.dispatch.JSONRPCDispatcher`; nothing here knows any
method.  Every path needs ``Authorization: Bearer TOKEN`` except the few in
:attr:`ControlRoot.public`.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from postcap.control.auth import bearer_matches
from postcap.control.dispatch import JSONRPCDispatcher

#: Upper bound of a JSON-RPC request body.
MAX_RPC_BODY = 1024 * 1024


def json_error(request: Request, status: int, message: str, **extra: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps({"error": message, **extra}).encode("utf-8")


class RPCResource(Resource):
    """``POST /rpc``: JSON-RPC 2.0, single or batch."""

    isLeaf = True
    _log = Logger()

    def __init__(self, dispatcher: JSONRPCDispatcher) -> None:
        super().__init__()
        self.dispatcher = dispatcher

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"allow", b"POST")
        return json_error(request, 405, "use POST with a JSON-RPC 2.0 body")

    def render_POST(self, request: Request) -> Any:
        body = request.content.read(MAX_RPC_BODY + 1)
        if len(body) > MAX_RPC_BODY:
            return json_error(request, 413, f"JSON-RPC body over {MAX_RPC_BODY} bytes")
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def respond(answer: bytes | None) -> None:
            if gone:
                return
            if answer is None:
                request.setResponseCode(204)
            else:
                request.setHeader(b"content-type", b"application/json")
                request.write(answer)
            request.finish()

        def failed(failure: Failure) -> None:
            self._log.failure("JSON-RPC handling failed", failure)
            if not gone:
                request.write(json_error(request, 500, "internal error"))
                request.finish()

        Deferred.fromCoroutine(self.dispatcher.handle(body)).addCallbacks(respond, failed)
        return NOT_DONE_YET


class StaticBytes(Resource):
    """A small fixed document (e.g. ``GET /ca.pem``)."""

    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes) -> None:
        super().__init__()
        self.body = body
        self.content_type = content_type

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"cache-control", b"no-store")
        return self.body


class UnauthorizedResource(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setHeader(b"www-authenticate", b'Bearer realm="postcap"')
        return json_error(request, 401, "missing or invalid bearer token")


#: Query parameters that would carry the token in a URL (and so in logs and history).
TOKEN_PARAMETERS = frozenset({b"token", b"access_token", b"bearer"})


class TokenInURLResource(Resource):
    """400 for a token in the query string: it belongs in ``Authorization``."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        return json_error(request, 400, "send the token in the Authorization header "
                                        "(Bearer), never in the URL")


class ControlRoot(Resource):
    """The root of the control channel: checks the token, then routes."""

    #: Paths served without a token: the CA, the health check, and the web page
    #: (``/``, its sign-in form) with its static files; everything the page fetches
    #: needs the token.
    public: frozenset[bytes] = frozenset({b"ca.pem", b"healthz", b"readyz", b"", b"static"})

    def __init__(self, token_provider: Callable[[], str]) -> None:
        super().__init__()
        self._token = token_provider

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        if TOKEN_PARAMETERS.intersection(request.args or {}):
            return TokenInURLResource()
        if path not in self.public and not bearer_matches(
            request.getHeader(b"authorization"), self._token()
        ):
            return UnauthorizedResource()
        return super().getChildWithDefault(path, request)

    def render_GET(self, request: Request) -> bytes:
        if not bearer_matches(request.getHeader(b"authorization"), self._token()):
            return UnauthorizedResource().render(request)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"service": "postcap", "rpc": "/rpc"}).encode("utf-8")


def control_site(root: ControlRoot) -> Site:
    """The Site of the control channel (Host check, body cap: see :mod:`postcap.control.guard`)."""
    from postcap.control.guard import ControlSite

    return ControlSite(root)
