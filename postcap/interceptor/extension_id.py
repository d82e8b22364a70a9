"""The extension's fixed id, computed from the ``key`` in its manifest as Chrome does.

Chrome's id for an extension with a ``key`` is the first 32 hex digits of the
SHA-256 of the DER public key, each digit 0–f written as a letter a–p.
"""

from __future__ import annotations

import base64
import hashlib
import json
from importlib import resources
from pathlib import Path

#: The native-messaging host name the extension connects to.
HOST_NAME = "com.postcap.bridge"


def extension_dir() -> Path:
    """The unpacked extension shipped in the package (load it with "Load unpacked")."""
    return Path(str(resources.files("postcap.interceptor") / "extension"))


def extension_id_from_key(key_b64: str) -> str:
    der = base64.b64decode(key_b64)
    digest = hashlib.sha256(der).hexdigest()[:32]
    return "".join(chr(ord("a") + int(digit, 16)) for digit in digest)


def _manifest_key() -> str:
    manifest = json.loads((extension_dir() / "manifest.json").read_text("utf-8"))
    return str(manifest["key"])


#: The id of the shipped extension: ``lhgebdcbcnhfkgcollmhbhfhboncahfb``.
EXTENSION_ID = extension_id_from_key(_manifest_key())


def extension_origin(extension_id: str = EXTENSION_ID) -> str:
    """The ``allowed_origins`` entry for an extension (trailing slash included)."""
    return f"chrome-extension://{extension_id}/"
