"""A transport-free JSON-RPC 2.0 dispatcher, shaped like :mod:`twisted.web.xmlrpc`.

Dotted names (``session.start``) map to callables that take their params by name
as keyword arguments.  A callable may return a plain value, a coroutine or a
:class:`~twisted.internet.defer.Deferred`.  :class:`JSONRPCDispatcher` turns
request bytes into response bytes and knows nothing of HTTP, SSE or sockets.

Parameters are checked here, before a method runs: unknown and missing names
from the signature; every string must be valid Unicode (no lone surrogates) and
every integer within signed 64 bits, anywhere in the params; and a method's own
description of its parameters (a ``__rpc_params__`` attribute with
``validate(params) -> params``, set by :func:`postcap.control.params.takes`).

Errors a method means to report are :class:`RPCError` (or a subclass); they become
the response's ``error`` object.  Anything else a method raises is a bug: the
client sees ``-32603 internal error`` (never a traceback) and the failure is
logged with ``Logger.failure``.

This module imports nothing from the rest of postcap but :mod:`postcap.control.json_values`.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, TypeVar

from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.logger import Logger

from postcap.control.json_values import first_bad_value

__all__ = [
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "INTERNAL_ERROR",
    "SESSION_ACTIVE",
    "INVALID_STATE",
    "NOT_FOUND",
    "INVALID_OPTION",
    "PORT_UNAVAILABLE",
    "RPCError",
    "ParseError",
    "InvalidRequest",
    "MethodNotFound",
    "InvalidParams",
    "InternalError",
    "SessionActive",
    "InvalidState",
    "NotFound",
    "InvalidOption",
    "PortUnavailable",
    "JSONRPCDispatcher",
]

# Standard JSON-RPC 2.0 codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Application codes (CONTRACT.md section 4).
SESSION_ACTIVE = -32001
INVALID_STATE = -32002
NOT_FOUND = -32004
INVALID_OPTION = -32005
PORT_UNAVAILABLE = -32010


class RPCError(Exception):
    """An error a method reports to the client as a JSON-RPC ``error`` object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message, data)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def to_json(self) -> dict[str, Any]:
        """The ``error`` member of a response; ``data`` only when it is not None."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ParseError(RPCError):
    """-32700: the body is not valid UTF-8 JSON."""

    def __init__(self, message: str = "parse error", data: Any = None) -> None:
        super().__init__(PARSE_ERROR, message, data)


class InvalidRequest(RPCError):
    """-32600: the JSON is not a valid request object (or batch)."""

    def __init__(self, message: str = "invalid request", data: Any = None) -> None:
        super().__init__(INVALID_REQUEST, message, data)


class MethodNotFound(RPCError):
    """-32601: no method is registered under this name."""

    def __init__(self, method: str) -> None:
        super().__init__(METHOD_NOT_FOUND, f"method '{method}' not found", {"method": method})


class InvalidParams(RPCError):
    """-32602 naming the parameter, e.g. ``invalid parameter 'limit': must be ...``."""

    def __init__(self, param: str, problem: str, *, message: str | None = None) -> None:
        if message is None:
            message = f"invalid parameter '{param}': {problem}"
        super().__init__(INVALID_PARAMS, message, {"param": param})
        self.param = param
        self.problem = problem

    @classmethod
    def unknown(cls, param: str) -> InvalidParams:
        """The method takes no parameter of this name."""
        return cls(param, "unknown", message=f"unknown parameter '{param}'")

    @classmethod
    def missing(cls, param: str) -> InvalidParams:
        """A required parameter was not given."""
        return cls(param, "missing", message=f"missing required parameter '{param}'")


class InternalError(RPCError):
    """-32603: what the client sees of a bug; details go to the log only."""

    def __init__(self, message: str = "internal error", data: Any = None) -> None:
        super().__init__(INTERNAL_ERROR, message, data)


class SessionActive(RPCError):
    """-32001: a capture session is already running or paused."""

    def __init__(
        self, message: str = "a capture session is already active", data: Any = None
    ) -> None:
        super().__init__(SESSION_ACTIVE, message, data)


class InvalidState(RPCError):
    """-32002: the session's state does not allow this operation."""

    def __init__(
        self, message: str = "the session's state does not allow this", data: Any = None
    ) -> None:
        super().__init__(INVALID_STATE, message, data)


