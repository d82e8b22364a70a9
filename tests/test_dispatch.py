"""Tests for postcap.control.dispatch: the transport-free JSON-RPC 2.0 core."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from postcap.control import dispatch
from postcap.control.dispatch import (
    INTERNAL_ERROR,
    INVALID_OPTION,
    INVALID_PARAMS,
    INVALID_REQUEST,
    INVALID_STATE,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PARSE_ERROR,
    PORT_UNAVAILABLE,
    SESSION_ACTIVE,
    InvalidOption,
    InvalidParams,
    InvalidState,
    JSONRPCDispatcher,
    NotFound,
    PortUnavailable,
    RPCError,
    SessionActive,
)


def _strict_loads(data: bytes) -> Any:
    """Parse as strict JSON: UTF-8, no NaN/Infinity."""

    def reject(name: str) -> Any:
        raise ValueError(name)

    return json.loads(data.decode("utf-8"), parse_constant=reject)


def _request(method: str, params: Any = None, id: Any = 1, **extra: Any) -> bytes:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method, **extra}
    if params is not None:
        obj["params"] = params
    if id is not _NOTIFY:
        obj["id"] = id
    return json.dumps(obj).encode()


_NOTIFY = object()


class Service:
    """Methods of every kind, for the dispatcher under test."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.pending: dict[str, Deferred[Any]] = {}

    def echo(self, value: Any) -> Any:
        self.calls.append(("echo", value))
        return value

    def add(self, a: int, b: int = 0) -> int:
        return a + b

    async def async_add(self, a: int, b: int) -> int:
        return a + b

    def deferred_add(self, a: int, b: int) -> Deferred[int]:
        return succeed(a + b)

    def later(self, key: str) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        self.pending[key] = d
        return d

    async def await_later(self, key: str) -> str:
        value = await self.later(key)
        return value + "!"

    def kwargs(self, required: str, **rest: Any) -> dict[str, Any]:
        return {"required": required, "rest": rest}

    def nothing(self) -> None:
        self.calls.append(("nothing", None))

    def boom(self) -> None:
        raise ZeroDivisionError("secret traceback detail")

    async def async_boom(self) -> None:
        raise ZeroDivisionError("secret")

    def rpc_error(self) -> None:
        raise NotFound("session", "42")

    def unserializable(self) -> object:
        return object()

    def nan(self) -> float:
        return float("nan")

    def bad_error_data(self) -> None:
        raise RPCError(-32099, "custom", data=object())

    def surrogate(self) -> str:
        return "\ud800"


def make_dispatcher(**kwargs: Any) -> tuple[JSONRPCDispatcher, Service]:
    service = Service()
    methods = {
        name.replace("_", "."): getattr(service, name)
        for name in (
            "echo", "add", "nothing", "boom", "kwargs", "later", "nan", "surrogate",
            "unserializable",
        )
    }
    methods.update(
        {
            "math.async_add": service.async_add,
            "math.deferred_add": service.deferred_add,
            "await_later": service.await_later,
            "async_boom": service.async_boom,
            "rpc_error": service.rpc_error,
            "bad_error_data": service.bad_error_data,
        }
    )
    return JSONRPCDispatcher(methods, **kwargs), service


class DispatchTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.dispatcher, self.service = make_dispatcher()
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def handle(self, body: bytes) -> Any:
        """Dispatch ``body``; the parsed response (None when there is none)."""
        raw = self.successResultOf(Deferred.fromCoroutine(self.dispatcher.handle(body)))
        if raw is None:
            return None
        self.assertIsInstance(raw, bytes)
        return _strict_loads(raw)

    def assertError(self, response: Any, code: int, id: Any = None) -> dict[str, Any]:
        self.assertEqual(set(response), {"jsonrpc", "error", "id"}, response)
        self.assertEqual(response["jsonrpc"], "2.0")
        self.assertEqual(response["id"], id)
        self.assertEqual(response["error"]["code"], code, response)
        self.assertIsInstance(response["error"]["message"], str)
        return response["error"]

    def assertResult(self, response: Any, result: Any, id: Any = 1) -> None:
        self.assertEqual(response, {"jsonrpc": "2.0", "result": result, "id": id})


