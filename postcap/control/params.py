"""Tiny validators for JSON-RPC params; each raises ``InvalidParams`` naming the parameter.

Every validator takes the parameter's name and value and returns the validated
value.  With ``optional=True`` a ``None`` value (the method's own default, or an
explicit JSON ``null``) returns ``default`` instead::

    def request_list(session_id=None, limit=None, offset=None):
        limit = params.integer("limit", limit, minimum=0, optional=True, default=100)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeVar

from postcap.control.dispatch import InvalidParams

__all__ = ["string", "integer", "boolean", "string_list", "object_", "one_of", "id_list"]

_T = TypeVar("_T")


def string(
    name: str,
    value: Any,
    *,
    optional: bool = False,
    default: str | None = None,
    allow_empty: bool = False,
    max_length: int | None = None,
) -> Any:
    """A string; non-empty unless ``allow_empty``; at most ``max_length`` characters."""
    if value is None and optional:
        return default
    if not isinstance(value, str):
        raise InvalidParams(name, "must be a string")
    if not value and not allow_empty:
        raise InvalidParams(name, "must be a non-empty string")
    if max_length is not None and len(value) > max_length:
        raise InvalidParams(name, f"must be at most {max_length} characters long")
    return value


def integer(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    optional: bool = False,
    default: int | None = None,
) -> Any:
    """An integer within ``[minimum, maximum]``; ``true``/``false`` are not integers.

    A float with no fractional part (``5.0``) is taken as the integer.
    """
    if value is None and optional:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    ok = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
    )
    if not ok:
        if minimum is not None and maximum is not None:
            problem = f"must be an integer between {minimum} and {maximum}"
        elif minimum is not None:
            problem = f"must be an integer >= {minimum}"
        elif maximum is not None:
            problem = f"must be an integer <= {maximum}"
        else:
            problem = "must be an integer"
        raise InvalidParams(name, problem)
    return value


def boolean(name: str, value: Any, *, optional: bool = False, default: bool | None = None) -> Any:
    """``true`` or ``false``, nothing truthy."""
    if value is None and optional:
        return default
    if not isinstance(value, bool):
        raise InvalidParams(name, "must be true or false")
    return value


def string_list(
    name: str, value: Any, *, optional: bool = False, default: list[str] | None = None
) -> Any:
    """A list of strings (possibly empty); returned as a new list."""
    if value is None and optional:
        return default
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidParams(name, "must be a list of strings")
    return list(value)


def object_(
    name: str, value: Any, *, optional: bool = False, default: dict[str, Any] | None = None
) -> Any:
    """A JSON object (a dict)."""
    if value is None and optional:
        return default
    if not isinstance(value, dict):
        raise InvalidParams(name, "must be an object")
    return value


def one_of(
    name: str, value: Any, choices: Iterable[_T], *, optional: bool = False, default: Any = None
) -> Any:
    """One of ``choices``, compared by type and value (so ``true`` is not ``1``)."""
    if value is None and optional:
        return default
    choices = list(choices)
    for choice in choices:
        if type(choice) is type(value) and choice == value:
            return choice
    listed = ", ".join(json.dumps(choice) for choice in choices)
    raise InvalidParams(name, f"must be one of {listed}")


def id_list(
    name: str, value: Any, *, optional: bool = False, default: list[str] | None = None
) -> Any:
    """A non-empty list of non-empty id strings; returned as a new list."""
    if value is None and optional:
        return default
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(item, str) and item for item in value)
    ):
        raise InvalidParams(name, "must be a non-empty list of id strings")
    return list(value)
