"""Fuzzing the control channel: random JSON params for every method docs/json-rpc.md
lists (parsed from the document, so a newly documented method is fuzzed too) and every
method the server registers, against the real ``twistd -n postcap``.  The parameter
names of each method come from the dispatcher, so most calls get past "unknown
parameter" to the values.  No call may end in -32603 and the log may hold no
traceback: every bad value is a documented error naming what is wrong."""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twisted.internet.testing import MemoryReactorClock

from postcap.filters import DEFAULT_OPTIONS
from postcap.service import PostcapConfig, PostcapService
from tests.harness import Origin
from tests.postcap_process import PostcapProcess

DOC = Path(__file__).resolve().parent.parent / "docs" / "json-rpc.md"
_METHOD_NAME = re.compile(r"(?<![\w/.-])([a-z]+\.[a-z_]+)(?![\w/.-])")
_TABLE_METHOD = re.compile(r"^\|\s*`([a-z]+\.[a-z_]+)`\s*\|", re.MULTILINE)
_HEADING = re.compile(r"^#{2,4} (.+)$", re.MULTILINE)
_PARAM_WORD = re.compile(r"`([a-z][a-z_]*)`")
#: Dotted names in the document that are fields, not methods.
_NOT_METHODS = ("filters.",)


def documented_methods(text: str) -> list[str]:
    """Method names from the headings and the method tables of the JSON-RPC reference."""
    names = {name for heading in _HEADING.findall(text) for name in _METHOD_NAME.findall(heading)}
    names.update(_TABLE_METHOD.findall(text))
    return sorted(n for n in names if not n.startswith(_NOT_METHODS))


@functools.cache
def registered_parameters() -> dict[str, list[str]]:
    """Each method the server registers, with the parameter names it takes (for one
    taking any names, the session options)."""
    with tempfile.TemporaryDirectory(prefix="postcap-fuzz-") as data_dir:
        service = PostcapService(PostcapConfig(data_dir=data_dir), reactor=MemoryReactorClock())
        dispatcher = service.dispatcher
        options = sorted(DEFAULT_OPTIONS) + ["id"]
        return {
            name: sorted(dispatcher.parameter_names(name) or options)
            for name in dispatcher.method_names()
        }


DOC_TEXT = DOC.read_text("utf-8")
DOCUMENTED = documented_methods(DOC_TEXT)


def all_methods() -> list[str]:
    return sorted(set(DOCUMENTED) | set(registered_parameters()))


#: Every word the reference puts in backticks: the parameter names are among them.
PARAM_NAMES = sorted(set(_PARAM_WORD.findall(DOC_TEXT)))
#: Bounded for CI; ``POSTCAP_FUZZ_EXAMPLES=5000`` fuzzes longer, with a fresh seed.
EXAMPLES = int(os.environ.get("POSTCAP_FUZZ_EXAMPLES", "200"))
DERANDOMIZE = "POSTCAP_FUZZ_EXAMPLES" not in os.environ
TRACEBACK_MARKERS = ("Traceback (most recent call last)", "Unhandled Error",
                     "raised an unexpected error", "not JSON-serializable")


def test_the_reference_lists_the_methods_the_server_serves() -> None:
    assert len(DOCUMENTED) >= 35, DOCUMENTED
    for name in ("server.info", "session.start", "request.replay", "cookiejar.add",
                 "collection.add", "interceptor.submit", "session.export"):
        assert name in DOCUMENTED
    assert sorted(set(DOCUMENTED) - set(registered_parameters())) == []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


@pytest.fixture(scope="module")
def known_ids(server: PostcapProcess, origin: Origin) -> list[str]:
    """Ids that exist, so fuzzed calls also get past the lookups."""
    session = server.rpc("session.start", name="fuzz", capture_cookies=True)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        client.sendall(f"GET {origin.url('/hello')} HTTP/1.1\r\nHost: {origin.authority}\r\n"
                       "Cookie: a=1\r\nConnection: close\r\n\r\n".encode())
        while client.recv(65536):
            pass
    server.rpc("session.stop", id=session["id"])
    (transaction,) = server.requests(session["id"])
    collection = server.rpc("collection.create", name="fuzz")
    cookies = server.rpc("cookie.list", session_id=session["id"])["items"]
    active = server.rpc("session.start", name="fuzz-active")  # methods default to it
    return [active["id"], session["id"], transaction["id"], collection["id"],
            *(cookie["id"] for cookie in cookies)]


