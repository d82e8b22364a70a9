"""Authenticated encryption of the extension ⇄ server link (AES-256-GCM).

Both ends derive the same 256-bit key from a passphrase with PBKDF2-HMAC-SHA256
(fixed salt, :data:`ITERATIONS` rounds); the extension does it with WebCrypto,
the server with ``cryptography``.  Without a custom key (``interceptor.set_key``)
both use :data:`DEFAULT_KEY`, which is public: it keeps the link opaque to other
local readers of the pipe but is no secret.  A sealed frame is::

    {"type": "sealed", "v": 1, "iv": "<12 bytes, base64>", "ct": "<ciphertext+tag, base64>"}

The associated data names the direction, so a frame cannot be reflected back.

Inside every sealed message, the sender puts its **link id** (random, new each time
the extension or the server starts) and a **counter** (``link``, ``seq``: 1, 2, …).
The receiver (:class:`ReplayGuard`) accepts each counter of a link once: a frame
replayed by whoever can write to the pipe is refused, and so is one older than the
last :attr:`ReplayGuard.window` frames of its link.  Frames may arrive slightly out
of order (the bridge forwards them concurrently), which the window allows.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from collections import OrderedDict
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


class LinkCounter:
    """The sending side of a link: stamps each message with the link id and the next
    counter before it is sealed."""

    def __init__(self, link: str | None = None) -> None:
        self.link = link or secrets.token_urlsafe(12)
        self.seq = 0

    def stamp(self, message: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        return {**message, "link": self.link, "seq": self.seq}

    def seal(self, key: bytes, message: dict[str, Any], direction: bytes = TO_EXTENSION
             ) -> dict[str, Any]:
        return seal(key, self.stamp(message), direction)


class ReplayGuard:
    """The receiving side: each (link, counter) once, none older than the window."""

    #: Counters of a link accepted out of order behind the highest one seen.
    window = 256
    #: Links remembered (least recently used forgotten first).
    max_links = 256
    #: The largest counter accepted (JavaScript's safe integers).
    max_seq = 2**53 - 1

    def __init__(self) -> None:
        #: link → (highest counter seen, bitmask of the window below it)
        self._links: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def check(self, message: dict[str, Any]) -> None:
        """Accept ``message``'s counter or raise :class:`FrameRejected`."""
        link, seq = message.get("link"), message.get("seq")
        if not isinstance(link, str) or not 8 <= len(link) <= 64:
            raise FrameRejected("frame has no link id: the extension is older than the server")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= self.max_seq:
            raise FrameRejected("frame has no valid counter")
        state = self._links.get(link)
        if state is None:
            self._links[link] = (seq, 1)
            if len(self._links) > self.max_links:
                self._links.popitem(last=False)
            return
        highest, seen = state
        if seq > highest:
            seen = ((seen << (seq - highest)) | 1) & ((1 << self.window) - 1)
            highest = seq
        else:
            behind = highest - seq
            if behind >= self.window:
                raise FrameRejected(f"frame {seq} is older than the last {self.window} of its link")
            if seen >> behind & 1:
                raise FrameRejected(f"frame {seq} of this link was already received (replayed)")
            seen |= 1 << behind
        self._links[link] = (highest, seen)
        self._links.move_to_end(link)
