"""Capture-session options: validation, normalization and capture filters.

Pure and I/O-free.  :func:`validate_options` turns the JSON a user sends to
``session.start`` / ``session.update`` into a complete, normalized options
dict (CONTRACT.md section 3) or raises :class:`OptionError` carrying the
JSON-RPC code and the (dotted) field at fault.  :class:`CaptureFilter` is the
compiled predicate the capture session asks about every exchange.

Merging rules:

- every field may be given alone; the rest come from ``base`` (the session's
  current options) or :data:`DEFAULT_OPTIONS`;
- ``filters`` merges field by field: ``{"filters": {"methods": ["GET"]}}``
  leaves the URL and status filters as they were;
- ``null`` for any field resets it to its default (``"filters": null`` resets
  every filter).

URL patterns: a URL is matched by a pattern when it contains the pattern as a
plain substring *or* the pattern matches somewhere in it (so
``api.example.com/v1`` works as written, its dots also matching any
character).  Matching is case-sensitive; write ``(?i)`` for case-insensitive
patterns.  Empty patterns are normalized to ``null`` (no filter).  Patterns
use RE2 syntax and run in linear time (:mod:`postcap.patterns`); one RE2
cannot take (a backreference, lookaround) is refused with ``-32005``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from postcap.patterns import MAX_PATTERN_LENGTH  # noqa: F401  (re-exported)
from postcap.patterns import PatternError, UserPattern, compile_pattern

__all__ = [
    "INVALID_PARAMS",
    "INVALID_OPTION",
    "DEFAULT_OPTIONS",
    "OptionError",
    "CaptureFilter",
    "default_options",
    "validate_options",
    "resource_kind",
]

#: JSON-RPC code for a value of the wrong JSON type or an unknown field.
INVALID_PARAMS = -32602
#: postcap's code for a value of the right type that is not acceptable.
INVALID_OPTION = -32005

MAX_NAME_LENGTH = 200

ORGANIZE_BY_CHOICES: tuple[tuple[str, ...], ...] = (
    (),
    ("domain",),
    ("endpoint",),
    ("domain", "endpoint"),
)
SOURCES = ("proxy", "interceptor")
RESOURCE_KINDS = ("image", "js", "css")

#: JavaScript media types (WHATWG MIME Sniffing, "JavaScript MIME type").
JAVASCRIPT_TYPES = frozenset(
    {
        "application/ecmascript",
        "application/javascript",
        "application/x-ecmascript",
        "application/x-javascript",
        "text/ecmascript",
        "text/javascript",
        "text/javascript1.0",
        "text/javascript1.1",
        "text/javascript1.2",
        "text/javascript1.3",
        "text/javascript1.4",
        "text/javascript1.5",
        "text/jscript",
        "text/livescript",
        "text/x-ecmascript",
        "text/x-javascript",
    }
)

#: The contract's defaults.  Read-only by convention: use :func:`default_options`
#: (or :func:`validate_options`) for a copy you may change.
DEFAULT_OPTIONS: dict[str, Any] = {
    "name": "Proxy debug session",
    "source": "proxy",
    "save_responses": True,
    "capture_cookies": False,
    "collection": None,
    "organize_by": [],
    "filters": {
        "url_contains": None,
        "url_excludes": None,
        "methods": [],
        "status_codes": [],
        "exclude_resources": [],
    },
}

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS_CODE = re.compile(r"[0-9]{3}")
_STATUS_CLASS = re.compile(r"([0-9])xx", re.IGNORECASE)


class OptionError(ValueError):
    """A session option that cannot be accepted.

    ``field`` names the option (``filters.methods`` for a filter), ``problem``
    says what is wrong, ``code`` is the JSON-RPC error code: :data:`INVALID_PARAMS`
    for a wrong JSON type or an unknown field, :data:`INVALID_OPTION` for a
    value of the right type that is not acceptable.  ``str(error)`` is the
    message for the JSON-RPC error object.
    """

    def __init__(
        self, field: str, problem: str, code: int = INVALID_OPTION, message: str | None = None
    ) -> None:
        if message is None:
            kind = "parameter" if code == INVALID_PARAMS else "option"
            message = f"invalid {kind} '{field}': {problem}"
        super().__init__(message)
        self.field = field
        self.problem = problem
        self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.problem, self.code, self.message))

    @classmethod
    def wrong_type(cls, field: str, expected: str) -> OptionError:
        """The value has the wrong JSON type (``-32602``)."""
        return cls(field, f"must be {expected}", INVALID_PARAMS)

    @classmethod
    def unknown(cls, field: str) -> OptionError:
        """The field is not an option (``-32602``)."""
        return cls(field, "unknown parameter", INVALID_PARAMS, f"unknown parameter '{field}'")

    @classmethod
    def invalid(cls, field: str, problem: str) -> OptionError:
        """The value has the right type but is not acceptable (``-32005``)."""
        return cls(field, problem, INVALID_OPTION)


def default_options() -> dict[str, Any]:
    """A fresh, mutable copy of :data:`DEFAULT_OPTIONS`."""
    return copy.deepcopy(DEFAULT_OPTIONS)


# -- field normalizers: (value, field) -> normalized value, never None -------


def _string_list(value: Any, field: str, expected: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise OptionError.wrong_type(field, expected)
    return list(value)


def _unique(items: list[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise OptionError.wrong_type(field, "a boolean")
    return value


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise OptionError.wrong_type(field, "a string")
    name = value.strip()
    if not name:
        raise OptionError.invalid(field, "must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise OptionError.invalid(field, f"must be at most {MAX_NAME_LENGTH} characters")
    return name


def _source(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise OptionError.wrong_type(field, "a string")
    if value not in SOURCES:
        raise OptionError.invalid(field, "must be 'proxy' or 'interceptor'")
    return value


def _collection(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise OptionError.wrong_type(field, "a collection id (string) or null")
    if not value.strip():
        raise OptionError.invalid(field, "must not be empty (use null for no collection)")
    return value


def _organize_by(value: Any, field: str) -> list[str]:
    folders = tuple(_string_list(value, field, "a list of strings"))
    if folders not in ORGANIZE_BY_CHOICES:
        raise OptionError.invalid(
            field, 'must be [], ["domain"], ["endpoint"] or ["domain", "endpoint"]'
        )
    return list(folders)


def _pattern(value: Any, field: str) -> str | None:
    if not isinstance(value, str):
        raise OptionError.wrong_type(field, "a string or null")
    if not value:
        return None
    _compile(value, field)
    return value


def _compile(pattern: str, field: str) -> UserPattern:
    try:
        return compile_pattern(pattern)
    except PatternError as e:
        raise OptionError.invalid(field, e.reason) from None


def _methods(value: Any, field: str) -> list[str]:
    methods = _string_list(value, field, "a list of strings")
    for method in methods:
        if not _TOKEN.fullmatch(method):
            raise OptionError.invalid(field, f"{method!r} is not an HTTP method")
    return _unique([m.upper() for m in methods])


_STATUS_EXPECTED = "a list of status codes (integers, or strings like \"404\" or \"2xx\")"


def _status_codes(value: Any, field: str) -> list[int | str]:
    if not isinstance(value, (list, tuple)):
        raise OptionError.wrong_type(field, _STATUS_EXPECTED)
    codes: list[int | str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise OptionError.wrong_type(field, _STATUS_EXPECTED)
        if isinstance(item, str):
            text = item.strip()
            if _STATUS_CODE.fullmatch(text):
                item = int(text)
            elif (cls := _STATUS_CLASS.fullmatch(text)) is not None:
                if not "1" <= cls.group(1) <= "5":
                    raise OptionError.invalid(field, f"{item!r}: classes are 1xx to 5xx")
                codes.append(text.lower())
                continue
            else:
                raise OptionError.invalid(
                    field, f"{item!r} is neither a status code nor a class like \"2xx\""
                )
        if not 100 <= item <= 599:
            raise OptionError.invalid(field, f"{item} is outside 100-599")
        codes.append(item)
    return _unique(codes)


def _exclude_resources(value: Any, field: str) -> list[str]:
    kinds = [k.lower() for k in _string_list(value, field, "a list of strings")]
    for kind in kinds:
        if kind not in RESOURCE_KINDS:
            raise OptionError.invalid(field, f"{kind!r} is not one of 'image', 'js', 'css'")
    return _unique(kinds)


Normalizer = Callable[[Any, str], Any]

_OPTION_FIELDS: dict[str, Normalizer] = {
    "name": _name,
    "source": _source,
    "save_responses": _boolean,
    "capture_cookies": _boolean,
    "collection": _collection,
    "organize_by": _organize_by,
}

_FILTER_FIELDS: dict[str, Normalizer] = {
    "url_contains": _pattern,
    "url_excludes": _pattern,
    "methods": _methods,
    "status_codes": _status_codes,
    "exclude_resources": _exclude_resources,
}


def _complete(base: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with ``base`` (trusted: a former validate_options result)."""
    result = default_options()
    if base is None:
        return result
    for key in _OPTION_FIELDS:
        if key in base:
            result[key] = copy.deepcopy(base[key])
    for key in _FILTER_FIELDS:
        if key in (base.get("filters") or {}):
            result["filters"][key] = copy.deepcopy(base["filters"][key])
    return result


