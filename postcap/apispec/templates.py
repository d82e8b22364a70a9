"""Endpoint templates learned from the paths a host served.

A :class:`PathLearner` folds concrete paths into a trie, one per host.  At each
position a segment goes to the parameter branch when it looks like an id (see
:func:`~postcap.apispec.values.id_like`), or once the position has seen more than
``threshold`` distinct literal values (then every literal branch there is merged into
the parameter branch).  Constant segments stay literal, so
``/orders/17/items/3`` and ``/orders/18/items/9`` give ``/orders/{orderId}/items/{itemId}``.
The trie never holds more than ``threshold`` literals per position, so memory is bounded
by the number of endpoints, not of requests, and the result does not depend on the order
the paths came in.

Parameter names come from the preceding literal segment, singular, camelCase, plus
``Id`` (``users`` → ``userId``, ``line-items`` → ``lineItemId``), else ``id``; repeats
get ``2``, ``3``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from postcap.apispec.values import id_like

PARAM = None  # the parameter branch's key in a path given as segments
DEFAULT_THRESHOLD = 20

Segments = tuple[str | None, ...]


@dataclass(slots=True)
class _Node:
    literals: dict[str, "_Node"] = field(default_factory=dict)
    param: "_Node | None" = None
    variable: bool = False

    def child(self, segment: str | None, threshold: int) -> "_Node":
        if segment is None or self.variable or id_like(segment):
            if self.param is None:
                self.param = _Node()
            return self.param
        node = self.literals.get(segment)
        if node is None:
            node = self.literals[segment] = _Node()
            if len(self.literals) > threshold:
                self.collapse(threshold)
                return self.child(None, threshold)
        return node

    def collapse(self, threshold: int) -> None:
        self.variable = True
        if self.param is None:
            self.param = _Node()
        for node in self.literals.values():
            self.param.absorb(node, threshold)
        self.literals = {}

    def absorb(self, other: "_Node", threshold: int) -> None:
        if other.param is not None:
            if self.param is None:
                self.param = _Node()
            self.param.absorb(other.param, threshold)
        if other.variable and not self.variable:
            self.collapse(threshold)
        for segment, node in other.literals.items():
            self.child(segment, threshold).absorb(node, threshold)

    def find(self, segment: str | None) -> "_Node | None":
        if segment is not None and not self.variable and not id_like(segment):
            found = self.literals.get(segment)
            if found is not None:
                return found
        return self.param


def split_path(path: str) -> tuple[str, ...]:
    """``/a/b/`` → ``("a", "b", "")``; ``/`` → ``()``."""
    trimmed = path[1:] if path.startswith("/") else path
    return tuple(trimmed.split("/")) if trimmed else ()


class PathLearner:
    """Learns endpoint templates per host; see the module docstring."""

    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self._roots: dict[str, _Node] = {}

    def add(self, host: str, segments: Sequence[str | None]) -> Segments:
        """Fold one path in; returns it as known so far (``PARAM`` where a parameter is).
        Give the same path to :meth:`template` once everything is in for its final shape."""
        node = self._roots.setdefault(host, _Node())
        shape: list[str | None] = []
        for segment in segments:
            parent = node
            node = parent.child(segment, self.threshold)
            shape.append(PARAM if node is parent.param else segment)
        return tuple(shape)

    def template(self, host: str, segments: Sequence[str | None]) -> Segments:
        """The final template of a path seen before (or one matching a learnt template)."""
        node: _Node | None = self._roots.get(host)
        shape: list[str | None] = []
        for segment in segments:
            if node is None:
                shape.append(PARAM if segment is None or id_like(segment) else segment)
                continue
            found = node.find(segment)
            shape.append(PARAM if found is not None and found is node.param else segment)
            node = found
        return tuple(shape)


_WORD = re.compile(r"[A-Za-z0-9]+")


_IRREGULAR = {"people": "person", "children": "child", "men": "man", "women": "woman",
              "mice": "mouse", "geese": "goose", "indices": "index", "statuses": "status"}


def singular(word: str) -> str:
    lower = word.lower()
    if lower in _IRREGULAR:
        return _IRREGULAR[lower]
    if lower.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if lower.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if lower.endswith("s") and not lower.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def parameter_names(template: Segments) -> list[str]:
    """Names for the template's parameters, in order (see the module docstring)."""
    names: list[str] = []
    previous: str | None = None
    for segment in template:
        if segment is PARAM:
            base = "id"
            if previous:
                words = _WORD.findall(previous)
                if words:
                    words[-1] = singular(words[-1])
                    camel = words[0].lower() + "".join(w[:1].upper() + w[1:].lower() for w in words[1:])
                    if camel and not camel[0].isdigit():
                        base = camel + "Id"
            name, n = base, 1
            while name in names:
                n += 1
                name = f"{base}{n}"
            names.append(name)
            previous = None
        else:
            previous = segment
    return names


def render(template: Segments, names: Sequence[str] | None = None, style: str = "openapi") -> str:
    """``/users/{userId}`` (``style="openapi"``) or ``/users/:userId`` (``"postman"``)."""
    names = list(names if names is not None else parameter_names(template))
    parts, index = [], 0
    for segment in template:
        if segment is PARAM:
            parts.append("{" + names[index] + "}" if style == "openapi" else ":" + names[index])
            index += 1
        else:
            parts.append(segment)
    return "/" + "/".join(parts)


def parse_template(path: str) -> Segments:
    """A template written as ``/users/{userId}`` or ``/users/:userId`` back into segments."""
    return tuple(
        PARAM if (s.startswith("{") and s.endswith("}")) or (s.startswith(":") and len(s) > 1) else s
        for s in split_path(path)
    )


def matches(template: Segments, segments: Iterable[str | None]) -> bool:
    """True when a concrete or template path fits ``template`` (a parameter takes any one segment)."""
    given = tuple(segments)
    return len(given) == len(template) and all(
        t is PARAM or t == s for t, s in zip(template, given)
    )


__all__ = [
    "DEFAULT_THRESHOLD",
    "PARAM",
    "PathLearner",
    "matches",
    "parameter_names",
    "parse_template",
    "render",
    "split_path",
]