class NotFound(RPCError):
    """-32004, e.g. ``NotFound("session", "42")`` → ``session '42' not found``."""

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(NOT_FOUND, f"{what} '{ident}' not found", {"type": what, "id": ident})
        self.what = what
        self.ident = ident


class InvalidOption(RPCError):
    """-32005: an invalid filter or session option, naming the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(INVALID_OPTION, f"invalid option '{field}': {problem}", {"field": field})
        self.field = field
        self.problem = problem


class PortUnavailable(RPCError):
    """-32010: the proxy port cannot be listened on."""

    def __init__(self, port: int | None = None, reason: str | None = None) -> None:
        message = "proxy port unavailable" if port is None else f"proxy port {port} unavailable"
        if reason:
            message = f"{message}: {reason}"
        super().__init__(PORT_UNAVAILABLE, message, None if port is None else {"port": port})
        self.port = port
        self.reason = reason


_F = TypeVar("_F", bound=Callable[..., Any])

#: Method names the JSON-RPC 2.0 specification reserves.
_RESERVED_PREFIX = "rpc."

#: A JSON string; the closing quote is optional, so an unterminated one swallows the rest.
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_BRACKET_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _text_depth_exceeds(text: str, limit: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than ``limit``, measured without parsing."""
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    return max(accumulate(map(_BRACKET_DELTA.__getitem__, brackets)), default=0) > limit


def _object_depth_exceeds(obj: Any, limit: int) -> bool:
    """Whether a parsed value nests lists/dicts deeper than ``limit`` (cycles count as deep)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _valid_id(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or (isinstance(value, (str, int)) and not isinstance(value, bool))


@dataclass(frozen=True, slots=True)
class _Method:
    """A registered callable and what its signature accepts by name."""

    name: str
    func: Callable[..., Any]
    accepted: frozenset[str] | None  # None: takes **kwargs (or could not be inspected)
    required: tuple[str, ...]
    #: The method's own parameter description: ``validate(params) -> params``, or None.
    spec: Any = None

    @classmethod
    def inspect(cls, name: str, func: Callable[..., Any]) -> _Method:
        spec = getattr(func, "__rpc_params__", None)
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            return cls(name, func, None, (), spec)
        accepted: set[str] = set()
        required: list[str] = []
        var_keyword = False
        for param in signature.parameters.values():
            if param.kind is param.VAR_KEYWORD:
                var_keyword = True
            elif param.kind is param.VAR_POSITIONAL:
                continue
            elif param.kind is param.POSITIONAL_ONLY:
                if param.default is param.empty:
                    raise ValueError(
                        f"RPC method {name!r}: positional-only parameter {param.name!r} "
                        "cannot be passed by name"
                    )
            else:
                accepted.add(param.name)
                if param.default is param.empty:
                    required.append(param.name)
        if spec is not None and not var_keyword:
            undeclared = sorted(set(spec.names()) - accepted)
            if undeclared:
                raise ValueError(
                    f"RPC method {name!r} describes parameters it does not take: {undeclared}"
                )
        return cls(
            name, func, None if var_keyword else frozenset(accepted), tuple(required), spec
        )

    def check(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The params to call with; :class:`InvalidParams` for an unknown, missing
        or invalid one."""
        if self.accepted is not None:
            for key in params:
                if key not in self.accepted:
                    raise InvalidParams.unknown(key)
        for key in self.required:
            if key not in params:
                raise InvalidParams.missing(key)
        bad = first_bad_value(params)
        if bad is not None:
            raise InvalidParams(*bad)
        if self.spec is None:
            return dict(params)
        return dict(self.spec.validate(params))


@dataclass(frozen=True, slots=True)
class _Call:
    """A valid request, ready to run."""

    method: str
    params: dict[str, Any]
    id: Any
    notification: bool


