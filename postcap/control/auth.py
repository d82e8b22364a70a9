"""The control channel's bearer token: created once, compared in constant time."""

from __future__ import annotations

import hmac
import os
import secrets

TOKEN_BYTES = 32


def load_or_create_token(path: str) -> str:
    """Read the token at ``path``; create it (mode 0600, 32 random bytes, url-safe)
    when missing.  Runs once at start-up, before the reactor."""
    try:
        with open(path, encoding="ascii") as existing:
            token = existing.read().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as created:
        created.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def bearer_matches(authorization: bytes | None, token: str) -> bool:
    """True when ``authorization`` is ``Bearer <token>`` (constant-time compare)."""
    if not authorization:
        return False
    scheme, _, credentials = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(credentials.strip(), token.encode("ascii"))
