"""Secrets out of everything postcap hands over as an example: values under a secret's
name (passwords, tokens, keys, cookies, sessions) and values shaped like credentials
(JWTs, ``Authorization`` values, long opaque tokens), in JSON, forms, headers and text."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

from postcap.apispec.values import REDACTED, secret_name, secret_value

#: Headers whose value is always a credential (never copied, whatever it looks like).
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_TOKEN_IN_TEXT = re.compile(
    r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|(?i:bearer|basic)\s+[A-Za-z0-9+/_=.-]{8,}"
    r"|(?<![A-Za-z0-9])(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{32,}"
)
_SECRET_PAIR_IN_TEXT = re.compile(
    r"(?i)((?:pass(?:word|wd)?|secret|token|api[-_]?key|session[-_]?id)\W{1,3})([^\s&\"',;<]+)"
)


def redact_json(value: Any, secret: bool = False) -> Any:
    """A copy of a JSON value with secrets replaced by ``"REDACTED"``."""
    if isinstance(value, dict):
        return {k: redact_json(v, secret or secret_name(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, secret) for v in value]
    if secret and value is not None and not isinstance(value, bool):
        return REDACTED
    if isinstance(value, str) and secret_value(value):
        return REDACTED
    return value


def redact_value(name: str, value: str) -> str:
    """One header, parameter, cookie or form value, redacted when it is a secret."""
    if name.lower() in CREDENTIAL_HEADERS or secret_name(name) or secret_value(value):
        return REDACTED
    return value


def redact_text(text: str, media_type: str = "") -> str:
    """A body as text: JSON and forms field by field, anything else by shape."""
    if "json" in media_type:
        try:
            return json.dumps(redact_json(json.loads(text)))
        except ValueError:
            pass
    if media_type == "application/x-www-form-urlencoded":
        pairs = parse_qsl(text, keep_blank_values=True)
        return urlencode([(k, redact_value(k, v)) for k, v in pairs])
    text = _TOKEN_IN_TEXT.sub(REDACTED, text)
    return _SECRET_PAIR_IN_TEXT.sub(lambda m: m.group(1) + REDACTED, text)


__all__ = ["CREDENTIAL_HEADERS", "REDACTED", "redact_json", "redact_text", "redact_value"]
