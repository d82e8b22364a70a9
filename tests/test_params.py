"""Tests for postcap.control.params: validators that name the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from postcap.control import params
from postcap.control.dispatch import INVALID_PARAMS, InvalidParams


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
