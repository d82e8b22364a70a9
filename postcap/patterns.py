"""User-supplied regular expressions, run in a linear-time engine.

Every pattern a user gives postcap (session filters, ``--ignore-hosts``) is
compiled here, with RE2 (``google-re2``): matching takes time linear in the
text whatever the pattern, so no pattern can freeze the reactor the way a
backtracking engine does on ``(a+)+$``.  RE2 has no backreferences and no
lookaround; such a pattern is refused with :class:`PatternError` saying why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import re2

__all__ = ["MAX_PATTERN_LENGTH", "PatternError", "UserPattern", "compile_pattern"]

#: Longest pattern accepted, in characters.
MAX_PATTERN_LENGTH = 4096

#: RE2's program-size budget (bytes); a pattern needing more is refused when compiled.
_MAX_MEMORY = 8 << 20


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # the reason goes to the caller, not to stderr
    options.max_mem = _MAX_MEMORY
    return options


_OPTIONS = _options()

#: RE2 parse errors that mean "a backtracking feature", with the reason users are told.
_UNSUPPORTED = (
    ("invalid perl operator: (?=", "lookahead (?=…) is not supported"),
    ("invalid perl operator: (?!", "negative lookahead (?!…) is not supported"),
    ("invalid perl operator: (?<=", "lookbehind (?<=…) is not supported"),
    ("invalid perl operator: (?<!", "negative lookbehind (?<!…) is not supported"),
    ("invalid perl operator: (?>", "atomic groups (?>…) are not supported"),
    ("invalid perl operator: (?P", "named backreferences (?P=name) are not supported"),
    ("invalid escape sequence: \\", "backreferences (\\1 … \\9) are not supported"),
)
_LINEAR = " (patterns use RE2 syntax, which matches in linear time)"


class PatternError(ValueError):
    """A pattern postcap will not run; ``reason`` says why, for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reason(message: str) -> str:
    for prefix, reason in _UNSUPPORTED:
        if message.startswith(prefix) and (
            not prefix.endswith("\\") or message[len(prefix):].isdigit()
        ):
            return reason + _LINEAR
    return f"not a valid regular expression: {message}{_LINEAR}"


@dataclass(frozen=True, slots=True)
class UserPattern:
    """A compiled user pattern; ``pattern`` is the text the user gave."""

    pattern: str
    compiled: re2._Regexp = field(repr=False, compare=False)

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in ``text``."""
        try:
            return self.compiled.search(text) is not None
        except UnicodeEncodeError:  # lone surrogates (from undecodable bytes)
            return self.compiled.search(text.encode("utf-8", "replace").decode("utf-8")) is not None

    def search_or_contains(self, text: str) -> bool:
        """Whether ``text`` holds the pattern as a plain substring, or it matches."""
        return self.pattern in text or self.search(text)


def compile_pattern(pattern: str) -> UserPattern:
    """Compile a user pattern with RE2; :class:`PatternError` says why one is refused."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"must be at most {MAX_PATTERN_LENGTH} characters")
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else b""
        message = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        raise PatternError(_reason(message)) from None
    except (UnicodeEncodeError, TypeError) as exc:
        raise PatternError(f"not a valid regular expression: {exc}{_LINEAR}") from None
    return UserPattern(pattern, compiled)
