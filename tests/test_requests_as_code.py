"""Unit tests: requests as code (postcap/requests_as_code.py) and diffs (postcap/diffing.py)."""

from __future__ import annotations

import base64
import shlex
from typing import Any

import pytest
from hypothesis import given, strategies as st

from postcap.diffing import diff_body, diff_json, diff_pairs, diff_transactions, diff_url
from postcap.requests_as_code import ExportError, export_request


def detail(method: str = "GET", url: str = "http://api.test/items", headers: Any = (),
           body: bytes = b"", **extra: Any) -> dict[str, Any]:
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode(), "base64"
    return {
        "id": extra.get("id", "t1"), "method": method, "url": url, "status": extra.get("status", 200),
        "request": {"http_version": "1.1", "headers": [list(pair) for pair in headers],
                    "body": {"size": extra.get("size", len(body)), "truncated": extra.get("truncated", False),
                             "captured": True, "encoding": encoding, "text": text}},
        "response": extra.get("response"),
    }


def curl_args(command: str) -> list[str]:
    return shlex.split(command.split("\n")[-1])


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=40))
def test_any_header_value_survives_shell_quoting(value: str) -> None:
    value = value.strip()
    args = curl_args(export_request(detail(headers=[("X-V", value)]), "curl"))
    header = args[args.index("--header") + 1]
    wire = value.encode("latin-1")
    try:
        expected = wire.decode("utf-8")
    except UnicodeDecodeError:
        expected = value
    assert header == (f"X-V: {expected}" if value else "X-V;")


def test_curl_switches_off_its_own_headers_and_keeps_order() -> None:
    args = curl_args(export_request(detail("POST", headers=[("Host", "api.test"), ("B", "2"), ("A", "1"),
                                                            ("Content-Length", "2")], body=b"hi"), "curl"))
    headers = [args[i + 1] for i, word in enumerate(args) if word == "--header"]
    assert headers == ["Host: api.test", "B: 2", "A: 1", "Content-Length: 2", "User-Agent:", "Accept:",
                       "Content-Type:", "Expect:"]
    assert args[-2:] == ["--data-raw", "hi"]
    assert args[args.index("--request") + 1] == "POST"


def test_binary_bodies_go_through_base64() -> None:
    body = b"\x00\xff\x01"
    command = export_request(detail("PUT", body=body), "curl")
    assert command.startswith(f"printf %s {base64.b64encode(body).decode()} | base64 -d | curl ")
    assert command.endswith("--data-binary @-")
    assert "base64.b64decode('AP8B')" in export_request(detail("PUT", body=body), "python")
    assert 'atob("AP8B")' in export_request(detail("PUT", body=body), "fetch")


def test_head_and_httpie_and_truncation_note() -> None:
    assert "--head" in curl_args(export_request(detail("HEAD"), "curl"))
    httpie = export_request(detail("DELETE", headers=[("X-Empty", "")]), "httpie")
    assert shlex.split(httpie)[:5] == ["http", "--print=hb", "--ignore-stdin", "DELETE", "http://api.test/items"]
    assert "X-Empty;" in shlex.split(httpie)
    noted = export_request(detail("POST", body=b"abc", size=10, truncated=True), "curl")
    assert noted.startswith("# postcap: the request body was truncated to 3 of 10 bytes\n")


def test_export_refuses_tunnels_and_unknown_formats() -> None:
    with pytest.raises(ExportError):
        export_request({"kind": "tunnel", "method": "CONNECT", "url": "https://x:443", "request": None}, "curl")
    with pytest.raises(ExportError):
        export_request(detail(), "wget")


def test_json_diff_by_path() -> None:
    a = {"user": {"id": 1, "tags": ["a"], "gone": True}, "odd key": 1}
    b = {"user": {"id": "1", "tags": ["a", "b"]}, "odd key": 2}
    assert list(diff_json(a, b)) == [
        {"path": "$.user.id", "change": "changed", "a": 1, "b": "1"},
        {"path": "$.user.tags[1]", "change": "added", "a": None, "b": "b"},
        {"path": "$.user.gone", "change": "removed", "a": True, "b": None},
        {"path": '$["odd key"]', "change": "changed", "a": 1, "b": 2},
    ]


def test_url_and_header_diffs() -> None:
    url = diff_url("http://a.test/x?p=1&p=2&q=1", "https://a.test/y?p=1&q=1&r=")
    assert url["parts"] == {"scheme": {"a": "http", "b": "https"}, "path": {"a": "/x", "b": "/y"}}
    assert url["query"] == [{"name": "p", "change": "changed", "a": ["1", "2"], "b": ["1"]},
                            {"name": "r", "change": "added", "a": [], "b": [""]}]
    assert diff_url("http://x/", "http://x/") is None
    assert diff_pairs([["Accept", "a"], ["X", "1"]], [["accept", "a"], ["Y", "2"]]) == [
        {"name": "X", "change": "removed", "a": ["1"], "b": []},
        {"name": "Y", "change": "added", "a": [], "b": ["2"]}]


def test_text_and_binary_body_diffs() -> None:
    text = diff_body({"size": 4, "encoding": "utf-8", "text": "a\nb\n"}, {"size": 4, "encoding": "utf-8", "text": "a\nc\n"})
    assert text["kind"] == "text" and "-b\n+c\n" in text["unified"]
    binary = diff_body({"size": 1, "encoding": "base64", "text": "AA=="}, {"size": 1, "encoding": "base64", "text": "AQ=="})
    assert binary["kind"] == "binary" and binary["a"]["sha256"] != binary["b"]["sha256"]
    assert diff_body({"size": 0}, None) is None


def test_transaction_diff_says_same() -> None:
    one = detail(headers=[("A", "1")])
    assert diff_transactions(one, one)["same"] is True
    other = detail(status=404, id="t2", headers=[("A", "1")])
    result = diff_transactions(one, other)
    assert result["status"] == {"a": 200, "b": 404} and result["same"] is False


def test_http2_capture_keeps_host_from_authority_and_drops_pseudo_headers() -> None:
    captured = detail(url="https://api.test/items", headers=[(":authority", "api.test"), ("accept", "*/*")])
    captured["request"]["http_version"] = "HTTP/2"
    args = curl_args(export_request(captured, "curl"))
    assert "--http2" in args
    headers = [args[i + 1] for i, word in enumerate(args) if word == "--header"]
    assert headers == ["accept: */*", "User-Agent:"]


def test_encoded_bodies_are_compared_decoded() -> None:
    import gzip

    def gzipped(value: bytes) -> dict[str, Any]:
        data = gzip.compress(value)
        return {"size": len(data), "truncated": False, "captured": True, "encoding": "base64",
                "text": base64.b64encode(data).decode(), "content_encoding": "gzip"}

    result = diff_body(gzipped(b'{"n": 1}'), gzipped(b'{"n": 2}'))
    assert result["kind"] == "json" and result["decoded"] == {"a": "gzip", "b": "gzip"}
    assert result["changes"] == [{"path": "$.n", "change": "changed", "a": 1, "b": 2}]