class CallTests(DispatchTestCase):
    def test_sync_method(self) -> None:
        self.assertResult(self.handle(_request("add", {"a": 2, "b": 3})), 5)

    def test_default_parameter(self) -> None:
        self.assertResult(self.handle(_request("add", {"a": 2})), 2)

    def test_absent_params_is_empty_object(self) -> None:
        self.assertResult(self.handle(_request("nothing")), None)
        self.assertEqual(self.service.calls, [("nothing", None)])

    def test_async_method(self) -> None:
        self.assertResult(self.handle(_request("math.async_add", {"a": 1, "b": 2})), 3)

    def test_deferred_method(self) -> None:
        self.assertResult(self.handle(_request("math.deferred_add", {"a": 1, "b": 2})), 3)

    def test_deferred_fires_later(self) -> None:
        d = Deferred.fromCoroutine(self.dispatcher.handle(_request("later", {"key": "k"}, id="x")))
        self.assertNoResult(d)
        self.service.pending["k"].callback("done")
        self.assertResult(_strict_loads(self.successResultOf(d)), "done", id="x")

    def test_method_awaiting_clock(self) -> None:
        clock = Clock()

        async def sleepy() -> str:
            await deferLater(clock, 5, lambda: None)
            return "awake"

        self.dispatcher.register("sleepy", sleepy)
        d = Deferred.fromCoroutine(self.dispatcher.handle(_request("sleepy")))
        self.assertNoResult(d)
        clock.advance(5)
        self.assertResult(_strict_loads(self.successResultOf(d)), "awake")

    def test_ids_echoed(self) -> None:
        for id in ["abc", 7, -1.5, None, ""]:
            self.assertResult(self.handle(_request("echo", {"value": 1}, id=id)), 1, id=id)

    def test_non_ascii_result_is_utf8(self) -> None:
        body = _request("echo", {"value": "héllo ✓"})
        raw = self.successResultOf(Deferred.fromCoroutine(self.dispatcher.handle(body)))
        self.assertEqual(raw, '{"jsonrpc":"2.0","result":"héllo ✓","id":1}'.encode())

    def test_lone_surrogate_result_stays_valid(self) -> None:
        self.assertResult(self.handle(_request("surrogate")), "\ud800")

    def test_lone_surrogate_id(self) -> None:
        body = b'{"jsonrpc":"2.0","method":"echo","params":{"value":1},"id":"\\ud800"}'
        self.assertResult(self.handle(body), 1, id="\ud800")

    def test_extra_members_ignored(self) -> None:
        self.assertResult(self.handle(_request("add", {"a": 1}, extra=True)), 1)

    def test_kwargs_method_takes_anything(self) -> None:
        response = self.handle(_request("kwargs", {"required": "r", "x": 1, "y-z": 2}))
        self.assertResult(response, {"required": "r", "rest": {"x": 1, "y-z": 2}})

    def test_kwargs_method_still_checks_required(self) -> None:
        error = self.assertError(self.handle(_request("kwargs", {"x": 1})), INVALID_PARAMS, 1)
        self.assertEqual(error["message"], "missing required parameter 'required'")

    def test_register_decorator(self) -> None:
        @self.dispatcher.register("deco.rated")
        def rated(n: int) -> int:
            return n * 2

        self.assertEqual(rated(2), 4)
        self.assertResult(self.handle(_request("deco.rated", {"n": 21})), 42)

    def test_register_object(self) -> None:
        class Sessions:
            def rpc_start(self, name: str = "x") -> str:
                return f"started {name}"

            def rpc_stop(self) -> str:
                return "stopped"

            def helper(self) -> None:
                """Not exposed."""

        dispatcher = JSONRPCDispatcher()
        dispatcher.register_object("session", Sessions())
        self.assertEqual(dispatcher.method_names(), ["session.start", "session.stop"])
        self.assertIn("session.start", dispatcher)
        raw = self.successResultOf(
            Deferred.fromCoroutine(dispatcher.handle(_request("session.start", {"name": "a"})))
        )
        self.assertResult(_strict_loads(raw), "started a")

    def test_register_rejects(self) -> None:
        self.assertRaises(ValueError, self.dispatcher.register, "add", lambda: None)
        self.assertRaises(ValueError, self.dispatcher.register, "rpc.discover", lambda: None)
        self.assertRaises(ValueError, self.dispatcher.register, "", lambda: None)
        self.assertRaises(TypeError, self.dispatcher.register, "x", 42)

        def positional_only(a: int, /) -> int:
            return a

        self.assertRaises(ValueError, self.dispatcher.register, "po", positional_only)

    def test_signature_inspected_once(self) -> None:
        calls = []

        def f(a: int) -> int:
            calls.append(a)
            return a

        self.dispatcher.register("f", f)
        f.__signature__ = None  # type: ignore[attr-defined]  # later changes are not seen
        self.assertResult(self.handle(_request("f", {"a": 1})), 1)
        self.assertError(self.handle(_request("f", {"b": 1})), INVALID_PARAMS, 1)

    def test_handle_object(self) -> None:
        response = self.successResultOf(
            Deferred.fromCoroutine(
                self.dispatcher.handle_object(
                    [
                        {"jsonrpc": "2.0", "method": "add", "params": {"a": 1}, "id": 1},
                        {"jsonrpc": "2.0", "method": "nothing"},
                    ]
                )
            )
        )
        self.assertEqual(response, [{"jsonrpc": "2.0", "result": 1, "id": 1}])

    def test_handle_object_notification(self) -> None:
        d = Deferred.fromCoroutine(
            self.dispatcher.handle_object({"jsonrpc": "2.0", "method": "nothing"})
        )
        self.assertIsNone(self.successResultOf(d))

    def test_handle_object_too_deep_and_cyclic(self) -> None:
        cyclic: dict[str, Any] = {"jsonrpc": "2.0", "method": "echo", "id": 1}
        cyclic["params"] = {"value": cyclic}
        response = self.successResultOf(
            Deferred.fromCoroutine(self.dispatcher.handle_object(cyclic))
        )
        self.assertError(response, INVALID_REQUEST)

    def test_bytes_like_body(self) -> None:
        raw = self.successResultOf(
            Deferred.fromCoroutine(self.dispatcher.handle(bytearray(_request("add", {"a": 1}))))
        )
        self.assertResult(_strict_loads(raw), 1)


