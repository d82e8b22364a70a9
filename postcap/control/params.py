"""JSON-RPC params: one declarative description per method, checked at the boundary.

A method describes its parameters once, with :func:`takes`; the dispatcher checks
them before the method runs and passes the checked values (defaults filled in)::

    @takes(limit=Int(1, 1000, default=100), offset=Int(0, default=0),
           domain=Str(max_length=253, optional=True))
    async def request_list(self, limit=100, offset=0, domain=None): ...

Each spec raises :class:`InvalidParams` naming the parameter (``cookies[0].domain``
for nested ones).  ``null`` is "not given" for an optional parameter.  The specs
are :class:`Str`, :class:`Int`, :class:`Bool`, :class:`Enum`, :class:`Time`,
:class:`Ids`, :class:`Strs`, :class:`List`, :class:`Obj` and :class:`Custom`
(any ``(name, value) -> value`` function, for shapes of their own).

The functions below (:func:`string`, :func:`integer`, …) are the same checks as
plain calls, for code that validates by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

from postcap.control.dispatch import InvalidParams

__all__ = [
    "string", "integer", "boolean", "string_list", "object_", "one_of", "id_list", "timestamp",
    "Spec", "Str", "Int", "Bool", "Enum", "Time", "Ids", "Strs", "List", "Obj", "Custom",
    "ParamSpec", "takes", "INT64_MAX", "LATEST_TIME", "MAX_IDS",
]

_T = TypeVar("_T")

#: Integers are signed 64-bit, as SQLite stores them.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: The latest time accepted: 9999-12-31T23:59:59Z in epoch seconds.
LATEST_TIME = 253402300799.0
#: The longest list of ids one call may name.
MAX_IDS = 10_000


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
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidParams(name, "must be an integer between -2^63 and 2^63-1")
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


def timestamp(name: str, value: Any, *, optional: bool = True, allow_past: bool = False) -> Any:
    """An ISO 8601 time (``2026-11-22T10:00:00Z``, offset optional, UTC when none) or
    epoch seconds, as epoch seconds between 0 (``-LATEST_TIME`` with ``allow_past``)
    and :data:`LATEST_TIME`."""
    if value is None and optional:
        return None
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value) if abs(value) <= LATEST_TIME else None
    elif isinstance(value, str) and len(value) <= 64:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            seconds = moment.timestamp()
        except (ValueError, OverflowError):
            seconds = None
    earliest = -LATEST_TIME if allow_past else 0.0
    if seconds is None or not math.isfinite(seconds) or not earliest <= seconds <= LATEST_TIME:
        raise InvalidParams(
            name, "must be an ISO 8601 time such as 2026-11-22T10:00:00Z or epoch seconds "
            f"({int(earliest)} to {int(LATEST_TIME)})"
        )
    return seconds


# -- declarative specs ------------------------------------------------------------------


class Spec(Protocol):
    """What a parameter accepts: ``check`` returns the value to pass, or raises
    :class:`InvalidParams`; ``optional`` params may be absent or ``null``."""

    optional: bool

    def check(self, name: str, value: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Str:
    """A string of at most ``max_length`` characters; non-empty unless ``allow_empty``."""

    max_length: int | None = None
    allow_empty: bool = False
    optional: bool = False
    default: str | None = None

    def check(self, name: str, value: Any) -> Any:
        return string(name, value, optional=self.optional, default=self.default,
                      allow_empty=self.allow_empty, max_length=self.max_length)


@dataclass(frozen=True, slots=True)
class Int:
    """An integer within ``[minimum, maximum]`` (and always within signed 64 bits)."""

    minimum: int | None = None
    maximum: int | None = None
    optional: bool = False
    default: int | None = None

    def check(self, name: str, value: Any) -> Any:
        return integer(name, value, minimum=self.minimum, maximum=self.maximum,
                       optional=self.optional, default=self.default)


@dataclass(frozen=True, slots=True)
class Bool:
    """``true`` or ``false``."""

    optional: bool = False
    default: bool | None = None

    def check(self, name: str, value: Any) -> Any:
        return boolean(name, value, optional=self.optional, default=self.default)


@dataclass(frozen=True, slots=True)
class Enum:
    """One of ``choices`` (compared by type and value)."""

    choices: tuple[Any, ...]
    optional: bool = False
    default: Any = None

    def check(self, name: str, value: Any) -> Any:
        return one_of(name, value, self.choices, optional=self.optional, default=self.default)


@dataclass(frozen=True, slots=True)
class Time:
    """An ISO 8601 time or epoch seconds, passed on as epoch seconds."""

    optional: bool = True

    def check(self, name: str, value: Any) -> Any:
        return timestamp(name, value, optional=self.optional)


@dataclass(frozen=True, slots=True)
class Ids:
    """A non-empty list of at most ``max_items`` id strings, each at most ``max_length`` long."""

    max_items: int = MAX_IDS
    max_length: int = 200
    optional: bool = False

    def check(self, name: str, value: Any) -> Any:
        ids = id_list(name, value, optional=self.optional)
        if ids is None:
            return None
        if len(ids) > self.max_items:
            raise InvalidParams(name, f"at most {self.max_items} ids at a time")
        if any(len(item) > self.max_length for item in ids):
            raise InvalidParams(name, f"ids are at most {self.max_length} characters long")
        return ids


@dataclass(frozen=True, slots=True)
class Strs:
    """A list of at most ``max_items`` strings, each at most ``max_length`` long."""

    max_items: int = 1000
    max_length: int = 1000
    optional: bool = False

    def check(self, name: str, value: Any) -> Any:
        items = string_list(name, value, optional=self.optional)
        if items is None:
            return None
        if len(items) > self.max_items:
            raise InvalidParams(name, f"must hold at most {self.max_items} items")
        if any(len(item) > self.max_length for item in items):
            raise InvalidParams(name, f"items must be at most {self.max_length} characters long")
        return items


@dataclass(frozen=True, slots=True)
class List:
    """A list of ``min_items`` to ``max_items`` values, each checked by ``item`` as ``name[i]``."""

    item: Spec
    max_items: int = 1000
    min_items: int = 0
    optional: bool = False

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if not isinstance(value, list) or not self.min_items <= len(value) <= self.max_items:
            raise InvalidParams(
                name, f"must be a list of {self.min_items} to {self.max_items} items"
            )
        return [self.item.check(f"{name}[{index}]", item) for index, item in enumerate(value)]


@dataclass(frozen=True, slots=True)
class Obj:
    """An object whose members are checked by ``fields`` as ``name.member``; other
    members are refused unless ``extra``.  Absent optional members take their default."""

    fields: Mapping[str, Spec] = field(default_factory=dict)
    extra: bool = False
    optional: bool = False

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        checked = object_(name, value)
        if not self.extra:
            for key in checked:
                if key not in self.fields:
                    raise InvalidParams(f"{name}.{key}", "unknown member")
        result = dict(checked)
        for key, spec in self.fields.items():
            result[key] = _check_member(spec, f"{name}.{key}", key in checked, checked.get(key))
        return result


@dataclass(frozen=True, slots=True)
class Custom:
    """A shape of its own: ``func(name, value)`` returns the value or raises InvalidParams."""

    func: Callable[[str, Any], Any]
    optional: bool = False

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        return self.func(name, value)


def _check_member(spec: Spec, name: str, given: bool, value: Any) -> Any:
    """A member's checked value; absent or ``null``, its default (a spec with a
    default is optional)."""
    if not given or value is None:
        default = getattr(spec, "default", None)
        if default is not None:
            return default
        if not given and not spec.optional:
            raise InvalidParams.missing(name)
    return spec.check(name, value)


class ParamSpec:
    """A method's parameters: :meth:`validate` checks the given ones and fills in
    the defaults of the absent ones."""

    def __init__(self, specs: Mapping[str, Spec]) -> None:
        self.specs = dict(specs)

    def names(self) -> frozenset[str]:
        return frozenset(self.specs)

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(params)
        for name, spec in self.specs.items():
            result[name] = _check_member(spec, name, name in params, params.get(name))
        return result


_F = TypeVar("_F", bound=Callable[..., Any])

#: The attribute the dispatcher reads a method's :class:`ParamSpec` from.
SPEC_ATTRIBUTE = "__rpc_params__"


def takes(**specs: Spec) -> Callable[[_F], _F]:
    """Describe a method's parameters (see the module docstring); the dispatcher
    checks them before every call.  ``**{"in": ...}`` names a keyword-like param."""

    def describe(func: _F) -> _F:
        setattr(func, SPEC_ATTRIBUTE, ParamSpec(specs))
        return func

    return describe
