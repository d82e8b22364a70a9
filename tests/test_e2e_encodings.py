"""Encoded bodies through the real server: forwarded and stored as sent, decoded for
HAR, search and the detail's ``decoded`` copy."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import pytest

from tests.harness import Origin, requires_curl
from tests.postcap_process import PostcapProcess
from tests.schemas import REFERENCE

pytestmark = requires_curl

CODINGS = ["gzip", "deflate", "br", "zstd", "gzip,br"]
#: Varied enough that every coder compresses it (short texts may be kept as literals).
TEXT = "Grüße from the origin! " + " ".join(f"w{i * 7919 % 10007}" for i in range(400))


def marker(coding: str) -> str:
    """What the origin adds to the text: found nowhere but in the decoded body."""
    return f"[{coding.replace(',', '+')}]"


def text_for(coding: str) -> str:
    return f"{TEXT} {marker(coding)}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("encodings")) as running:
        yield running


@pytest.fixture(scope="module")
def captured(server: PostcapProcess, origin: Origin) -> Iterator[dict[str, Any]]:
    """One session holding a response in every coding, and a broken one; what curl got."""
    session = server.rpc("session.start", name="encodings")
    received: dict[str, bytes] = {}
    try:
        for coding in CODINGS + ["broken"]:
            query = "" if coding == "broken" else "?text=" + quote(TEXT)
            received[coding] = server.curl(origin.url(f"/encoded/{coding}{query}")).stdout
    finally:
        server.rpc("session.stop")
    yield {"session": session, "received": received}


def details_by_coding(server: PostcapProcess, session_id: str) -> dict[str, dict[str, Any]]:
    found = {}
    for item in server.requests(session_id):
        coding = item["url"].split("/encoded/", 1)[1].split("?", 1)[0]
        found[coding] = server.rpc("request.get", id=item["id"])
    return found


def test_bodies_are_forwarded_and_stored_as_sent(
    server: PostcapProcess, captured: dict[str, Any]
) -> None:
    details = details_by_coding(server, captured["session"]["id"])
    assert sorted(details) == sorted(CODINGS + ["broken"])
    for coding in CODINGS:
        sent = captured["received"][coding]  # curl without --compressed: the bytes as sent
        body = details[coding]["response"]["body"]
        assert body["content_encoding"] == coding.replace(",", ", ")
        assert body["size"] == len(sent) == details[coding]["response_bytes"]
        assert base64.b64decode(body["text"]) == sent or body["text"].encode() == sent
        assert body["decoded"]["text"] == text_for(coding)
        assert body["decoded"]["truncated"] is False
    broken = details["broken"]["response"]["body"]
    assert broken["text"] == "this was never gzipped"
    assert "incorrect header check" in broken["decode_error"] and "decoded" not in broken


def test_har_text_is_decoded_and_valid(
    server: PostcapProcess, captured: dict[str, Any], tmp_path: Path
) -> None:
    session_id = captured["session"]["id"]
    status, _, body = server.http(f"/sessions/{session_id}.har")
    assert status == 200
    har_file = tmp_path / "encodings.har"
    har_file.write_bytes(body)
    validated = subprocess.run(
        [sys.executable, str(REFERENCE / "validate.py"), "har", str(har_file)],
        capture_output=True, timeout=60,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    entries = {e["request"]["url"].split("/encoded/", 1)[1].split("?", 1)[0]: e
               for e in json.loads(body)["log"]["entries"]}
    for coding in CODINGS:
        content = entries[coding]["response"]["content"]
        sent = len(captured["received"][coding])
        assert content["text"] == text_for(coding)
        assert content["size"] == len(text_for(coding).encode("utf-8"))
        assert content["compression"] == content["size"] - sent
        assert entries[coding]["response"]["bodySize"] == sent
    assert entries["broken"]["response"]["content"]["text"] == "this was never gzipped"
    assert "_decodeError" in entries["broken"]["response"]["content"]


def test_search_finds_words_only_the_decoded_bodies_hold(
    server: PostcapProcess, captured: dict[str, Any]
) -> None:
    session_id = captured["session"]["id"]
    for coding in CODINGS:
        needle = marker(coding)
        assert needle.encode() not in captured["received"][coding]  # not in the bytes sent
        found = server.rpc("request.list", session_id=session_id, query=needle, **{"in": ["body"]})
        assert [i["url"].split("/encoded/", 1)[1].split("?")[0] for i in found["items"]] == [coding]
    assert server.rpc("request.list", session_id=session_id, query="[zstd]")["total"] == 0


def test_curl_compressed_gets_the_same_text(server: PostcapProcess, origin: Origin) -> None:
    result = server.curl("--compressed", origin.url("/encoded/br?text=plain%20again"))
    assert result.stdout == b"plain again [br]"