class ErrorTests(DispatchTestCase):
    def test_invalid_utf8(self) -> None:
        error = self.assertError(self.handle(b'{"jsonrpc":"2.0","method":"\xff","id":1}'),
                                 PARSE_ERROR)
        self.assertIn("UTF-8", error["message"])

    def test_invalid_json(self) -> None:
        for body in [b"", b"{", b'{"jsonrpc":"2.0",', b"nope", b"\xef\xbb\xbf{}", b"[1,]"]:
            self.assertError(self.handle(body), PARSE_ERROR)

    def test_nan_and_infinity_are_not_json(self) -> None:
        for literal in [b"NaN", b"Infinity", b"-Infinity", b"1e400"]:
            body = b'{"jsonrpc":"2.0","method":"echo","params":{"value":' + literal + b'},"id":1}'
            self.assertError(self.handle(body), PARSE_ERROR)

    def test_non_object_request(self) -> None:
        for body in [b"1", b'"x"', b"null", b"true"]:
            self.assertError(self.handle(body), INVALID_REQUEST)

    def test_empty_batch(self) -> None:
        response = self.handle(b"[]")
        self.assertIsInstance(response, dict)
        self.assertError(response, INVALID_REQUEST)

    def test_batch_of_non_objects(self) -> None:
        response = self.handle(b"[1,2,3]")
        self.assertEqual(len(response), 3)
        for item in response:
            self.assertError(item, INVALID_REQUEST)

    def test_batch_too_large(self) -> None:
        dispatcher, _ = make_dispatcher(max_batch=3)
        body = json.dumps([{"jsonrpc": "2.0", "method": "nothing", "id": i} for i in range(4)])
        raw = self.successResultOf(Deferred.fromCoroutine(dispatcher.handle(body.encode())))
        error = self.assertError(_strict_loads(raw), INVALID_REQUEST)
        self.assertIn("3", error["message"])
        self.assertEqual(self.service.calls, [])

    def test_batch_at_limit(self) -> None:
        dispatcher, _ = make_dispatcher(max_batch=3)
        body = json.dumps([{"jsonrpc": "2.0", "method": "add", "params": {"a": i}, "id": i}
                           for i in range(3)])
        raw = self.successResultOf(Deferred.fromCoroutine(dispatcher.handle(body.encode())))
        self.assertEqual([r["result"] for r in _strict_loads(raw)], [0, 1, 2])

    def test_jsonrpc_version(self) -> None:
        for version in ["1.0", 2.0, None, "2.0 "]:
            body = json.dumps({"jsonrpc": version, "method": "nothing", "id": 5}).encode()
            self.assertError(self.handle(body), INVALID_REQUEST, id=5)
        body = json.dumps({"method": "nothing", "id": 5}).encode()
        self.assertError(self.handle(body), INVALID_REQUEST, id=5)
        self.assertEqual(self.service.calls, [])

    def test_invalid_request_without_id_is_answered(self) -> None:
        # Not a valid notification, so the spec wants an error with id null.
        self.assertError(self.handle(b'{"jsonrpc":"2.0","method":1,"params":"bar"}'),
                         INVALID_REQUEST)

    def test_method_must_be_string(self) -> None:
        for method in [1, None, ["add"], {"a": 1}]:
            body = json.dumps({"jsonrpc": "2.0", "method": method, "id": "i"}).encode()
            self.assertError(self.handle(body), INVALID_REQUEST, id="i")
        self.assertError(self.handle(b'{"jsonrpc":"2.0","id":"i"}'), INVALID_REQUEST, id="i")

    def test_invalid_id(self) -> None:
        for id in [True, [1], {"a": 1}]:
            body = json.dumps({"jsonrpc": "2.0", "method": "nothing", "id": id}).encode()
            self.assertError(self.handle(body), INVALID_REQUEST, id=None)
        self.assertEqual(self.service.calls, [])

    def test_params_array(self) -> None:
        error = self.assertError(self.handle(_request("add", [1, 2])), INVALID_PARAMS, 1)
        self.assertEqual(
            error["message"], "params must be an object (parameters are passed by name)"
        )

    def test_params_not_structured(self) -> None:
        for params in ['"x"', "3", "null", "true"]:
            body = b'{"jsonrpc":"2.0","method":"nothing","id":1,"params":' + params.encode() + b"}"
            self.assertError(self.handle(body), INVALID_REQUEST, 1)
        self.assertEqual(self.service.calls, [])

    def test_method_not_found(self) -> None:
        error = self.assertError(self.handle(_request("no.such", id="q")), METHOD_NOT_FOUND, "q")
        self.assertIn("no.such", error["message"])
        self.assertEqual(error["data"], {"method": "no.such"})

    def test_unknown_parameter(self) -> None:
        error = self.assertError(self.handle(_request("add", {"a": 1, "x": 2})), INVALID_PARAMS, 1)
        self.assertEqual(error["message"], "unknown parameter 'x'")
        self.assertEqual(error["data"], {"param": "x"})

    def test_missing_parameter(self) -> None:
        error = self.assertError(self.handle(_request("add", {"b": 1})), INVALID_PARAMS, 1)
        self.assertEqual(error["message"], "missing required parameter 'a'")
        self.assertEqual(error["data"], {"param": "a"})

    def test_rpc_error_from_method(self) -> None:
        error = self.assertError(self.handle(_request("rpc_error")), NOT_FOUND, 1)
        self.assertEqual(error, {"code": NOT_FOUND, "message": "session '42' not found",
                                 "data": {"type": "session", "id": "42"}})
        self.assertEqual([e for e in self.log if e["log_level"] >= LogLevel.warn], [])

    def test_rpc_error_from_deferred(self) -> None:
        d = Deferred.fromCoroutine(self.dispatcher.handle(_request("later", {"key": "k"})))
        self.service.pending["k"].errback(SessionActive())
        self.assertError(_strict_loads(self.successResultOf(d)), SESSION_ACTIVE, 1)

    def test_unexpected_exception(self) -> None:
        for method in ["boom", "async_boom"]:
            error = self.assertError(self.handle(_request(method)), INTERNAL_ERROR, 1)
            self.assertEqual(error, {"code": INTERNAL_ERROR, "message": "internal error"})
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        failures = [e for e in self.log if "log_failure" in e]
        self.assertEqual([e["method"] for e in failures], ["boom", "async_boom"])
        self.assertEqual(failures[0]["log_level"], LogLevel.critical)
        self.assertIsInstance(failures[0]["log_failure"].value, ZeroDivisionError)

    def test_exception_from_deferred(self) -> None:
        d = Deferred.fromCoroutine(self.dispatcher.handle(_request("later", {"key": "k"})))
        self.service.pending["k"].errback(KeyError("k"))
        self.assertError(_strict_loads(self.successResultOf(d)), INTERNAL_ERROR, 1)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_cancelled_method(self) -> None:
        d = Deferred.fromCoroutine(self.dispatcher.handle(_request("later", {"key": "k"})))
        self.service.pending["k"].cancel()
        self.assertError(_strict_loads(self.successResultOf(d)), INTERNAL_ERROR, 1)
        self.assertEqual([e for e in self.log if "log_failure" in e], [])

    def test_unserializable_result(self) -> None:
        for method in ["unserializable", "nan"]:
            self.assertError(self.handle(_request(method, id=method)), INTERNAL_ERROR, method)
        self.assertEqual(len(self.flushLoggedErrors(TypeError, ValueError)), 2)
        self.assertEqual([e["method"] for e in self.log if "log_failure" in e],
                         ["unserializable", "nan"])

    def test_unserializable_error_data(self) -> None:
        error = self.assertError(self.handle(_request("bad_error_data")), INTERNAL_ERROR, 1)
        self.assertNotIn("data", error)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_deep_nesting_rejected(self) -> None:
        for depth in [33, 1000, 100_000]:
            value = "[" * depth + "]" * depth
            body = b'{"jsonrpc":"2.0","method":"echo","params":{"value":' + value.encode() + b"},"
            body += b'"id":1}'
            self.assertError(self.handle(body), INVALID_REQUEST)
        self.assertEqual(self.service.calls, [])

    def test_deep_batch_and_garbage(self) -> None:
        self.assertError(self.handle(b"[" * 100_000), INVALID_REQUEST)
        self.assertError(self.handle(b'{"a":' * 50_000), INVALID_REQUEST)

    def test_depth_limit_boundary(self) -> None:
        # The request object is level 1, params level 2, so value may nest 30 deep.
        value = "[" * 30 + "]" * 30
        body = ('{"jsonrpc":"2.0","method":"echo","params":{"value":%s},"id":1}' % value).encode()
        self.assertResult(self.handle(body), json.loads(value))
        value = "[" * 31 + "]" * 31
        body = ('{"jsonrpc":"2.0","method":"echo","params":{"value":%s},"id":1}' % value).encode()
        self.assertError(self.handle(body), INVALID_REQUEST)

    def test_brackets_inside_strings_do_not_count(self) -> None:
        value = json.dumps("[{" * 500 + '\\"[')
        body = ('{"jsonrpc":"2.0","method":"echo","params":{"value":%s},"id":1}' % value).encode()
        self.assertResult(self.handle(body), json.loads(value))


