"""The link's AES-GCM frames: round trip, wrong key, tampering, direction, bad shapes."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import shutil
from pathlib import Path

import pytest

from postcap.interceptor import crypto
from postcap.interceptor.extension_id import EXTENSION_ID, extension_dir, extension_id_from_key

KEY = crypto.derive_key(crypto.DEFAULT_KEY)
OTHER = crypto.derive_key("AnotherKey123")


def test_round_trip() -> None:
    message = {"type": "request", "record": {"url": "http://x.test/é"}}
    sealed = crypto.seal(KEY, message, crypto.TO_SERVER)
    assert sealed["type"] == "sealed" and sealed["v"] == 1
    assert "x.test" not in json.dumps(sealed)
    assert crypto.open_sealed(KEY, sealed, crypto.TO_SERVER) == message


def test_wrong_key_is_rejected() -> None:
    sealed = crypto.seal(KEY, {"type": "ping"}, crypto.TO_SERVER)
    with pytest.raises(crypto.FrameRejected, match="failed authentication"):
        crypto.open_sealed(OTHER, sealed, crypto.TO_SERVER)


def test_tampered_frames_are_rejected() -> None:
    sealed = crypto.seal(KEY, {"type": "ping"}, crypto.TO_SERVER)
    for field in ("ct", "iv"):
        tampered = copy.deepcopy(sealed)
        raw = bytearray(base64.b64decode(tampered[field]))
        raw[0] ^= 1
        tampered[field] = base64.b64encode(bytes(raw)).decode()
        with pytest.raises(crypto.FrameRejected, match="failed authentication"):
            crypto.open_sealed(KEY, tampered, crypto.TO_SERVER)


def test_a_frame_cannot_be_reflected_to_the_other_direction() -> None:
    sealed = crypto.seal(KEY, {"type": "config"}, crypto.TO_EXTENSION)
    with pytest.raises(crypto.FrameRejected):
        crypto.open_sealed(KEY, sealed, crypto.TO_SERVER)


@pytest.mark.parametrize(
    "frame",
    [
        None,
        {"type": "hello"},
        {"type": "sealed", "v": 2, "iv": "", "ct": ""},
        {"type": "sealed", "v": 1, "iv": "***", "ct": "AAAA"},
        {"type": "sealed", "v": 1, "iv": "AAAA", "ct": "AAAA"},
        {"type": "sealed", "v": 1},
    ],
)
def test_malformed_frames_are_rejected(frame: object) -> None:
    with pytest.raises(crypto.FrameRejected):
        crypto.open_sealed(KEY, frame)


def test_custom_key_rule() -> None:
    assert crypto.is_valid_custom_key("abcDEF1234")
    for bad in ("short1234", "has space 123", "ümlaut12345", "", None, 1234567890):
        assert not crypto.is_valid_custom_key(bad)


def test_extension_id_is_computed_from_the_manifest_key_as_chrome_does() -> None:
    manifest = json.loads((extension_dir() / "manifest.json").read_text())
    assert extension_id_from_key(manifest["key"]) == EXTENSION_ID == "lhgebdcbcnhfkgcollmhbhfhboncahfb"


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed (to run link.js outside the browser)")
def test_extension_and_server_agree_on_the_key_derivation_and_the_counters(tmp_path: Path) -> None:
    """link.js (WebCrypto, under node) seals with its link id and counter; Python opens
    and checks them; link.js opens the server's counted frames and refuses a replay."""
    key = crypto.derive_key("SharedKey2026")
    server = crypto.LinkCounter()
    first = server.seal(key, {"type": "config", "n": 7})
    second = server.seal(key, {"type": "config", "n": 8})
    script = tmp_path / "run.mjs"
    script.write_text(
        f"import {{ deriveKey, seal, open }} from '{extension_dir() / 'link.js'}';\n"
        "const key = await deriveKey('SharedKey2026');\n"
        f"const inner = await open(key, {json.dumps(first)});\n"
        f"const later = await open(key, {json.dumps(second)});\n"
        "let replay = 'accepted';\n"
        f"try {{ await open(key, {json.dumps(first)}); }} catch (e) {{ replay = e.message; }}\n"
        "const sealed = [await seal(key, {type: 'ping', n: 8}), await seal(key, {type: 'ping'})];\n"
        "console.log(JSON.stringify({inner, later, replay, sealed}));\n"
    )
    result = subprocess.run([NODE, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["inner"] == {"type": "config", "n": 7, "link": server.link, "seq": 1}
    assert out["later"]["seq"] == 2
    assert "already received" in out["replay"]
    guard = crypto.ReplayGuard()
    opened = [crypto.open_sealed(key, frame, crypto.TO_SERVER) for frame in out["sealed"]]
    assert opened[0]["type"] == "ping" and opened[0]["n"] == 8
    assert opened[0]["link"] == opened[1]["link"] and [m["seq"] for m in opened] == [1, 2]
    for message in opened:
        guard.check(message)
    with pytest.raises(crypto.FrameRejected, match="already received"):
        guard.check(opened[0])


def test_replay_guard_window() -> None:
    guard = crypto.ReplayGuard()
    link = "L" * 16
    for seq in (1, 3, 2, 300):
        guard.check({"link": link, "seq": seq})
    for seq, why in ((300, "already received"), (3, "older than"), (44, "older than")):
        with pytest.raises(crypto.FrameRejected, match=why):
            guard.check({"link": link, "seq": seq})
    guard.check({"link": link, "seq": 299})  # inside the window, not seen yet
    for bad in ({}, {"link": "short", "seq": 1}, {"link": link, "seq": 0},
                {"link": link, "seq": True}, {"link": link, "seq": "5"}, {"link": link, "seq": 2**60}):
        with pytest.raises(crypto.FrameRejected):
            guard.check(bad)
