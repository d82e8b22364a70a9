"""One transaction detail (the contract's shape) as what API inference needs: origin,
path, query, headers, status, and bodies decoded and parsed (JSON, form, multipart)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from postcap.apispec.templates import split_path
from postcap.encodings import decoded_json
from postcap.apispec.values import typed_text



@dataclass(slots=True)
class ParsedBody:
    media_type: str
    #: JSON value, a form as a dict, or None when the body is not structured
    value: Any
    structured: bool
    #: multipart field names that carried files
    files: tuple[str, ...] = ()


@dataclass(slots=True)
class Observation:
    id: str
    method: str
    origin: str
    host: str
    path: str
    segments: tuple[str, ...]
    query: list[tuple[str, str]]
    request_headers: list[list[str]]
    #: a :class:`RawBody` until :meth:`parse_bodies`
    request_body: ParsedBody | RawBody | None
    status: int | None
    response_headers: list[list[str]]
    response_body: ParsedBody | RawBody | None

    def parse_bodies(self) -> None:
        """Parse bodies still raw (observations made with ``parse=False``)."""
        if isinstance(self.request_body, RawBody):
            self.request_body = self.request_body.parse()
        if isinstance(self.response_body, RawBody):
            self.response_body = self.response_body.parse()

    def secrets(self) -> frozenset[str]:
        """The credential values this transaction carried (see
        :func:`postcap.apispec.redact.known_secrets`)."""
        from postcap.apispec.redact import known_secrets

        body = self.request_body
        form = body.value if isinstance(body, ParsedBody) and isinstance(body.value, dict) else None
        return known_secrets(self.request_headers, self.response_headers, self.query, form)


def header(headers: list[list[str]], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decoded_content(body: dict[str, Any]) -> bytes | None:
    """The body's content with any ``Content-Encoding`` undone (the store's decoded copy,
    see :func:`postcap.encodings.decoded_json`); None when it was not stored whole or
    does not decode."""
    if not body.get("captured") or body.get("truncated") or body.get("text") is None:
        return None
    decoded = decoded_json(body)
    if decoded is None:
        return _text_bytes(body)
    if "error" in decoded or decoded.get("truncated") or decoded.get("text") is None:
        return None
    return _text_bytes(decoded)


def _text_bytes(body: dict[str, Any]) -> bytes:
    text = body["text"]
    return base64.b64decode(text) if body.get("encoding") == "base64" else text.encode("utf-8")


@dataclass(slots=True)
class RawBody:
    """A body read but not yet parsed (cheap to send between processes)."""

    media_type: str
    content_type: str | None
    #: the decoded content, or None when it was not stored whole
    data: bytes | None

    def parse(self) -> ParsedBody:
        media, data = self.media_type, self.data
        if data is None:
            return ParsedBody(media, None, False)
        if media == "application/json" or media.endswith("+json"):
            try:
                return ParsedBody(media, json.loads(data), True)
            except (ValueError, RecursionError):
                return ParsedBody(media, None, False)
        if media == "application/x-www-form-urlencoded":
            pairs = parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True)
            return ParsedBody(media, {k: typed_text(v) for k, v in pairs}, True)
        if media == "multipart/form-data" and self.content_type:
            return _multipart(media, self.content_type, data)
        return ParsedBody(media, None, False)


def raw_body(body: dict[str, Any] | None, headers: list[list[str]]) -> RawBody | None:
    """The body's media type and decoded content; None when empty."""
    if body is None or not body.get("size"):
        return None
    content_type = header(headers, "content-type")
    return RawBody(media_type(content_type) or "application/octet-stream", content_type,
                   decoded_content(body))


def parse_body(body: dict[str, Any] | None, headers: list[list[str]]) -> ParsedBody | None:
    """The body as JSON, a form, a multipart form, or unstructured; None when empty."""
    raw = raw_body(body, headers)
    return None if raw is None else raw.parse()


def _multipart(media: str, content_type: str, data: bytes) -> ParsedBody:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + data
    )
    if not message.is_multipart():
        return ParsedBody(media, None, False)
    fields: dict[str, Any] = {}
    files: list[str] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        if part.get_filename():
            files.append(str(name))
            fields[str(name)] = ""
        else:
            payload = part.get_payload(decode=True) or b""
            fields[str(name)] = typed_text(payload.decode("utf-8", "replace"))
    return ParsedBody(media, fields, True, tuple(files))


def origin_of(scheme: str, host: str, port: int | None) -> str:
    default = 443 if scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + ("" if port in (None, default) else f":{port}")


def observe(detail: dict[str, Any], parse: bool = True) -> Observation | None:
    """The observation of one detail; None for blind tunnels and unparseable URLs.
    With ``parse=False`` bodies stay :class:`RawBody` (parse them with
    :meth:`Observation.parse_bodies`)."""
    read = parse_body if parse else raw_body
    if detail.get("kind") == "tunnel":
        return None
    try:
        parts = urlsplit(detail["url"])
        port, hostname = parts.port, parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not hostname:
        return None
    request = detail["request"]
    response = detail.get("response")
    origin = origin_of(parts.scheme, hostname, port)
    response_headers = response["headers"] if response else []
    path = parts.path or "/"
    return Observation(
        id=detail["id"],
        method=detail["method"].upper(),
        origin=origin,
        host=origin.split("://", 1)[1],
        path=path,
        segments=split_path(path),
        query=parse_qsl(parts.query, keep_blank_values=True) if parts.query else [],
        request_headers=request["headers"],
        request_body=read(request.get("body"), request["headers"]),
        status=response["status"] if response else None,
        response_headers=response_headers,
        response_body=read(response.get("body"), response_headers) if response else None,
    )


__all__ = ["Observation", "ParsedBody", "RawBody", "raw_body", "decoded_content", "header", "media_type", "observe",
           "origin_of", "parse_body"]