class NotificationTests(DispatchTestCase):
    def test_notification_runs_without_response(self) -> None:
        self.assertIsNone(self.handle(_request("echo", {"value": 9}, id=_NOTIFY)))
        self.assertEqual(self.service.calls, [("echo", 9)])

    def test_null_id_is_not_a_notification(self) -> None:
        self.assertResult(self.handle(_request("echo", {"value": 9}, id=None)), 9, id=None)

    def test_notification_errors_only_logged(self) -> None:
        for method, params in [("no.such", None), ("add", {"x": 1}), ("rpc_error", None),
                               ("add", [1])]:
            self.assertIsNone(self.handle(_request(method, params, id=_NOTIFY)))
        errors = [e for e in self.log if e["log_level"] == LogLevel.error]
        self.assertEqual([e["method"] for e in errors], ["no.such", "add", "rpc_error", "add"])
        self.assertEqual([e["code"] for e in errors],
                         [METHOD_NOT_FOUND, INVALID_PARAMS, NOT_FOUND, INVALID_PARAMS])

    def test_notification_exception_logged_as_failure(self) -> None:
        self.assertIsNone(self.handle(_request("boom", id=_NOTIFY)))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_batch_of_notifications(self) -> None:
        body = json.dumps([{"jsonrpc": "2.0", "method": "echo", "params": {"value": i}}
                           for i in range(3)]).encode()
        self.assertIsNone(self.handle(body))
        self.assertEqual(self.service.calls, [("echo", 0), ("echo", 1), ("echo", 2)])


