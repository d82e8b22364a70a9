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
def test_extension_and_server_agree_on_the_key_derivation(tmp_path: Path) -> None:
    """link.js (WebCrypto, under node) seals; Python opens; and the other way round."""
    reply = crypto.seal(crypto.derive_key("SharedKey2026"), {"type": "config", "n": 7})
    script = tmp_path / "run.mjs"
    script.write_text(
        f"import {{ deriveKey, seal, open }} from '{extension_dir() / 'link.js'}';\n"
        "const key = await deriveKey('SharedKey2026');\n"
        f"const inner = await open(key, {json.dumps(reply)});\n"
        "console.log(JSON.stringify({inner, sealed: await seal(key, {type: 'ping', n: 8})}));\n"
    )
    result = subprocess.run([NODE, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["inner"] == {"type": "config", "n": 7}
    key = crypto.derive_key("SharedKey2026")
    assert crypto.open_sealed(key, out["sealed"], crypto.TO_SERVER) == {"type": "ping", "n": 8}
