"""Tests for postcap.control.params: validators that name the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from twisted.internet.defer import Deferred

from postcap.control import params
from postcap.control.dispatch import INVALID_PARAMS, InvalidParams, JSONRPCDispatcher
from postcap.control.params import (
    INT64_MAX, LATEST_TIME, Bool, Custom, Enum, Ids, Int, List, Obj, Str, Strs, Time, takes,
)


def _rejects(func: Any, name: str, value: Any, *args: Any, **kwargs: Any) -> InvalidParams:
    with pytest.raises(InvalidParams) as info:
        func(name, value, *args, **kwargs)
    error = info.value
    assert error.code == INVALID_PARAMS
    assert error.data == {"param": name}
    assert error.message.startswith(f"invalid parameter '{name}': ")
    return error


def test_string() -> None:
    assert params.string("name", "x") == "x"
    assert params.string("name", "", allow_empty=True) == ""
    assert params.string("name", None, optional=True) is None
    assert params.string("name", None, optional=True, default="d") == "d"
    assert params.string("name", "abc", max_length=3) == "abc"
    for value in [None, 1, True, ["x"], {"a": 1}]:
        assert _rejects(params.string, "name", value).problem == "must be a string"
    assert _rejects(params.string, "name", "").problem == "must be a non-empty string"
    error = _rejects(params.string, "name", "abcd", max_length=3)
    assert error.message == "invalid parameter 'name': must be at most 3 characters long"


def test_integer() -> None:
    assert params.integer("limit", 5) == 5
    assert params.integer("limit", 5.0) == 5
    assert type(params.integer("limit", 5.0)) is int
    assert params.integer("limit", 0, minimum=0, maximum=0) == 0
    assert params.integer("limit", None, optional=True, default=100) == 100
    assert params.integer("limit", None, optional=True) is None
    error = _rejects(params.integer, "limit", -1, minimum=0)
    assert error.message == "invalid parameter 'limit': must be an integer >= 0"
    assert _rejects(params.integer, "limit", 11, maximum=10).problem == "must be an integer <= 10"
    assert (
        _rejects(params.integer, "port", 0, minimum=1, maximum=65535).problem
        == "must be an integer between 1 and 65535"
    )
    for value in [True, False, 1.5, "1", None, [1]]:
        assert _rejects(params.integer, "limit", value).problem == "must be an integer"
    # Type errors describe the whole expectation, range included.
    assert _rejects(params.integer, "offset", "x", minimum=0).problem == "must be an integer >= 0"


def test_boolean() -> None:
    assert params.boolean("enabled", True) is True
    assert params.boolean("enabled", False) is False
    assert params.boolean("enabled", None, optional=True, default=True) is True
    for value in [0, 1, "true", None, []]:
        assert _rejects(params.boolean, "enabled", value).problem == "must be true or false"


def test_string_list() -> None:
    value = ["a", "b"]
    result = params.string_list("domains", value)
    assert result == ["a", "b"] and result is not value
    assert params.string_list("domains", []) == []
    assert params.string_list("domains", None, optional=True, default=[]) == []
    for bad in ["a", ["a", 1], None, {"a": "b"}, [None]]:
        assert _rejects(params.string_list, "domains", bad).problem == "must be a list of strings"


def test_object() -> None:
    assert params.object_("filters", {"a": 1}) == {"a": 1}
    assert params.object_("filters", None, optional=True) is None
    for bad in [[], "x", 1, None]:
        assert _rejects(params.object_, "filters", bad).problem == "must be an object"


def test_one_of() -> None:
    assert params.one_of("format", "json", ["netscape", "json"]) == "json"
    assert params.one_of("format", None, ("har",), optional=True, default="har") == "har"
    error = _rejects(params.one_of, "format", "xml", ["netscape", "json"])
    assert error.message == "invalid parameter 'format': must be one of \"netscape\", \"json\""
    # Compared by type: true is not 1, and unhashable values are fine.
    _rejects(params.one_of, "n", True, [1, 2])
    _rejects(params.one_of, "n", 1.0, [1, 2])
    _rejects(params.one_of, "format", ["json"], frozenset({"json"}))


def test_id_list() -> None:
    assert params.id_list("ids", ["a"]) == ["a"]
    assert params.id_list("ids", None, optional=True) is None
    for bad in [[], "a", ["a", 2], [""], None, [["a"]]]:
        error = _rejects(params.id_list, "ids", bad)
        assert error.problem == "must be a non-empty list of id strings"


# -- declarative specs and the dispatcher -----------------------------------------------



def test_integer_is_always_within_64_bits() -> None:
    assert params.integer("offset", INT64_MAX, minimum=0) == INT64_MAX
    for value in (INT64_MAX + 1, 10**400, 1e300):
        error = _rejects(params.integer, "offset", value, minimum=0)
        assert "2^63" in error.problem


def test_timestamp() -> None:
    assert params.timestamp("since", "1970-01-01T00:01:00Z") == 60.0
    assert params.timestamp("since", "1970-01-01T00:01:00") == 60.0
    assert params.timestamp("since", 5) == 5.0
    assert params.timestamp("since", None) is None
    assert params.timestamp("since", LATEST_TIME) == LATEST_TIME
    for bad in (10**400, int("9" * 400), "9" * 400, 1e300, -1, "yesterday", True, [], "x" * 100):
        _rejects(params.timestamp, "since", bad)
    assert params.timestamp("expires", -5, allow_past=True) == -5.0


def test_specs_name_the_parameter() -> None:
    assert Str(max_length=3).check("id", "abc") == "abc"
    _rejects(Str(max_length=3).check, "id", "abcd")
    assert Int(1, 10).check("limit", 10) == 10
    _rejects(Int(1, 10).check, "limit", 11)
    assert Bool(optional=True, default=True).check("flag", None) is True
    assert Enum(("a", "b")).check("order", "b") == "b"
    assert Time().check("since", None) is None
    assert Ids(max_items=2).check("ids", ["a", "b"]) == ["a", "b"]
    assert "at most 2" in _rejects(Ids(max_items=2).check, "ids", ["a", "b", "c"]).problem
    _rejects(Ids(max_length=3).check, "ids", ["abcd"])
    _rejects(Strs(max_items=1).check, "domains", ["a", "b"])
    _rejects(Strs(max_length=2).check, "domains", ["abc"])
    assert Custom(lambda name, value: value * 2).check("n", 2) == 4


def test_nested_specs_name_the_member() -> None:
    spec = List(Obj({"name": Str(), "port": Int(1, 65535, optional=True)}), max_items=2)
    assert spec.check("items", [{"name": "a"}]) == [{"name": "a", "port": None}]
    with pytest.raises(InvalidParams) as info:
        spec.check("items", [{"name": "a"}, {"name": "b", "port": 0}])
    assert info.value.data == {"param": "items[1].port"}
    with pytest.raises(InvalidParams) as info:
        spec.check("items", [{"port": 1}])
    assert info.value.data == {"param": "items[0].name"}
    with pytest.raises(InvalidParams) as info:
        spec.check("items", [{"name": "a", "other": 1}])
    assert info.value.data == {"param": "items[0].other"}
    _rejects(spec.check, "items", [{"name": "a"}] * 3)
    assert Obj(extra=True).check("frame", {"any": 1}) == {"any": 1}


class _Service:
    @takes(limit=Int(1, 100, default=10), name=Str(max_length=5, optional=True),
           when=Time())
    def listing(self, limit: int = 10, name: str | None = None, when: float | None = None) -> Any:
        return [limit, name, when]


def _call(dispatcher: JSONRPCDispatcher, method: str, **given: Any) -> Any:
    call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": given}
    result = Deferred.fromCoroutine(dispatcher.handle_object(call))
    answers: list[Any] = []
    result.addCallback(answers.append)
    return answers[0]


def test_dispatcher_checks_the_description_before_the_call() -> None:
    dispatcher = JSONRPCDispatcher({"listing": _Service().listing})
    assert _call(dispatcher, "listing")["result"] == [10, None, None]
    assert _call(dispatcher, "listing", limit=None, when="1970-01-01T00:00:01Z")["result"] == [
        10, None, 1.0]
    error = _call(dispatcher, "listing", limit=101)["error"]
    assert (error["code"], error["data"]) == (INVALID_PARAMS, {"param": "limit"})
    assert _call(dispatcher, "listing", name="toolong")["error"]["data"] == {"param": "name"}
    assert _call(dispatcher, "listing", colour=1)["error"]["message"] == "unknown parameter 'colour'"
    assert dispatcher.parameter_names("listing") == frozenset({"limit", "name", "when"})


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ({"value": "\ud800"}, "value"),
        ({"value": {"deep": ["ok", "x\udfff"]}}, "value.deep[1]"),
        ({"value": {"\ud800": 1}}, "value.\\ud800"),
        ({"value": 2**63}, "value"),
        ({"value": [-(2**63) - 1]}, "value[0]"),
        ({"value": 10**400}, "value"),
    ],
)
def test_dispatcher_refuses_lone_surrogates_and_huge_integers_anywhere(
    given: dict[str, Any], name: str
) -> None:
    def echo(value: Any) -> Any:
        return value

    error = _call(JSONRPCDispatcher({"echo": echo}), "echo", **given)["error"]
    assert (error["code"], error["data"]) == (INVALID_PARAMS, {"param": name})


def test_description_of_parameters_the_method_does_not_take_is_refused() -> None:
    @takes(limt=Int())
    def typo(limit: int = 0) -> int:
        return limit

    with pytest.raises(ValueError, match="limt"):
        JSONRPCDispatcher({"typo": typo})
