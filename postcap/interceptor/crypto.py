"""Authenticated encryption of the extension ⇄ server link (AES-256-GCM).

Both ends derive the same 256-bit key from a passphrase with PBKDF2-HMAC-SHA256
(fixed salt, :data:`ITERATIONS` rounds); the extension does it with WebCrypto,
the server with ``cryptography``.  Without a custom key (``interceptor.set_key``)
both use :data:`DEFAULT_KEY`, which is public: it keeps the link opaque to other
local readers of the pipe but is no secret.  A sealed frame is::

    {"type": "sealed", "v": 1, "iv": "<12 bytes, base64>", "ct": "<ciphertext+tag, base64>"}

The associated data names the direction, so a frame cannot be reflected back.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

DEFAULT_KEY = "postcapInterceptorDefaultKey"
SALT = b"postcap-interceptor-v1"
ITERATIONS = 100_000
VERSION = 1
#: Associated data per direction: extension → server, server → extension.
TO_SERVER = b"postcap-interceptor-v1 extension-to-server"
TO_EXTENSION = b"postcap-interceptor-v1 server-to-extension"

CUSTOM_KEY_PATTERN = re.compile(r"[A-Za-z0-9]{10,}")


class FrameRejected(Exception):
    """A sealed frame that is malformed or fails authentication."""


def is_valid_custom_key(key: Any) -> bool:
    """Custom keys are alphanumeric and at least 10 characters long."""
    return isinstance(key, str) and CUSTOM_KEY_PATTERN.fullmatch(key) is not None


def derive_key(passphrase: str) -> bytes:
    """The AES-256 key for ``passphrase`` (CPU-bound: tens of milliseconds)."""
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=SALT, iterations=ITERATIONS)
    return kdf.derive(passphrase.encode("utf-8"))


def seal(key: bytes, message: dict[str, Any], direction: bytes = TO_EXTENSION) -> dict[str, Any]:
    """Encrypt ``message`` (JSON) into a sealed frame."""
    iv = os.urandom(12)
    plaintext = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    ciphertext = AESGCM(key).encrypt(iv, plaintext, direction)
    return {
        "type": "sealed",
        "v": VERSION,
        "iv": base64.b64encode(iv).decode("ascii"),
        "ct": base64.b64encode(ciphertext).decode("ascii"),
    }


def open_sealed(key: bytes, frame: Any, direction: bytes = TO_SERVER) -> dict[str, Any]:
    """Decrypt and authenticate a sealed frame; its JSON object, or :class:`FrameRejected`."""
    if not isinstance(frame, dict) or frame.get("type") != "sealed":
        raise FrameRejected("not a sealed frame")
    if frame.get("v") != VERSION:
        raise FrameRejected(f"unsupported frame version {frame.get('v')!r}")
    try:
        iv = base64.b64decode(frame["iv"], validate=True)
        ciphertext = base64.b64decode(frame["ct"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise FrameRejected("iv or ct is not base64") from exc
    if len(iv) != 12 or len(ciphertext) < 16:
        raise FrameRejected("iv or ct has the wrong length")
    try:
        plaintext = AESGCM(key).decrypt(iv, ciphertext, direction)
    except InvalidTag as exc:
        raise FrameRejected(
            "frame failed authentication: the extension's key differs from the server's"
        ) from exc
    try:
        message = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameRejected("authenticated payload is not JSON") from exc
    if not isinstance(message, dict):
        raise FrameRejected("authenticated payload is not a JSON object")
    return message
