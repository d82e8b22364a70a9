"""What differs between two captured transactions (``request.diff``).

Pure functions over the contract's transaction details.  Every part is ``null`` when
both sides agree, so a client can show only what changed:

- ``method``, ``status``: ``{a, b}``;
- ``url``: ``{a, b, parts: {scheme|host|port|path: {a, b}}, query: [param change]}``
  with one change per query parameter name (its values in order on each side);
- ``request_headers`` / ``response_headers``: a list of ``{name, change:
  "added"|"removed"|"changed", a: [values], b: [values]}`` (names compared without case);
- ``request_body`` / ``response_body``: ``{kind: "json", changes: [{path, change, a, b}]}``
  when both sides parse as JSON (paths like ``$.items[2].id``), ``{kind: "text",
  unified: "..."}`` for other text, ``{kind: "binary", a: {size, sha256}, b: {...}}``
  otherwise.  Bodies with a ``Content-Encoding`` postcap can undo are compared decoded
  (``decoded: {a, b}`` names the codings).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from typing import Any, Iterator, Mapping
from urllib.parse import parse_qsl, urlsplit

from postcap.encodings import decoded_json
from postcap.requests_as_code import body_bytes

#: JSON changes listed at most; ``truncated`` says when there were more.
MAX_JSON_CHANGES = 500
#: Unified-diff lines kept at most.
MAX_DIFF_LINES = 2000
_MISSING = object()


def _pair(a: Any, b: Any) -> dict[str, Any] | None:
    return None if a == b else {"a": a, "b": b}


def diff_url(a: str, b: str) -> dict[str, Any] | None:
    if a == b:
        return None
    left, right = urlsplit(a), urlsplit(b)
    parts = {}
    for name in ("scheme", "hostname", "port", "path"):
        change = _pair(getattr(left, name), getattr(right, name))
        if change is not None:
            parts["host" if name == "hostname" else name] = change
    query = diff_pairs(parse_qsl(left.query, keep_blank_values=True),
                       parse_qsl(right.query, keep_blank_values=True), fold_case=False)
    fragment = _pair(left.fragment, right.fragment)
    if fragment is not None:
        parts["fragment"] = fragment
    return {"a": a, "b": b, "parts": parts, "query": query}


def _grouped(pairs: list[tuple[str, str]] | list[list[str]], fold_case: bool) -> dict[str, Any]:
    groups: dict[str, tuple[str, list[str]]] = {}
    for name, value in pairs:
        key = name.lower() if fold_case else name
        groups.setdefault(key, (name, []))[1].append(value)
    return groups


def diff_pairs(a: Any, b: Any, fold_case: bool = True) -> list[dict[str, Any]]:
    """Changes between two lists of ``(name, value)``, one entry per name, in the order
    names first appear (a's, then b's new ones)."""
    left, right = _grouped(a, fold_case), _grouped(b, fold_case)
    changes = []
    for key in list(left) + [k for k in right if k not in left]:
        name_a, values_a = left.get(key, (None, []))
        name_b, values_b = right.get(key, (None, []))
        if values_a == values_b:
            continue
        change = "added" if not values_a else "removed" if not values_b else "changed"
        changes.append({"name": name_a or name_b, "change": change, "a": values_a, "b": values_b})
    return changes


def _json_path(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


def diff_json(a: Any, b: Any, path: str = "$") -> Iterator[dict[str, Any]]:
    """Changes between two JSON values, per path (objects by key, arrays by index)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            yield from diff_json(a.get(key, _MISSING), b.get(key, _MISSING), _json_path(path, key))
    elif isinstance(a, list) and isinstance(b, list):
        for index in range(max(len(a), len(b))):
            yield from diff_json(a[index] if index < len(a) else _MISSING,
                                 b[index] if index < len(b) else _MISSING, _json_path(path, index))
    elif a is _MISSING:
        yield {"path": path, "change": "added", "a": None, "b": b}
    elif b is _MISSING:
        yield {"path": path, "change": "removed", "a": a, "b": None}
    elif a != b or type(a) is not type(b):
        yield {"path": path, "change": "changed", "a": a, "b": b}