class BatchTests(DispatchTestCase):
    def test_mixed_batch(self) -> None:
        body = json.dumps(
            [
                {"jsonrpc": "2.0", "method": "add", "params": {"a": 1, "b": 2}, "id": "1"},
                {"jsonrpc": "2.0", "method": "echo", "params": {"value": 7}},
                {"jsonrpc": "2.0", "method": "no.such", "id": "2"},
                {"foo": "boo"},
                {"jsonrpc": "2.0", "method": "math.async_add", "params": {"a": 1, "b": 1},
                 "id": "3"},
                1,
                {"jsonrpc": "2.0", "method": "boom"},
                {"jsonrpc": "2.0", "method": "add", "params": [1], "id": "4"},
            ]
        ).encode()
        response = self.handle(body)
        self.assertEqual(len(response), 6)
        self.assertResult(response[0], 3, id="1")
        self.assertError(response[1], METHOD_NOT_FOUND, "2")
        self.assertError(response[2], INVALID_REQUEST)
        self.assertResult(response[3], 2, id="3")
        self.assertError(response[4], INVALID_REQUEST)
        self.assertError(response[5], INVALID_PARAMS, "4")
        self.assertEqual(self.service.calls, [("echo", 7)])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_order_preserved_when_completed_out_of_order(self) -> None:
        body = json.dumps(
            [
                {"jsonrpc": "2.0", "method": "later", "params": {"key": "a"}, "id": 1},
                {"jsonrpc": "2.0", "method": "await_later", "params": {"key": "b"}, "id": 2},
                {"jsonrpc": "2.0", "method": "later", "params": {"key": "c"}, "id": 3},
            ]
        ).encode()
        d = Deferred.fromCoroutine(self.dispatcher.handle(body))
        # All three started before any finished: they run concurrently.
        self.assertEqual(sorted(self.service.pending), ["a", "b", "c"])
        self.service.pending["c"].callback("C")
        self.service.pending["b"].callback("B")
        self.assertNoResult(d)
        self.service.pending["a"].callback("A")
        response = _strict_loads(self.successResultOf(d))
        self.assertEqual([(r["id"], r["result"]) for r in response],
                         [(1, "A"), (2, "B!"), (3, "C")])

    def test_one_bad_result_does_not_spoil_the_batch(self) -> None:
        body = json.dumps(
            [
                {"jsonrpc": "2.0", "method": "unserializable", "id": 1},
                {"jsonrpc": "2.0", "method": "add", "params": {"a": 5}, "id": 2},
            ]
        ).encode()
        response = self.handle(body)
        self.assertError(response[0], INTERNAL_ERROR, 1)
        self.assertResult(response[1], 5, id=2)
        self.flushLoggedErrors(TypeError)


