"""Tests for postcap.filters: option validation, merging and capture filters."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postcap.filters import (
    DEFAULT_OPTIONS,
    INVALID_OPTION,
    INVALID_PARAMS,
    CaptureFilter,
    OptionError,
    default_options,
    resource_kind,
    validate_options,
)

EXPECTED_DEFAULTS = {
    "name": "Proxy debug session",
    "source": "proxy",
    "save_responses": True,
    "capture_cookies": False,
    "collection": None,
    "organize_by": [],
    "filters": {
        "url_contains": None,
        "url_excludes": None,
        "methods": [],
        "status_codes": [],
        "exclude_resources": [],
    },
}


def filter_for(**filters: Any) -> CaptureFilter:
    return CaptureFilter.from_options({"filters": filters})


# -- defaults and merging ---------------------------------------------------


def test_defaults_match_contract() -> None:
    assert DEFAULT_OPTIONS == EXPECTED_DEFAULTS
    assert validate_options({}) == EXPECTED_DEFAULTS
    assert default_options() == EXPECTED_DEFAULTS


def test_results_are_fresh_copies() -> None:
    options = validate_options({})
    options["filters"]["methods"].append("GET")
    options["organize_by"].append("domain")
    default_options()["filters"]["status_codes"].append(200)
    assert DEFAULT_OPTIONS == EXPECTED_DEFAULTS
    assert validate_options({}) == EXPECTED_DEFAULTS


def test_base_is_not_modified() -> None:
    base = validate_options({"filters": {"methods": ["get"]}})
    frozen = copy.deepcopy(base)
    updated = validate_options({"name": "x", "filters": {"methods": ["post"]}}, base)
    assert base == frozen
    assert updated["filters"]["methods"] == ["POST"]
    assert updated["filters"]["methods"] is not base["filters"]["methods"]


def test_changes_update_base() -> None:
    base = validate_options({"name": "first", "capture_cookies": True})
    updated = validate_options({"save_responses": False}, base)
    assert updated == {
        **EXPECTED_DEFAULTS,
        "name": "first",
        "capture_cookies": True,
        "save_responses": False,
    }


def test_filters_merge_field_by_field() -> None:
    base = validate_options(
        {"filters": {"url_contains": "api", "methods": ["GET"], "status_codes": ["2xx"]}}
    )
    updated = validate_options({"filters": {"methods": ["POST"]}}, base)
    assert updated["filters"] == {
        "url_contains": "api",
        "url_excludes": None,
        "methods": ["POST"],
        "status_codes": ["2xx"],
        "exclude_resources": [],
    }


def test_empty_filters_object_changes_nothing() -> None:
    base = validate_options({"filters": {"url_contains": "api"}})
    assert validate_options({"filters": {}}, base) == base


@pytest.mark.parametrize(
    "field, value",
    [
        ("url_contains", "api"),
        ("url_excludes", "static"),
        ("methods", ["GET"]),
        ("status_codes", [404]),
        ("exclude_resources", ["css"]),
    ],
)
def test_null_resets_a_filter_field(field: str, value: Any) -> None:
    other = "url_excludes" if field == "url_contains" else "url_contains"
    base = validate_options({"filters": {field: value, other: "keep"}})
    updated = validate_options({"filters": {field: None}}, base)
    assert updated["filters"][field] == EXPECTED_DEFAULTS["filters"][field]
    assert updated["filters"][other] == "keep"


def test_null_filters_resets_all_filters() -> None:
    base = validate_options({"name": "n", "filters": {"url_contains": "a", "methods": ["PUT"]}})
    updated = validate_options({"filters": None}, base)
    assert updated["filters"] == EXPECTED_DEFAULTS["filters"]
    assert updated["name"] == "n"


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", "renamed"),
        ("source", "interceptor"),
        ("save_responses", False),
        ("capture_cookies", True),
        ("collection", "c1"),
        ("organize_by", ["domain"]),
    ],
)
def test_null_resets_a_top_level_field(field: str, value: Any) -> None:
    base = validate_options({field: value})
    assert base[field] == value
    assert validate_options({field: None}, base)[field] == EXPECTED_DEFAULTS[field]


def test_incomplete_base_is_completed_from_defaults() -> None:
    updated = validate_options({"name": "x"}, {"capture_cookies": True, "filters": {}})
    assert updated == {**EXPECTED_DEFAULTS, "name": "x", "capture_cookies": True}


def test_validation_is_idempotent() -> None:
    options = validate_options(
        {
            "name": "  s  ",
            "source": "interceptor",
            "collection": "c",
            "organize_by": ["domain", "endpoint"],
            "filters": {
                "url_contains": "api",
                "url_excludes": r"\.png$",
                "methods": ["get", "Post", "GET"],
                "status_codes": ["2XX", "404", 500],
                "exclude_resources": ["IMAGE", "js"],
            },
        }
    )
    assert validate_options(options) == options
    assert validate_options({}, options) == options


# -- normalization ----------------------------------------------------------


@pytest.mark.parametrize(
    "given_, expected",
    [
        (["get"], ["GET"]),
        (["get", "GET", "Get"], ["GET"]),
        (["post", "get", "POST", "put"], ["POST", "GET", "PUT"]),
        (["PROPFIND", "m-search"], ["PROPFIND", "M-SEARCH"]),
        ([], []),
        (("delete",), ["DELETE"]),
    ],
)
def test_methods_normalized(given_: list[str], expected: list[str]) -> None:
    assert validate_options({"filters": {"methods": given_}})["filters"]["methods"] == expected


@pytest.mark.parametrize(
    "given_, expected",
    [
        ([200], [200]),
        (["404"], [404]),
        ([" 404 "], [404]),
        (["2xx"], ["2xx"]),
        (["2XX", "4xX"], ["2xx", "4xx"]),
        ([100, 599], [100, 599]),
        ([404, "404", "2xx", "2XX"], [404, "2xx"]),
        (["5xx", 201, "1xx", "3xx"], ["5xx", 201, "1xx", "3xx"]),
        ([], []),
    ],
)
def test_status_codes_normalized(given_: list[Any], expected: list[Any]) -> None:
    options = validate_options({"filters": {"status_codes": given_}})
    assert options["filters"]["status_codes"] == expected


@pytest.mark.parametrize(
    "given_, expected",
    [
        (["image"], ["image"]),
        (["CSS", "Js"], ["css", "js"]),
        (["js", "js", "image", "js"], ["js", "image"]),
        (["image", "js", "css"], ["image", "js", "css"]),
    ],
)
def test_exclude_resources_normalized(given_: list[str], expected: list[str]) -> None:
    options = validate_options({"filters": {"exclude_resources": given_}})
    assert options["filters"]["exclude_resources"] == expected


@pytest.mark.parametrize(
    "value", [[], ["domain"], ["endpoint"], ["domain", "endpoint"]]
)
def test_organize_by_choices(value: list[str]) -> None:
    assert validate_options({"organize_by": value})["organize_by"] == value


def test_name_is_stripped_and_may_be_200_chars() -> None:
    assert validate_options({"name": "  my run \n"})["name"] == "my run"
    assert validate_options({"name": "n" * 200})["name"] == "n" * 200


def test_empty_patterns_mean_no_filter() -> None:
    options = validate_options({"filters": {"url_contains": "", "url_excludes": ""}})
    assert options["filters"]["url_contains"] is None
    assert options["filters"]["url_excludes"] is None


# -- validation errors ------------------------------------------------------


def assert_option_error(changes: Any, field: str, code: int, base: Any = None) -> OptionError:
    with pytest.raises(OptionError) as info:
        validate_options(changes, base)
    error = info.value
    assert error.field == field
    assert error.code == code
    assert f"'{field}'" in str(error)
    assert isinstance(error, ValueError)
    return error


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"name": 3}, "name"),
        ({"name": ["x"]}, "name"),
        ({"name": True}, "name"),
        ({"source": 1}, "source"),
        ({"save_responses": 1}, "save_responses"),
        ({"save_responses": "true"}, "save_responses"),
        ({"save_responses": 0}, "save_responses"),
        ({"capture_cookies": "false"}, "capture_cookies"),
        ({"capture_cookies": []}, "capture_cookies"),
        ({"collection": 42}, "collection"),
        ({"collection": {"id": "c"}}, "collection"),
        ({"organize_by": "domain"}, "organize_by"),
        ({"organize_by": [1]}, "organize_by"),
        ({"organize_by": {"domain": True}}, "organize_by"),
        ({"filters": []}, "filters"),
        ({"filters": "GET"}, "filters"),
        ({"filters": 1}, "filters"),
        ({"filters": {"url_contains": 5}}, "filters.url_contains"),
        ({"filters": {"url_contains": ["a"]}}, "filters.url_contains"),
        ({"filters": {"url_excludes": False}}, "filters.url_excludes"),
        ({"filters": {"methods": "GET"}}, "filters.methods"),
        ({"filters": {"methods": ["GET", 1]}}, "filters.methods"),
        ({"filters": {"methods": [None]}}, "filters.methods"),
        ({"filters": {"methods": {"GET": 1}}}, "filters.methods"),
        ({"filters": {"status_codes": 200}}, "filters.status_codes"),
        ({"filters": {"status_codes": "2xx"}}, "filters.status_codes"),
        ({"filters": {"status_codes": [True]}}, "filters.status_codes"),
        ({"filters": {"status_codes": [200.0]}}, "filters.status_codes"),
        ({"filters": {"status_codes": [None]}}, "filters.status_codes"),
        ({"filters": {"status_codes": [[200]]}}, "filters.status_codes"),
        ({"filters": {"exclude_resources": "image"}}, "filters.exclude_resources"),
        ({"filters": {"exclude_resources": [1]}}, "filters.exclude_resources"),
    ],
)
def test_wrong_type_is_invalid_params(changes: dict[str, Any], field: str) -> None:
    error = assert_option_error(changes, field, INVALID_PARAMS)
    assert str(error).startswith(f"invalid parameter '{field}': must be ")


def test_wrong_type_message_for_methods() -> None:
    error = assert_option_error({"filters": {"methods": "GET"}}, "filters.methods", INVALID_PARAMS)
    assert str(error) == "invalid parameter 'filters.methods': must be a list of strings"


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"foo": 1}, "foo"),
        ({"id": "abc"}, "id"),
        ({"url_contains": "api"}, "url_contains"),
        ({"filters": {"foo": 1}}, "filters.foo"),
        ({"filters": {"name": "x"}}, "filters.name"),
        ({"filters": {"foo": None}}, "filters.foo"),
    ],
)
def test_unknown_field_is_invalid_params(changes: dict[str, Any], field: str) -> None:
    error = assert_option_error(changes, field, INVALID_PARAMS)
    assert str(error) == f"unknown parameter '{field}'"


@pytest.mark.parametrize("changes", [None, [], "name", 3, [["name", "x"]]])
def test_changes_must_be_an_object(changes: Any) -> None:
    assert_option_error(changes, "options", INVALID_PARAMS)


@pytest.mark.parametrize(
    "pattern",
    [
        "(",
        "[a-",
        "*.example.com",
        "a{2,1}",
        "\\",
        "a**",
        "a{1001}",
        "(a{1000}){1000}",
    ],
)
@pytest.mark.parametrize("field", ["url_contains", "url_excludes"])
def test_bad_regex_is_invalid_option(pattern: str, field: str) -> None:
    error = assert_option_error({"filters": {field: pattern}}, f"filters.{field}", INVALID_OPTION)
    assert "regular expression" in str(error)


def test_bad_regex_message_includes_re_error_text() -> None:
    error = assert_option_error(
        {"filters": {"url_contains": "api("}}, "filters.url_contains", INVALID_OPTION
    )
    assert "missing ): api(" in str(error)
    assert str(error).startswith("invalid option 'filters.url_contains': ")


def test_overlong_pattern_is_invalid_option() -> None:
    assert_option_error(
        {"filters": {"url_contains": "a" * 5000}}, "filters.url_contains", INVALID_OPTION
    )


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"source": "browser"}, "source"),
        ({"source": "Proxy"}, "source"),
        ({"source": ""}, "source"),
        ({"collection": ""}, "collection"),
        ({"organize_by": ["folder"]}, "organize_by"),
        ({"organize_by": ["endpoint", "domain"]}, "organize_by"),
        ({"organize_by": ["domain", "domain"]}, "organize_by"),
        ({"organize_by": ["domain", "endpoint", "method"]}, "organize_by"),
        ({"organize_by": ["Domain"]}, "organize_by"),
        ({"filters": {"methods": [""]}}, "filters.methods"),
        ({"filters": {"methods": ["GE T"]}}, "filters.methods"),
        ({"filters": {"methods": ["GET\r\n"]}}, "filters.methods"),
        ({"filters": {"status_codes": [99]}}, "filters.status_codes"),
        ({"filters": {"status_codes": [600]}}, "filters.status_codes"),
        ({"filters": {"status_codes": [0]}}, "filters.status_codes"),
        ({"filters": {"status_codes": [-200]}}, "filters.status_codes"),
        ({"filters": {"status_codes": [10**30]}}, "filters.status_codes"),
        ({"filters": {"status_codes": ["600"]}}, "filters.status_codes"),
        ({"filters": {"status_codes": ["099"]}}, "filters.status_codes"),
        ({"filters": {"status_codes": ["6xx"]}}, "filters.status_codes"),
        ({"filters": {"status_codes": ["0xx"]}}, "filters.status_codes"),
        ({"filters": {"status_codes": ["xx"]}}, "filters.status_codes"),
        ({"filters": {"status_codes": ["2x"]}}, "filters.status_codes"),
        ({"filters": {"status_codes": ["20x"]}}, "filters.status_codes"),
        ({"filters": {"status_codes": ["ok"]}}, "filters.status_codes"),
        ({"filters": {"status_codes": [""]}}, "filters.status_codes"),
        ({"filters": {"status_codes": ["４０４"]}}, "filters.status_codes"),
        ({"filters": {"exclude_resources": ["font"]}}, "filters.exclude_resources"),
        ({"filters": {"exclude_resources": ["images"]}}, "filters.exclude_resources"),
        ({"filters": {"exclude_resources": [""]}}, "filters.exclude_resources"),
    ],
)
def test_bad_value_is_invalid_option(changes: dict[str, Any], field: str) -> None:
    error = assert_option_error(changes, field, INVALID_OPTION)
    assert str(error).startswith(f"invalid option '{field}': ")


def test_error_applies_nothing() -> None:
    base = validate_options({"name": "kept"})
    frozen = copy.deepcopy(base)
    assert_option_error(
        {"name": "changed", "filters": {"methods": [1]}}, "filters.methods", INVALID_PARAMS, base
    )
    assert base == frozen


def test_option_error_attributes_and_pickle() -> None:
    error = OptionError.invalid("filters.url_contains", "bad")
    assert (error.field, error.problem, error.code) == ("filters.url_contains", "bad", -32005)
    assert error.message == "invalid option 'filters.url_contains': bad"
    copied = pickle.loads(pickle.dumps(error))
    assert (copied.field, copied.problem, copied.code, str(copied)) == (
        error.field,
        error.problem,
        error.code,
        str(error),
    )
    unknown = OptionError.unknown("filters.foo")
    assert (unknown.code, str(unknown)) == (-32602, "unknown parameter 'filters.foo'")


# -- CaptureFilter: requests ------------------------------------------------


def test_default_filter_captures_everything() -> None:
    for capture in (CaptureFilter(), CaptureFilter.from_options(validate_options({}))):
        assert capture.wants_request("GET", "http://example.com/")
        assert capture.wants_request("BREW", "https://example.com/pot")
        assert capture.wants_response(None, "")
        assert capture.wants_response(500, "image/png")
        assert not capture.filters_responses


@pytest.mark.parametrize(
    "pattern, url, wanted",
    [
        # Plain text: substring match.
        ("api.example.com/v1", "https://api.example.com/v1/users", True),
        ("api.example.com/v1", "https://api.example.com/v2/users", False),
        # '.' is also a regex wildcard: substring OR regex.
        ("api.example.com/v1", "https://apiXexampleYcom/v1", True),
        # Substring that is not a regex match of itself as a regex.
        ("/search?q=", "https://x.test/search?q=1", True),
        ("a+b", "http://x.test/a+b", True),
        ("a+b", "http://x.test/aaab", True),
        ("a+b", "http://x.test/ab", True),
        ("a+b", "http://x.test/b", False),
        # Regex features.
        (r"/users/\d+$", "https://x.test/users/42", True),
        (r"/users/\d+$", "https://x.test/users/42/posts", False),
        (r"^https://", "https://x.test/", True),
        (r"^https://", "http://x.test/", False),
        ("graphql|rest", "https://x.test/rest/v1", True),
        # Case-sensitive unless the pattern says otherwise.
        ("API", "https://x.test/api", False),
        ("(?i)API", "https://x.test/api", True),
    ],
)
def test_url_contains(pattern: str, url: str, wanted: bool) -> None:
    assert filter_for(url_contains=pattern).wants_request("GET", url) is wanted


@pytest.mark.parametrize(
    "pattern, url, wanted",
    [
        ("static.example.com", "https://static.example.com/app.js", False),
        ("static.example.com", "https://api.example.com/v1", True),
        (r"\.(png|jpg)$", "https://x.test/a.png", False),
        (r"\.(png|jpg)$", "https://x.test/a.png?x=1", True),
    ],
)
def test_url_excludes(pattern: str, url: str, wanted: bool) -> None:
    assert filter_for(url_excludes=pattern).wants_request("GET", url) is wanted


def test_url_excludes_wins_over_url_contains() -> None:
    capture = filter_for(url_contains="example.com", url_excludes="/health")
    assert capture.wants_request("GET", "https://example.com/api")
    assert not capture.wants_request("GET", "https://example.com/health")
    assert not capture.wants_request("GET", "https://other.test/api")


@pytest.mark.parametrize(
    "methods, method, wanted",
    [
        ([], "GET", True),
        ([], "DELETE", True),
        (["GET"], "GET", True),
        (["get"], "GET", True),
        (["GET"], "get", True),
        (["GET"], "POST", False),
        (["GET", "POST"], "POST", True),
        (["GET", "POST"], "OPTIONS", False),
        (["PATCH"], "PATCH", True),
    ],
)
def test_methods(methods: list[str], method: str, wanted: bool) -> None:
    assert filter_for(methods=methods).wants_request(method, "https://x.test/") is wanted


def test_all_request_filters_combine() -> None:
    capture = filter_for(url_contains="/api/", url_excludes="debug", methods=["POST"])
    assert capture.wants_request("POST", "https://x.test/api/items")
    assert not capture.wants_request("GET", "https://x.test/api/items")
    assert not capture.wants_request("POST", "https://x.test/api/debug")
    assert not capture.wants_request("POST", "https://x.test/items")


# -- CaptureFilter: responses -----------------------------------------------


@pytest.mark.parametrize(
    "codes, status, wanted",
    [
        ([], 200, True),
        ([], 599, True),
        ([404], 404, True),
        ([404], 405, False),
        (["404"], 404, True),
        (["2xx"], 200, True),
        (["2xx"], 204, True),
        (["2xx"], 299, True),
        (["2xx"], 300, False),
        (["2XX"], 250, True),
        (["4xx", 500], 500, True),
        (["4xx", 500], 503, False),
        (["4xx", 500], 418, True),
        (["1xx"], 101, True),
        (["5xx"], 199, False),
    ],
)
def test_status_codes(codes: list[Any], status: int, wanted: bool) -> None:
    assert filter_for(status_codes=codes).wants_response(status, "text/html") is wanted


@pytest.mark.parametrize(
    "codes, wanted",
    [([], True), ([500], False), (["5xx"], False), (["2xx", 404], False)],
)
def test_no_response_passes_only_without_status_filter(codes: list[Any], wanted: bool) -> None:
    capture = filter_for(status_codes=codes)
    assert capture.wants_response(None, "") is wanted
    assert capture.filters_responses is bool(codes)


def test_no_response_is_not_excluded_as_a_resource() -> None:
    assert filter_for(exclude_resources=["image", "js", "css"]).wants_response(None, "")


@pytest.mark.parametrize(
    "content_type, kind",
    [
        ("image/png", "image"),
        ("image/svg+xml", "image"),
        ("IMAGE/JPEG; q=1", "image"),
        ("image/webp;charset=binary", "image"),
        ("application/javascript", "js"),
        ("application/javascript; charset=utf-8", "js"),
        ("text/javascript", "js"),
        ("Text/JavaScript;charset=UTF-8", "js"),
        ("application/x-javascript", "js"),
        ("application/ecmascript", "js"),
        ("text/ecmascript", "js"),
        ("application/x-ecmascript", "js"),
        ("text/x-javascript", "js"),
        ("text/jscript", "js"),
        ("text/javascript1.5", "js"),
        ("text/css", "css"),
        ("text/css; charset=utf-8", "css"),
        ("  text/css  ", "css"),
        ("application/json", None),
        ("text/html", None),
        ("application/wasm", None),
        ("text/plain", None),
        ("video/mp4", None),
        ("audio/mpeg", None),
        ("", None),
        ("garbage", None),
        ("text/csv", None),
        ("application/json+javascript", None),
    ],
)
def test_resource_kind(content_type: str, kind: str | None) -> None:
    assert resource_kind(content_type) == kind


@pytest.mark.parametrize(
    "excluded, content_type, wanted",
    [
        ([], "image/png", True),
        (["image"], "image/png", False),
        (["image"], "image/gif; x=y", False),
        (["image"], "text/css", True),
        (["js"], "application/javascript", False),
        (["js"], "text/javascript; charset=utf-8", False),
        (["js"], "application/json", True),
        (["css"], "text/css", False),
        (["css"], "text/html", True),
        (["image", "js", "css"], "text/html", True),
        (["image", "js", "css"], "application/json", True),
        (["image", "js", "css"], "", True),
        (["js", "css"], "image/png", True),
    ],
)
def test_exclude_resources(excluded: list[str], content_type: str, wanted: bool) -> None:
    capture = filter_for(exclude_resources=excluded)
    assert capture.wants_response(200, content_type) is wanted
    assert capture.filters_responses is bool(excluded)


def test_status_and_resource_filters_combine() -> None:
    capture = filter_for(status_codes=["2xx"], exclude_resources=["css"])
    assert capture.wants_response(200, "application/json")
    assert not capture.wants_response(200, "text/css")
    assert not capture.wants_response(404, "application/json")


def test_from_options_reads_full_options() -> None:
    options = validate_options(
        {"name": "x", "filters": {"methods": ["get"], "status_codes": ["2xx", "404"]}}
    )
    capture = CaptureFilter.from_options(options)
    assert capture.methods == frozenset({"GET"})
    assert capture.status_codes == frozenset({404})
    assert capture.status_classes == frozenset({2})
    assert capture.url_contains is None


def test_from_options_rejects_bad_options() -> None:
    with pytest.raises(OptionError) as info:
        CaptureFilter.from_options({"filters": {"url_contains": "("}})
    assert info.value.code == INVALID_OPTION


def test_capture_filter_is_frozen_and_compiles_once() -> None:
    capture = filter_for(url_contains="api")
    pattern = capture.url_contains
    assert pattern is not None and pattern.pattern == "api"
    with pytest.raises(AttributeError):
        capture.methods = frozenset({"GET"})  # type: ignore[misc]
    capture.wants_request("GET", "https://x.test/api")
    assert capture.url_contains is pattern


# -- property: only OptionError escapes --------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "2xx", "404", "GET", "image", "domain", "proxy", "(", ".*"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
filter_keys = st.sampled_from(
    ["url_contains", "url_excludes", "methods", "status_codes", "exclude_resources", "foo"]
)
option_keys = st.sampled_from(
    ["name", "source", "save_responses", "capture_cookies", "collection", "organize_by", "bar"]
)
filters_objects = st.dictionaries(filter_keys, json_values, max_size=5)
options_objects = st.dictionaries(option_keys, json_values, max_size=6) | st.builds(
    lambda rest, filters: {**rest, "filters": filters},
    st.dictionaries(option_keys, json_values, max_size=4),
    filters_objects | json_values,
)


@settings(max_examples=400, deadline=None, database=None)
@given(changes=options_objects | json_values)
def test_validate_options_raises_only_option_error(changes: Any) -> None:
    try:
        options = validate_options(changes)
    except OptionError as error:
        assert error.code in (INVALID_PARAMS, INVALID_OPTION)
        assert f"'{error.field}'" in str(error)
        return
    assert set(options) == set(EXPECTED_DEFAULTS)
    assert set(options["filters"]) == set(EXPECTED_DEFAULTS["filters"])
    assert validate_options(options) == options
    CaptureFilter.from_options(options)