class _Rejected(Exception):
    """A request that cannot be run: answered with ``error`` and ``id``, or, when it
    is a well-formed notification (``notification`` holds its method), only logged."""

    def __init__(self, error: RPCError, id: Any = None, notification: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.id = id
        self.notification = notification


class JSONRPCDispatcher:
    """Maps dotted method names to callables and answers JSON-RPC 2.0 requests.

    ``max_batch`` bounds the number of requests in one batch and ``max_depth``
    the nesting of arrays and objects in one body (the request object counts as
    one level); both are rejected with ``-32600``.  Requests of a batch run
    concurrently; their responses keep the batch's order.
    """

    _log = Logger()

    def __init__(
        self,
        methods: Mapping[str, Callable[..., Any]] | None = None,
        *,
        max_batch: int = 100,
        max_depth: int = 32,
        on_call: Callable[[str, int | None], None] | None = None,
    ) -> None:
        self.max_batch = max_batch
        self.max_depth = max_depth
        #: Told ``(method, error code or None)`` after each call; an unknown method is
        #: reported as ``"other"`` (for metrics: a fixed set of names).
        self.on_call = on_call
        self._methods: dict[str, _Method] = {}
        for name, func in (methods or {}).items():
            self.register(name, func)

    # -- registration -------------------------------------------------------

    def register(self, name: str, func: _F | None = None) -> Any:
        """Register ``func`` under the dotted ``name``; without ``func``, a decorator.

        The signature is inspected once, here.  Raises ValueError for a duplicate
        or reserved (``rpc.``) name.
        """
        if func is None:

            def decorator(f: _F) -> _F:
                self.register(name, f)
                return f

            return decorator
        if not isinstance(name, str) or not name:
            raise ValueError(f"invalid RPC method name {name!r}")
        if name.startswith(_RESERVED_PREFIX):
            raise ValueError(f"RPC method names starting with 'rpc.' are reserved: {name!r}")
        if name in self._methods:
            raise ValueError(f"RPC method {name!r} is already registered")
        if not callable(func):
            raise TypeError(f"RPC method {name!r} is not callable")
        self._methods[name] = _Method.inspect(name, func)
        return func

    def register_object(self, prefix: str, obj: object, *, attr_prefix: str = "rpc_") -> None:
        """Register every ``rpc_NAME`` attribute of ``obj`` as ``PREFIX.NAME``.

        Like ``XMLRPC.putSubHandler`` with ``xmlrpc_`` methods:
        ``register_object("session", sessions)`` maps ``session.start`` to
        ``sessions.rpc_start``.
        """
        for attr in dir(obj):
            if attr.startswith(attr_prefix) and len(attr) > len(attr_prefix):
                func = getattr(obj, attr)
                if callable(func):
                    self.register(f"{prefix}.{attr[len(attr_prefix):]}", func)

    def method_names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._methods)

    def parameter_names(self, name: str) -> frozenset[str] | None:
        """The parameters method ``name`` takes by name (its signature's and its
        description's); None when it takes any (``**kwargs`` with no description)."""
        method = self._methods[name]
        described = frozenset(method.spec.names()) if method.spec is not None else frozenset()
        if method.accepted is None:
            return described or None
        return method.accepted | described

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    # -- entry points -------------------------------------------------------

    async def handle(self, body: bytes) -> bytes | None:
        """Answer one request body; None when there is nothing to send back.

        Never raises for bad input: every problem becomes an error response.
        """
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as e:
            return self._encode_error(ParseError(f"parse error: invalid UTF-8 at byte {e.start}"))
        if _text_depth_exceeds(text, self.max_depth):
            return self._encode_error(self._too_deep())
        try:
            obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except RecursionError:
            return self._encode_error(self._too_deep())
        except ValueError as e:
            return self._encode_error(ParseError(f"parse error: {e}"))
        return await self._dispatch(obj)

    async def handle_object(self, obj: Any) -> Any:
        """Answer an already-parsed request or batch; the response as parsed JSON, or None."""
        if _object_depth_exceeds(obj, self.max_depth):
            response = self._encode_error(self._too_deep())
        else:
            response = await self._dispatch(obj)
        return None if response is None else json.loads(response)

    # -- internals ----------------------------------------------------------

    def _too_deep(self) -> InvalidRequest:
        return InvalidRequest(f"invalid request: nested deeper than {self.max_depth} levels")

    async def _dispatch(self, obj: Any) -> bytes | None:
        if not isinstance(obj, list):
            return await self._answer(obj)
        if not obj:
            return self._encode_error(InvalidRequest("invalid request: empty batch"))
        if len(obj) > self.max_batch:
            return self._encode_error(
                InvalidRequest(
                    f"invalid request: batch of {len(obj)} exceeds the limit of {self.max_batch}"
                )
            )
        answers = await gatherResults([Deferred.fromCoroutine(self._answer(item)) for item in obj])
        parts = [answer for answer in answers if answer is not None]
        if not parts:
            return None
        return b"[" + b",".join(parts) + b"]"

    def _parse(self, obj: Any) -> _Call:
        """Validate one request object; raise :class:`_Rejected` when it is invalid."""
        if not isinstance(obj, dict):
            raise _Rejected(InvalidRequest("invalid request: expected a request object"))
        notification = "id" not in obj
        id = obj.get("id")
        if not _valid_id(id):
            raise _Rejected(
                InvalidRequest("invalid request: 'id' must be a string, a number or null")
            )
        if obj.get("jsonrpc") != "2.0":
            raise _Rejected(InvalidRequest("invalid request: 'jsonrpc' must be \"2.0\""), id)
        method = obj.get("method")
        if not isinstance(method, str):
            raise _Rejected(InvalidRequest("invalid request: 'method' must be a string"), id)
        params = obj.get("params", {})
        if isinstance(params, list):
            raise _Rejected(
                InvalidParams(
                    "params",
                    "must be an object",
                    message="params must be an object (parameters are passed by name)",
                ),
                id,
                method if notification else None,
            )
        if not isinstance(params, dict):
            raise _Rejected(InvalidRequest("invalid request: 'params' must be an object"), id)
        return _Call(method, params, id, notification)

    async def _answer(self, obj: Any) -> bytes | None:
        """Run one request; its encoded response, or None for a notification."""
        try:
            call = self._parse(obj)
        except _Rejected as rejected:
            if rejected.notification is not None:
                self._log_notification_error(rejected.notification, rejected.error)
                return None
            return self._encode_error(rejected.error, rejected.id)
        try:
            result = await self._call(call)
        except RPCError as error:
            if call.notification:
                self._log_notification_error(call.method, error)
                return None
            return self._encode_error(error, call.id)
        except CancelledError:
            self._log.info("RPC method {method} was cancelled", method=call.method)
            return None if call.notification else self._encode_error(InternalError(), call.id)
        except Exception:
            self._log.failure("RPC method {method} raised an unexpected error", method=call.method)
            return None if call.notification else self._encode_error(InternalError(), call.id)
        if call.notification:
            return None
        return self._encode_result(result, call)

    async def _call(self, call: _Call) -> Any:
        if self.on_call is None:
            return await self._run(call)
        name = call.method if call.method in self._methods else "other"
        try:
            result = await self._run(call)
        except RPCError as error:
            self.on_call(name, error.code)
            raise
        except BaseException:
            self.on_call(name, INTERNAL_ERROR)
            raise
        self.on_call(name, None)
        return result

    async def _run(self, call: _Call) -> Any:
        method = self._methods.get(call.method)
        if method is None:
            raise MethodNotFound(call.method)
        result = method.func(**method.check(call.params))
        while inspect.isawaitable(result):
            result = await result
        return result

    def _log_notification_error(self, method: str, error: RPCError) -> None:
        self._log.error(
            "RPC notification {method} failed: {code} {message}",
            method=method,
            code=error.code,
            message=error.message,
        )

    def _encode_result(self, result: Any, call: _Call) -> bytes:
        try:
            return _encode({"jsonrpc": "2.0", "result": result, "id": call.id})
        except (TypeError, ValueError, RecursionError):
            self._log.failure(
                "RPC method {method} returned a result that is not JSON-serializable",
                method=call.method,
            )
            return self._encode_error(InternalError(), call.id)

    def _encode_error(self, error: RPCError, id: Any = None) -> bytes:
        try:
            return _encode({"jsonrpc": "2.0", "error": error.to_json(), "id": id})
        except (TypeError, ValueError, RecursionError):
            self._log.failure(
                "RPC error {code} has data that is not JSON-serializable", code=error.code
            )
            return _encode({"jsonrpc": "2.0", "error": InternalError().to_json(), "id": id})


def _encode(response: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; lone surrogates (from ``\\ud800`` escapes) stay escaped."""
    text = json.dumps(response, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(response, separators=(",", ":"), allow_nan=False).encode("ascii")
