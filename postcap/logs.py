"""The server's log: twistd's text lines or one JSON object per line, never a secret.

twistd builds its log observer right after the plugin's ``makeService``, and
uses an :class:`~twisted.logger.ILogObserver` component of the application when
there is one; :class:`postcap.service.PostcapService` sets that component to
:func:`observer_for`'s observer, which writes where twistd would have (``--logfile``,
stdout with ``-n``, else ``twistd.log``).  Both formats go through
:class:`Redactor`: the control token and the values of ``Authorization``,
``Proxy-Authorization``, ``Cookie`` and ``Set-Cookie`` never reach the file.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from typing import Any, Callable, Iterable, Mapping, TextIO

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    formatEvent,
    formatTime,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from zope.interface import provider

LOG_FORMATS = ("text", "json")
REDACTED = "[redacted]"

#: A secret header's value, in ``Name: value``, ``name=value`` or ``(b'Name', b'value')``
#: form; the value runs to the end of the line or the closing quote.
_SECRET_HEADER = re.compile(
    r"""(?i)\b((?:proxy-)?authorization|set-cookie|cookie)(['"]?\s*[:=,]\s*(?:b(?=['"]))?['"]?)([^'"\r\n]+)""")
#: Credentials of an HTTP auth scheme wherever they appear (a word of 8+ token characters
#: with a digit or ``=`` in it, so that prose such as "basic authentication" stays).
_CREDENTIALS = re.compile(
    r"(?i)\b(bearer|basic|digest)\s+(?=[A-Za-z._~+/-]*[0-9=])[A-Za-z0-9._~+/=-]{8,}")

#: Keys of twisted.logger's own and of legacy (twisted.python.log) events.
_RESERVED = frozenset({"message", "format", "isError", "why", "failure", "time", "level",
                       "namespace", "system"})


_SECRET_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


def _is_secret_name(name: Any) -> bool:
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    return isinstance(name, str) and name.lower() in _SECRET_NAMES


class Redactor:
    """Replaces known secrets and secret header values in log text."""

    def __init__(self, secrets: Callable[[], Iterable[str]] = lambda: ()) -> None:
        self._secrets = secrets

    def text(self, text: str) -> str:
        for secret in self._secrets():
            if secret and secret in text:
                text = text.replace(secret, REDACTED)
        if "uth" in text or "ookie" in text or "UTH" in text or "OOKIE" in text:
            text = _SECRET_HEADER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        if " " in text:
            text = _CREDENTIALS.sub(lambda m: m.group(1) + " " + REDACTED, text)
        return text

    def value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.text(value.decode("latin-1"))
        if depth < 4 and isinstance(value, (list, tuple)):
            if len(value) == 2 and _is_secret_name(value[0]):
                return type(value)((self.value(value[0]), REDACTED))
            return type(value)(self.value(item, depth + 1) for item in value)
        if depth < 4 and isinstance(value, dict):
            return {key: self.value(item, depth + 1) for key, item in value.items()}
        return value

    def event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``event`` whose message renders without secrets."""
        clean: dict[str, Any] = {}
        for key, value in event.items():
            if key == "log_failure":
                continue  # its traceback goes into the text below, cleaned
            if key in ("log_logger", "log_source", "log_level", "log_time",
                       "log_namespace", "log_trace", "log_observer"):
                clean[key] = value
            else:
                clean[key] = self.value(value)
        # Render with the clean fields, then clean the result too (a field whose repr
        # carries a secret the patterns see only in context).
        text = formatEvent(clean)
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        clean["log_format"] = "{log_text}"
        clean["log_text"] = self.text(text)
        return clean


def json_line(event: Mapping[str, Any]) -> str:
    """One flat JSON object: ``time``, ``level``, ``namespace``, ``message`` and the
    event's own JSON-able fields."""
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": formatTime(event.get("log_time"), timeFormat="%Y-%m-%dT%H:%M:%S.%f%z"),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace", ""),
        "message": event.get("log_text") or formatEvent(event),
    }
    if event.get("system") not in (None, "-"):
        record["system"] = event["system"]
    for key, value in event.items():
        if key.startswith("log_") or key in _RESERVED:
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        record[key] = value
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def redacting(observer: ILogObserver, redactor: Redactor) -> ILogObserver:
    @provider(ILogObserver)
    def observe(event: Mapping[str, Any]) -> None:
        observer(redactor.event(event))

    return observe


def json_file_observer(out: TextIO) -> ILogObserver:
    return FileLogObserver(out, json_line)


def log_file(twistd_options: Mapping[str, Any]) -> TextIO:
    """Where twistd would write its log: ``--logfile`` (``-``: stdout), stdout in the
    foreground without ``--logfile``, else ``twistd.log`` (rotated on SIGUSR1, as
    twistd does)."""
    name = twistd_options.get("logfile") or ""
    if name == "-" or (twistd_options.get("nodaemon") and not name):
        return sys.stdout
    out = LogFile.fromFullPath(name or "twistd.log")
    if not signal.getsignal(signal.SIGUSR1):

        def rotate(signum: int, frame: object) -> None:
            from twisted.internet import reactor

            reactor.callFromThread(out.rotate)

        signal.signal(signal.SIGUSR1, rotate)
    return out  # type: ignore[return-value]


def observer_for(twistd_options: Mapping[str, Any] | None, log_format: str,
                 secrets: Callable[[], Iterable[str]]) -> ILogObserver | None:
    """The observer twistd should use, or None to leave twistd's own (no twistd
    options, as in tests, or ``--syslog`` with the text format)."""
    if twistd_options is None or (log_format == "text" and twistd_options.get("syslog")):
        return None
    out = log_file(twistd_options)
    inner = json_file_observer(out) if log_format == "json" else textFileLogObserver(out)
    return redacting(inner, Redactor(secrets))
