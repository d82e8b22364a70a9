"""A captured request as a command or snippet that sends it again (``request.export``).

Pure functions over the contract's transaction detail: method, URL, headers in their
captured order and case, and the body bytes.  Shell output quotes every argument the
way :func:`shlex.quote` does (single quotes survive any byte but NUL, newlines
included); bodies that are not text, or hold a NUL, travel as base64 decoded by
``base64 -d`` on a pipe.  Headers the HTTP tool would add on its own are switched
off, so that the origin receives what the client sent.  ``Content-Length`` stays in
its place (the stored body's length); ``Transfer-Encoding`` is left to the tool, as are
the proxy's own hop headers (``Proxy-Connection``, ``Proxy-Authorization``).
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

FORMATS = ("curl", "httpie", "python", "fetch")

#: Framing and proxy-hop headers the exporting tool sets (or must not send) itself.
_TOOL_MANAGED = frozenset({"content-length", "transfer-encoding", "proxy-connection",
                           "proxy-authorization"})
#: Headers curl sends unless told otherwise.
_CURL_DEFAULTS = ("User-Agent", "Accept")
#: Headers HTTPie sends unless told otherwise.
_HTTPIE_DEFAULTS = ("User-Agent", "Accept", "Accept-Encoding", "Connection")


class ExportError(ValueError):
    """The transaction cannot be exported (a blind tunnel, an unknown format)."""


@dataclass(frozen=True, slots=True)
class CapturedRequest:
    """What an export repeats."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    #: Why the body is not the one sent (truncated or not stored), or None.
    body_note: str | None
    http_version: str

    @property
    def body_is_text(self) -> bool:
        if b"\x00" in self.body:
            return False
        try:
            self.body.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    def sent_headers(self, keep_length: bool = True) -> list[tuple[str, str]]:
        """The headers to send, in order; ``Content-Length`` (given the stored body's
        length) stays in its place unless ``keep_length`` is false."""
        sent = []
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == "content-length" and keep_length:
                sent.append((name, str(len(self.body))))
            elif lowered not in _TOOL_MANAGED and not name.startswith(":"):  # no pseudo-headers
                sent.append((name, value))
        return sent

    def has_header(self, name: str) -> bool:
        return any(n.lower() == name.lower() for n, _ in self.headers)


def body_bytes(body: Mapping[str, Any] | None) -> bytes:
    """The stored bytes of a detail's ``body`` object."""
    if not body or not body.get("text"):
        return b""
    if body.get("encoding") == "base64":
        return base64.b64decode(body["text"])
    return str(body["text"]).encode("utf-8")


