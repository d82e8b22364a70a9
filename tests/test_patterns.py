"""User patterns run in RE2: linear-time matching, backtracking features refused with
the reason, the same rules for session filters and ``--ignore-hosts``."""

from __future__ import annotations

import time

import pytest
import re2
from twisted.python import usage

from postcap.filters import INVALID_OPTION, CaptureFilter, OptionError, validate_options
from postcap.patterns import PatternError, compile_pattern
from postcap.tap import Options

#: Catastrophic for a backtracking engine: 2^40 ways to split the a's before failing at "!".
EVIL = "(a+)+$"
EVIL_URL = "http://example.com/" + "a" * 40 + "!"
#: Generous: RE2 needs microseconds; Python's re needs days for EVIL_URL.
BOUND_S = 1.0


def test_compiled_pattern_is_re2() -> None:
    assert isinstance(compile_pattern(EVIL).compiled, re2._Regexp)


def test_catastrophic_pattern_matches_in_linear_time() -> None:
    session_filter = CaptureFilter.from_options({"filters": {"url_contains": EVIL}})
    assert isinstance(session_filter.url_contains.compiled, re2._Regexp)  # type: ignore[union-attr]
    started = time.perf_counter()
    assert session_filter.wants_request("GET", EVIL_URL) is False
    assert session_filter.wants_request("GET", "http://example.com/" + "a" * 40) is True
    # Linear: a URL 2,500 times as long still matches well within the bound.
    assert session_filter.wants_request("GET", "http://example.com/" + "a" * 100_000 + "!") is False
    assert time.perf_counter() - started < BOUND_S


def test_excludes_use_the_same_engine() -> None:
    session_filter = CaptureFilter.from_options({"filters": {"url_excludes": EVIL}})
    started = time.perf_counter()
    assert session_filter.wants_request("GET", EVIL_URL) is True
    assert time.perf_counter() - started < BOUND_S


def test_plain_text_still_matches_as_substring() -> None:
    literal = CaptureFilter.from_options({"filters": {"url_contains": "api.example.com/v1"}})
    assert literal.wants_request("GET", "https://api.example.com/v1/users")
    assert literal.wants_request("GET", "https://apixexample.com/v1/users")  # dots are regex dots
    assert not literal.wants_request("GET", "https://other.example/v2")


def test_search_copes_with_lone_surrogates_in_the_text() -> None:
    assert compile_pattern("b$").search("a\udcffb")


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "backreferences"),
        (r"(?P<x>a)(?P=x)", "named backreferences"),
        (r"foo(?=bar)", "lookahead"),
        (r"foo(?!bar)", "negative lookahead"),
        (r"(?<=foo)bar", "lookbehind"),
        (r"(?<!foo)bar", "negative lookbehind"),
    ],
)
def test_backtracking_features_are_refused_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError) as raised:
        compile_pattern(pattern)
    assert raised.value.reason.startswith(reason)
    assert "RE2" in raised.value.reason
    with pytest.raises(OptionError) as option_error:
        validate_options({"filters": {"url_contains": pattern}})
    assert option_error.value.code == INVALID_OPTION
    assert option_error.value.field == "filters.url_contains"
    assert reason in option_error.value.message


def test_overlong_pattern_is_refused() -> None:
    with pytest.raises(PatternError, match="at most 4096"):
        compile_pattern("a" * 4097)


@pytest.mark.parametrize("pattern", [r"(a)\1", r"^(?!pinned)"])
def test_ignore_hosts_refuses_what_re2_cannot_take_naming_the_option(pattern: str) -> None:
    with pytest.raises(usage.UsageError) as raised:
        Options().parseOptions(["--ignore-hosts", pattern])
    message = str(raised.value)
    assert message.startswith(f"--ignore-hosts {pattern!r}: ")
    assert "\n" not in message
    assert "not supported" in message


def test_proxy_settings_ignore_hosts_match_in_linear_time() -> None:
    from postcap.proxy.server import ProxySettings

    settings = ProxySettings(ignore_hosts=[compile_pattern(EVIL)])
    started = time.perf_counter()
    assert not settings.ignores("a" * 40 + "!")
    assert settings.ignores("pinned.aaa")
    assert time.perf_counter() - started < BOUND_S