class ErrorClassTests(SynchronousTestCase):
    def test_codes(self) -> None:
        self.assertEqual(
            [
                dispatch.PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS,
                INTERNAL_ERROR, SESSION_ACTIVE, INVALID_STATE, NOT_FOUND, INVALID_OPTION,
                PORT_UNAVAILABLE,
            ],
            [-32700, -32600, -32601, -32602, -32603, -32001, -32002, -32004, -32005, -32010],
        )

    def test_invalid_params(self) -> None:
        error = InvalidParams("limit", "must be an integer >= 0")
        self.assertEqual(error.code, INVALID_PARAMS)
        self.assertEqual(error.message, "invalid parameter 'limit': must be an integer >= 0")
        self.assertEqual(error.data, {"param": "limit"})
        self.assertIsInstance(error, RPCError)

    def test_application_errors(self) -> None:
        self.assertEqual(SessionActive().code, SESSION_ACTIVE)
        self.assertEqual(InvalidState("session is stopped").to_json(),
                         {"code": INVALID_STATE, "message": "session is stopped"})
        self.assertEqual(
            InvalidOption("filters.url_contains", "not a valid regular expression").to_json(),
            {
                "code": INVALID_OPTION,
                "message": "invalid option 'filters.url_contains': not a valid regular expression",
                "data": {"field": "filters.url_contains"},
            },
        )
        self.assertEqual(NotFound("request", "r1").message, "request 'r1' not found")
        error = PortUnavailable(5555, "address already in use")
        self.assertEqual(error.code, PORT_UNAVAILABLE)
        self.assertEqual(error.message, "proxy port 5555 unavailable: address already in use")
        self.assertEqual(error.data, {"port": 5555})
        self.assertEqual(PortUnavailable().message, "proxy port unavailable")
        self.assertEqual(str(NotFound("session", "1")), "[-32004] session '1' not found")