SPECIAL_STRINGS = [
    "", " ", "\ud800", "a\udfff", "\x00", "(a+)+$", "(a)\\1", "(?=x)", "[", "4xx", "6xx", "404",
    "GET", "g e t", "asc", "har", "json", "netscape", "connect", "image", "headers", "body",
    "http://[::1", "http://h:99999/", "http://h:abc/", "http://127.0.0.1:9/", "ftp://x/",
    "2026-11-22T10:00:00Z", "9" * 400, "a" * 5000, "domain", "endpoint", ".", "..", "/",
]
SPECIAL_NUMBERS = [0, -1, 1, 65536, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1,
                   10**400, -(10**400), 1e300, -1e300, 5e-324, 0.5]


def json_values(ids: list[str]) -> st.SearchStrategy[Any]:
    """Any JSON, weighted towards values that are nearly right or known to hurt."""
    specials = st.sampled_from(SPECIAL_STRINGS + SPECIAL_NUMBERS + ids + [True, False, None])
    strings = st.one_of(
        st.text(max_size=30),
        st.text(st.characters(codec=None, categories=["Cs", "Cc", "Lu"]), max_size=5),
    )
    scalars = st.one_of(
        specials, specials, specials, st.integers(),
        st.floats(allow_nan=False, allow_infinity=False), strings,
    )
    long_lists = st.sampled_from([[200] * 40_000, ["GET"] * 5_000, ["x"] * 10_001, [[]] * 1000])

    def nest(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        keys = st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=8), st.just("\ud800"))
        return st.one_of(
            st.lists(children, max_size=6),
            st.dictionaries(keys, children, max_size=6),
        )

    return st.one_of(scalars, scalars, st.recursive(scalars, nest, max_leaves=12), long_lists)


@st.composite
def calls(draw: st.DrawFn, ids: list[str]) -> list[dict[str, Any]]:
    """A batch of calls; each names some of its method's own parameters, now and
    then one it does not take."""
    values = json_values(ids)
    batch = []
    for index in range(draw(st.integers(1, 30))):
        method = draw(st.sampled_from(all_methods()))
        own = registered_parameters().get(method) or ["id"]
        names = draw(st.lists(st.sampled_from(own), unique=True, max_size=len(own)))
        if draw(st.integers(0, 9)) == 0:
            names.append(draw(st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=6))))
        params = {name: draw(values) for name in names}
        batch.append({"jsonrpc": "2.0", "id": index, "method": method, "params": params})
    return batch


@pytest.fixture(scope="module")
def fuzzed(server: PostcapProcess, known_ids: list[str]) -> Iterator[list[int]]:
    codes: list[int] = []
    yield codes


def test_no_internal_error_for_any_params(
    server: PostcapProcess, known_ids: list[str], fuzzed: list[int]
) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(calls(known_ids))
    def fuzz(batch: list[dict[str, Any]]) -> None:
        status, _, body = server.http(
            "/rpc", json.dumps(batch).encode(), headers={"Content-Type": "application/json"}
        )
        if len(json.dumps(batch)) > 1_048_576:
            assert status == 413
            return
        assert status == 200, (status, body[:500])
        for call, answer in zip(batch, json.loads(body)):
            code = answer.get("error", {}).get("code")
            assert code != -32603, (call["method"], json.dumps(call["params"])[:2000])
            assert code != -32601, f"{call['method']} is documented but not served"
            fuzzed.append(code or 0)

    fuzz()
    assert len(fuzzed) >= 60
    assert any(code == -32602 for code in fuzzed)


def test_the_fuzzing_logged_no_traceback(server: PostcapProcess, fuzzed: list[int]) -> None:
    assert fuzzed, "runs after the fuzzing"
    log = server.log()
    for marker in TRACEBACK_MARKERS:
        at = log.find(marker)
        assert at < 0, log[max(0, at - 3000): at + 3000]