def _as_json(data: bytes) -> tuple[bool, Any]:
    if not data.strip():
        return False, None
    try:
        return True, json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False, None


def _as_text(data: bytes) -> str | None:
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _fingerprint(data: bytes, body: Mapping[str, Any]) -> dict[str, Any]:
    return {"size": body.get("size", len(data)), "stored": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def _content(body: Mapping[str, Any]) -> tuple[bytes, str | None]:
    """The body's content: decoded when it has a ``Content-Encoding`` postcap could
    undo (then also the coding), else the stored bytes."""
    decoded = decoded_json(dict(body))
    if decoded and decoded.get("error") is None:
        return body_bytes(decoded), body.get("content_encoding")
    return body_bytes(body), None


def diff_body(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any] | None:
    a, b = a or {}, b or {}
    raw_left, raw_right = body_bytes(a), body_bytes(b)
    if raw_left == raw_right and a.get("size", len(raw_left)) == b.get("size", len(raw_right)):
        return None
    (left, coding_a), (right, coding_b) = _content(a), _content(b)
    notes = [side for side, body in (("a", a), ("b", b)) if body.get("truncated")
             or (body.get("size") and not body.get("captured", True))]
    result: dict[str, Any]
    is_json_a, value_a = _as_json(left)
    is_json_b, value_b = _as_json(right)
    text_a, text_b = _as_text(left), _as_text(right)
    if is_json_a and is_json_b:
        changes = list(_limited(diff_json(value_a, value_b), MAX_JSON_CHANGES + 1))
        result = {"kind": "json", "changes": changes[:MAX_JSON_CHANGES],
                  "truncated": len(changes) > MAX_JSON_CHANGES}
    elif text_a is not None and text_b is not None:
        lines = list(_limited(difflib.unified_diff(
            text_a.splitlines(keepends=True), text_b.splitlines(keepends=True),
            fromfile="a", tofile="b"), MAX_DIFF_LINES + 1))
        result = {"kind": "text", "unified": "".join(lines[:MAX_DIFF_LINES]),
                  "truncated": len(lines) > MAX_DIFF_LINES}
    else:
        result = {"kind": "binary", "a": _fingerprint(left, a), "b": _fingerprint(right, b)}
    result["sizes"] = {"a": a.get("size", len(left)), "b": b.get("size", len(right))}
    if coding_a or coding_b:
        result["decoded"] = {"a": coding_a, "b": coding_b}  # compared after undoing these
    if notes:
        result["incomplete"] = notes  # which sides' stored copies are not the whole body
    return result


def _limited(items: Iterator[Any], count: int) -> Iterator[Any]:
    for index, item in enumerate(items):
        if index >= count:
            return
        yield item


def _part(detail: Mapping[str, Any], side: str) -> Mapping[str, Any]:
    return detail.get(side) or {}


def diff_transactions(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """What differs between two transaction details; ``same`` when nothing does."""
    request_a, request_b = _part(a, "request"), _part(b, "request")
    response_a, response_b = _part(a, "response"), _part(b, "response")
    result = {
        "a": a.get("id"),
        "b": b.get("id"),
        "method": _pair(a.get("method"), b.get("method")),
        "url": diff_url(str(a.get("url", "")), str(b.get("url", ""))),
        "status": _pair(a.get("status"), b.get("status")),
        "request_headers": diff_pairs(request_a.get("headers") or [], request_b.get("headers") or []),
        "response_headers": diff_pairs(response_a.get("headers") or [],
                                       response_b.get("headers") or []),
        "request_body": diff_body(request_a.get("body"), request_b.get("body")),
        "response_body": diff_body(response_a.get("body"), response_b.get("body")),
    }
    result["same"] = not any(value for key, value in result.items() if key not in ("a", "b"))
    return result


__all__ = ["diff_body", "diff_json", "diff_pairs", "diff_transactions", "diff_url"]
