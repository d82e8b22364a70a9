"""Postman Collection v2.1.0 from captured transactions.

Each captured request becomes an item (method, URL object, headers, body in the right
mode) with its response as a saved example.  Folders, when asked for:

- ``["domain"]``: one folder per host (``api.example.com``, or ``host:port`` when the
  port is not the scheme's default);
- ``["endpoint"]``: one item per method and endpoint template instead of one per
  request (see :mod:`postcap.export.postman_endpoints`);
- ``["domain", "endpoint"]``: endpoint items inside domain folders.

:func:`endpoint_label` names the endpoint of one request with the same templates
(``GET /users/17?page=2`` → ``GET /users/:userId``).

Bodies sent with a ``Content-Encoding`` are decoded (Postman shows and sends plain
bodies): the request then leaves its ``Content-Encoding`` header out; a body that
cannot be decoded stays as sent.
"""

from __future__ import annotations

import base64
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit

from postcap.apispec.templates import PathLearner, render, split_path
from postcap.encodings import decoded_json

SCHEMA_URL = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
ORGANIZE_CHOICES = ([], ["domain"], ["endpoint"], ["domain", "endpoint"])

_RAW_LANGUAGES = (("json", "json"), ("xml", "xml"), ("html", "html"), ("javascript", "javascript"))


def _header_list(headers: Sequence[Sequence[str]]) -> list[dict[str, str]]:
    return [{"key": name, "value": value} for name, value in headers]


def _header(headers: Sequence[Sequence[str]], name: str) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value
    return ""


def _readable(body: dict[str, Any]) -> dict[str, Any]:
    """The body to show: its decoded form when it has one, else the body as sent."""
    decoded = decoded_json(body)
    return body if decoded is None or "error" in decoded else decoded


def _body_bytes(body: dict[str, Any]) -> bytes:
    text = body.get("text") or ""
    if body.get("encoding") == "base64":
        return base64.b64decode(text)
    return text.encode("utf-8")


def host_label(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = 443 if parts.scheme == "https" else 80
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def endpoint_label(method: str, url: str) -> str:
    """``METHOD /template`` of one request, Postman style (``GET /users/:userId``)."""
    template = PathLearner().template("", split_path(urlsplit(url).path or "/"))
    return f"{method} {render(template, style='postman')}"


def folders_for(detail: dict[str, Any], organize_by: Sequence[str]) -> list[str]:
    """The folders of a chronological item (endpoint items are placed by their own module)."""
    return [host_label(detail["url"])] if "domain" in organize_by else []


def url_object(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    result: dict[str, Any] = {
        "raw": url,
        "protocol": parts.scheme,
        "host": (parts.hostname or "").split("."),
        "path": [segment for segment in parts.path.split("/")[1:]] if parts.path else [],
    }
    if parts.port is not None:
        result["port"] = str(parts.port)
    if parts.query:
        result["query"] = [{"key": k, "value": v} for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return result


def request_body(request: dict[str, Any], body: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The Postman body: urlencoded, formdata, or raw (with its language).

    ``body``: the request's body as shown (decoded); by default worked out here."""
    if not request["body"]["size"] or not request["body"]["captured"]:
        return None
    body = _readable(request["body"]) if body is None else body
    data = _body_bytes(body)
    content_type = _header(request["headers"], "content-type")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        pairs = parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True)
        return {"mode": "urlencoded", "urlencoded": [{"key": k, "value": v, "type": "text"} for k, v in pairs]}
    if media == "multipart/form-data":
        fields = _multipart_fields(content_type, data)
        if fields is not None:
            return {"mode": "formdata", "formdata": fields}
    text = data.decode("utf-8", "replace") if body.get("encoding") != "base64" else body["text"]
    language = next((lang for needle, lang in _RAW_LANGUAGES if needle in media), "text")
    raw: dict[str, Any] = {"mode": "raw", "raw": text, "options": {"raw": {"language": language}}}
    return raw


def _multipart_fields(content_type: str, data: bytes) -> list[dict[str, Any]] | None:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + data
    )
    if not message.is_multipart():
        return None
    fields: list[dict[str, Any]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        filename = part.get_filename()
        if filename:
            fields.append({"key": str(name), "type": "file", "src": filename})
        else:
            payload = part.get_payload(decode=True) or b""
            fields.append({"key": str(name), "value": payload.decode("utf-8", "replace"), "type": "text"})
    return fields


def request_object(detail: dict[str, Any]) -> dict[str, Any]:
    request = detail["request"]
    headers, shown = request["headers"], _readable(request["body"])
    if shown is not request["body"]:  # the body is given decoded
        headers = [pair for pair in headers if pair[0].lower() != "content-encoding"]
    result: dict[str, Any] = {
        "method": detail["method"],
        "header": _header_list(headers),
        "url": url_object(detail["url"]),
    }
    body = request_body(request, shown)
    if body is not None:
        result["body"] = body
    return result


def response_example(detail: dict[str, Any], request: dict[str, Any]) -> dict[str, Any] | None:
    response = detail.get("response")
    if response is None:
        return None
    body = _readable(response["body"])
    captured = response["body"]["captured"]
    example: dict[str, Any] = {
        "name": f"{response['status']} {response['reason']}".strip(),
        "originalRequest": request,
        "status": response["reason"] or str(response["status"]),
        "code": response["status"],
        "header": _header_list(response["headers"]),
        # Binary bodies (base64 in the detail) cannot be a Postman example body.
        "body": (body.get("text") or "") if captured and body.get("encoding") != "base64" else "",
    }
    media = _header(response["headers"], "content-type").split(";", 1)[0].strip().lower()
    language = next((lang for needle, lang in _RAW_LANGUAGES if needle in media), None)
    if language:
        example["_postman_previewlanguage"] = language
    return example


def item_from_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """A Postman item for one captured transaction (its response as an example)."""
    request = request_object(detail)
    parts = urlsplit(detail["url"])
    item: dict[str, Any] = {
        "name": f"{detail['method']} {parts.path or '/'}",
        "request": request,
        "response": [],
    }
    example = response_example(detail, request)
    if example is not None:
        item["response"].append(example)
    return item


def collection_document(
    collection_id: str, name: str, entries: Iterable[tuple[Sequence[str], dict[str, Any]]]
) -> dict[str, Any]:
    """The whole v2.1.0 collection; ``entries`` are (folder path, item) in order."""
    root: list[dict[str, Any]] = []
    folders: dict[tuple[str, ...], list[dict[str, Any]]] = {(): root}
    for path, item in entries:
        parent: tuple[str, ...] = ()
        for folder in path:
            key = parent + (folder,)
            if key not in folders:
                children: list[dict[str, Any]] = []
                folders[parent].append({"name": folder, "item": children})
                folders[key] = children
            parent = key
        folders[parent].append(item)
    return {
        "info": {
            "_postman_id": str(uuid.UUID(hex=collection_id.ljust(32, "0")[:32]))
            if all(c in "0123456789abcdef" for c in collection_id) else str(uuid.uuid4()),
            "name": name,
            "schema": SCHEMA_URL,
            "description": "Captured with postcap",
        },
        "item": root,
    }


__all__ = [
    "ORGANIZE_CHOICES",
    "collection_document",
    "endpoint_label",
    "folders_for",
    "host_label",
    "item_from_detail",
]