# -- properties --------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)
_requests = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "method": st.sampled_from(["add", "echo", "boom", "nothing", "nope", "later"])
        | _json_values,
        "params": st.dictionaries(st.sampled_from(["a", "b", "value", "key", "x"]), _json_values,
                                  max_size=3) | _json_values,
        "id": _json_values,
    },
)
_bodies = (
    st.binary(max_size=200)
    | _json_values.map(lambda v: json.dumps(v).encode())
    | _requests.map(lambda v: json.dumps(v).encode())
    | st.lists(_requests, max_size=5).map(lambda v: json.dumps(v).encode())
)


def _check_response(item: Any) -> None:
    assert isinstance(item, dict) and item["jsonrpc"] == "2.0" and "id" in item
    assert ("result" in item) != ("error" in item)
    if "error" in item:
        assert isinstance(item["error"]["code"], int)
        assert isinstance(item["error"]["message"], str)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies)
def test_any_bytes_give_valid_json_or_none(body: bytes) -> None:
    """Whatever arrives, ``handle`` fires with None or valid JSON-RPC responses."""
    dispatcher, service = make_dispatcher()
    dispatcher.register("boom2", service.boom)
    observer = EventLoggingObserver()
    globalLogPublisher.addObserver(observer)
    try:
        d = Deferred.fromCoroutine(dispatcher.handle(body))
        results: list[Any] = []
        d.addBoth(results.append)
    finally:
        globalLogPublisher.removeObserver(observer)
    if not results:  # "later" left pending: finish it
        for pending in service.pending.values():
            pending.callback("ok")
    assert len(results) == 1, results
    raw = results[0]
    assert raw is None or isinstance(raw, bytes), raw
    if raw is not None:
        response = _strict_loads(raw)
        for item in response if isinstance(response, list) else [response]:
            _check_response(item)