def _merge_filters(current: dict[str, Any], changes: Any) -> dict[str, Any]:
    if changes is None:
        return copy.deepcopy(DEFAULT_OPTIONS["filters"])
    if not isinstance(changes, Mapping):
        raise OptionError.wrong_type("filters", "an object")
    result = dict(current)
    for key, value in changes.items():
        field = f"filters.{key}"
        normalize = _FILTER_FIELDS.get(key) if isinstance(key, str) else None
        if normalize is None:
            raise OptionError.unknown(field)
        if value is None:
            result[key] = copy.deepcopy(DEFAULT_OPTIONS["filters"][key])
        else:
            result[key] = normalize(value, field)
    return result


def validate_options(
    changes: Mapping[str, Any], base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return a new, complete, normalized options dict: ``base`` updated by ``changes``.

    ``base`` defaults to :data:`DEFAULT_OPTIONS` and is never modified; it is
    trusted to be a former result of this function (missing fields are filled
    from the defaults).  ``changes`` holds only option fields: the caller
    removes other request parameters (``id`` of ``session.update``) first.

    @raise OptionError: on the first unacceptable field; nothing is applied.
    """
    if not isinstance(changes, Mapping):
        raise OptionError.wrong_type("options", "an object")
    result = _complete(base)
    for key, value in changes.items():
        if key == "filters":
            result["filters"] = _merge_filters(result["filters"], value)
            continue
        normalize = _OPTION_FIELDS.get(key) if isinstance(key, str) else None
        if normalize is None:
            raise OptionError.unknown(str(key))
        if value is None:
            result[key] = copy.deepcopy(DEFAULT_OPTIONS[key])
        else:
            result[key] = normalize(value, key)
    return result


def resource_kind(content_type: str) -> str | None:
    """``"image"``, ``"js"``, ``"css"`` or None for a Content-Type value.

    Parameters (``; charset=…``) and case are ignored.
    """
    essence = content_type.split(";", 1)[0].strip().lower()
    if essence.startswith("image/"):
        return "image"
    if essence in JAVASCRIPT_TYPES:
        return "js"
    if essence == "text/css":
        return "css"
    return None


@dataclass(frozen=True, slots=True)
class CaptureFilter:
    """Which exchanges a session captures.  ``CaptureFilter()`` captures all.

    The request side (:meth:`wants_request`) is decided as soon as the request
    head is known; the response side (:meth:`wants_response`) once the response
    head has arrived or the exchange failed.  An exchange is captured only when
    both say yes.
    """

    url_contains: UserPattern | None = None
    url_excludes: UserPattern | None = None
    methods: frozenset[str] = frozenset()
    status_codes: frozenset[int] = frozenset()
    #: Status classes by their first digit: ``"2xx"`` is 2.
    status_classes: frozenset[int] = frozenset()
    exclude_resources: frozenset[str] = frozenset()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> CaptureFilter:
        """Build from session options (validated again, so bad input raises OptionError)."""
        filters = validate_options(options)["filters"]
        url_contains, url_excludes = filters["url_contains"], filters["url_excludes"]
        codes = filters["status_codes"]
        return cls(
            url_contains=None if url_contains is None else compile_pattern(url_contains),
            url_excludes=None if url_excludes is None else compile_pattern(url_excludes),
            methods=frozenset(filters["methods"]),
            status_codes=frozenset(c for c in codes if isinstance(c, int)),
            status_classes=frozenset(int(c[0]) for c in codes if isinstance(c, str)),
            exclude_resources=frozenset(filters["exclude_resources"]),
        )

    @property
    def filters_responses(self) -> bool:
        """Whether :meth:`wants_response` can ever say no."""
        return bool(self.status_codes or self.status_classes or self.exclude_resources)

    def wants_request(self, method: str, url: str) -> bool:
        """Whether a request for absolute ``url`` with ``method`` may be captured."""
        if self.methods and method.upper() not in self.methods:
            return False
        if self.url_excludes is not None and self.url_excludes.search_or_contains(url):
            return False
        if self.url_contains is not None and not self.url_contains.search_or_contains(url):
            return False
        return True

    def wants_response(self, status: int | None, content_type: str) -> bool:
        """Whether the exchange may be captured, given its response.

        ``status`` is None when there is no response (the exchange failed): it
        is captured unless a status filter is set, since no status can match.
        ``content_type`` is the response's Content-Type value ("" if none).
        """
        if self.status_codes or self.status_classes:
            if status is None:
                return False
            if status not in self.status_codes and status // 100 not in self.status_classes:
                return False
        if self.exclude_resources and resource_kind(content_type) in self.exclude_resources:
            return False
        return True