def captured_request(detail: Mapping[str, Any]) -> CapturedRequest:
    """The request of a transaction detail; :class:`ExportError` for a tunnel."""
    request = detail.get("request")
    if detail.get("kind") == "tunnel" or not request:
        raise ExportError("a blind tunnel has no request to export")
    body = request.get("body") or {}
    note = None
    if body.get("size") and not body.get("captured", True):
        note = f"the request body ({body['size']} bytes) was not stored; it is left out"
    elif body.get("truncated"):
        note = (f"the request body was truncated to {len(body_bytes(body))} "
                f"of {body.get('size')} bytes")
    return CapturedRequest(
        method=str(detail["method"]),
        url=str(detail["url"]),
        headers=tuple((str(n), str(v)) for n, v in request.get("headers") or ()),
        body=body_bytes(body) if body.get("captured", True) else b"",
        body_note=note,
        http_version=str(request.get("http_version") or "1.1"),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _shell(words: list[str]) -> str:
    return " ".join(shlex.quote(word) for word in words)


def _wire_text(text: str) -> str:
    """Header bytes are kept as latin-1 text; a shell passes arguments as UTF-8, so
    text whose bytes are valid UTF-8 is given as that (the same bytes on the wire)."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _pipe_base64(data: bytes, command: str) -> str:
    return f"printf %s {shlex.quote(_b64(data))} | base64 -d | {command}"


def _comment(request: CapturedRequest, prefix: str) -> str:
    return f"{prefix} postcap: {request.body_note}\n" if request.body_note else ""


def to_curl(request: CapturedRequest) -> str:
    """A curl command line (POSIX shell)."""
    words = ["curl", "--globoff", "--path-as-is"]
    has_body = bool(request.body)
    if request.method == "HEAD" and not has_body:
        words.append("--head")
    elif request.method != "GET" or has_body:
        words += ["--request", request.method]
    if request.http_version in ("2", "HTTP/2", "2.0"):
        words.append("--http2")
    elif request.http_version in ("1.0", "HTTP/1.0"):
        words.append("--http1.0")
    elif urlsplit(request.url).scheme == "https":
        words.append("--http1.1")
    words += ["--url", request.url]
    for name, value in request.sent_headers():
        words += ["--header", _wire_text(f"{name}: {value}" if value else f"{name};")]
    for name in _CURL_DEFAULTS:
        if not request.has_header(name):
            words += ["--header", f"{name}:"]
    if has_body and not request.has_header("Content-Type"):
        words += ["--header", "Content-Type:"]  # curl would add a form content type
    if has_body and not request.has_header("Expect"):
        words += ["--header", "Expect:"]
    if not has_body:
        return _comment(request, "#") + _shell(words)
    if request.body_is_text:
        return _comment(request, "#") + _shell(words + ["--data-raw", request.body.decode("utf-8")])
    return _comment(request, "#") + _pipe_base64(request.body, _shell(words + ["--data-binary", "@-"]))


def to_httpie(request: CapturedRequest) -> str:
    """An HTTPie command line (POSIX shell)."""
    words = ["http", "--print=hb"]
    items: list[str] = []
    for name, value in request.sent_headers():
        items.append(_wire_text(f"{name}:{value}" if value else f"{name};"))
    for name in _HTTPIE_DEFAULTS:
        if not request.has_header(name):
            items.append(f"{name}:")
    if request.body and request.body_is_text:
        words += ["--raw", request.body.decode("utf-8")]
    elif not request.body:
        words.append("--ignore-stdin")
    line = _shell(words + [request.method, request.url] + items)
    if request.body and not request.body_is_text:
        line = _pipe_base64(request.body, line)
    return _comment(request, "#") + line


def to_python(request: CapturedRequest) -> str:
    """A Python script on the standard library's ``http.client`` (headers exactly as
    captured: no added ``Host``, ``Accept-Encoding`` or ``User-Agent``)."""
    parts = urlsplit(request.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = "HTTPSConnection" if parts.scheme == "https" else "HTTPConnection"
    tls = ", context=ssl.create_default_context()" if parts.scheme == "https" else ""
    if request.body_is_text:
        body = f"{request.body.decode('utf-8')!r}.encode('utf-8')"
    else:
        body = f"base64.b64decode({_b64(request.body)!r})"
    sent = request.sent_headers()
    if request.body and not request.has_header("Content-Length"):
        sent.append(("Content-Length", str(len(request.body))))
    headers = ",\n".join(f"    ({n!r}, {v!r})" for n, v in sent)
    skip_host = ", skip_host=True" if request.has_header("Host") else ""
    return (
        _comment(request, "#")
        + "import base64\nimport http.client\nimport ssl\n\n"
        + f"headers = [\n{headers}{',' if headers else ''}\n]\n"
        + f"body = {body}\n"
        + f"connection = http.client.{connection}({parts.hostname!r}, {parts.port!r}{tls})\n"
        + f"connection.putrequest({request.method!r}, {target!r}{skip_host}, "
        + "skip_accept_encoding=True)\n"
        + "for name, value in headers:\n    connection.putheader(name, value)\n"
        + "connection.endheaders(body or None)\n"
        + "response = connection.getresponse()\n"
        + "print(response.status, response.reason)\n"
        + "print(response.read().decode('utf-8', 'replace'))\n"
    )


def to_fetch(request: CapturedRequest) -> str:
    """A JavaScript ``fetch`` call (browsers drop forbidden headers such as ``Host``;
    Node.js sends them)."""
    init: list[str] = [f"  method: {json.dumps(request.method)}"]
    headers = request.sent_headers(keep_length=False)
    if headers:
        pairs = ",\n".join(f"    [{json.dumps(n)}, {json.dumps(v)}]" for n, v in headers)
        init.append(f"  headers: [\n{pairs}\n  ]")
    if request.body and request.body_is_text:
        init.append(f"  body: {json.dumps(request.body.decode('utf-8'))}")
    elif request.body:
        init.append(
            f"  body: Uint8Array.from(atob({json.dumps(_b64(request.body))}), c => c.charCodeAt(0))"
        )
    return (
        _comment(request, "//")
        + f"const response = await fetch({json.dumps(request.url)}, {{\n"
        + ",\n".join(init)
        + "\n});\nconsole.log(response.status, await response.text());\n"
    )


_RENDERERS: dict[str, Callable[[CapturedRequest], str]] = {
    "curl": to_curl,
    "httpie": to_httpie,
    "python": to_python,
    "fetch": to_fetch,
}


def export_request(detail: Mapping[str, Any], format: str) -> str:
    """The detail's request in ``format`` (one of :data:`FORMATS`)."""
    renderer = _RENDERERS.get(format)
    if renderer is None:
        raise ExportError(f"unknown format {format!r}; one of {', '.join(FORMATS)}")
    return renderer(captured_request(detail))


__all__ = ["CapturedRequest", "ExportError", "FORMATS", "body_bytes", "captured_request",
           "export_request", "to_curl", "to_fetch", "to_httpie", "to_python"]
