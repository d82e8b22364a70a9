"""What every JSON-RPC param must be, whatever the method: strings of valid Unicode
(no lone surrogates from ``"\\ud800"`` escapes, which no file, database or socket
accepts) and integers within signed 64 bits (what SQLite stores).  Imports nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["first_bad_value"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _printable(path: str) -> str:
    return path.encode("utf-8", "backslashreplace").decode("utf-8")


def first_bad_value(params: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(path, problem)`` for the first string with a lone surrogate or integer
    outside signed 64 bits anywhere in ``params`` (``cookies[0].name``), else None."""
    stack: list[tuple[str, Any]] = list(params.items())
    while stack:
        path, value = stack.pop()
        if _has_lone_surrogate(path):
            return _printable(path), "names must be valid Unicode (a lone surrogate)"
        if isinstance(value, str):
            if _has_lone_surrogate(value):
                return _printable(path), "must be valid Unicode (a lone surrogate)"
        elif isinstance(value, int) and not isinstance(value, bool):
            if not _INT64_MIN <= value <= _INT64_MAX:
                return _printable(path), "integers must be between -2^63 and 2^63-1"
        elif isinstance(value, dict):
            stack.extend((f"{path}.{key}", member) for key, member in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return None
