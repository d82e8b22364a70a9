"""Turn what the extension observed (a webRequest record) into a :class:`Transaction`.

The browser, not postcap, made the exchange, so some wire facts are absent:
response bodies (webRequest does not expose them; the size comes from
Content-Length when present), connect/TLS timings and the client address.
Header lists are what webRequest reports, which omits some wire headers.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlencode, urlsplit

from postcap.model import Address, Body, Headers, Request, Response, Timings, Transaction, new_id
from postcap.model import header_value

DEFAULT_PORTS = {"http": 80, "https": 443}
#: Where a browser-made exchange comes from (the extension gives no client address).
BROWSER_CLIENT = Address("browser", 0)


class BadRecord(ValueError):
    """A request record that lacks or garbles a required field."""


def _headers(value: Any, field: str) -> Headers:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadRecord(f"{field} must be a list of [name, value] pairs")
    pairs = []
    for item in value:
        if (not isinstance(item, list) or len(item) != 2
                or not all(isinstance(part, str) for part in item)):
            raise BadRecord(f"{field} must be a list of [name, value] pairs")
        pairs.append((item[0].encode("utf-8"), item[1].encode("utf-8")))
    return tuple(pairs)


def _number(record: dict[str, Any], field: str, default: float | None = None) -> float:
    value = record.get(field, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRecord(f"{field} must be a number")
    return float(value)


def _request_body(value: Any, limit: int) -> Body:
    """The request body as the extension saw it: raw bytes, or a parsed form."""
    if value is None:
        return Body()
    if not isinstance(value, dict):
        raise BadRecord("body must be an object")
    if "form" in value:
        form = value["form"]
        if not isinstance(form, dict):
            raise BadRecord("body.form must be an object")
        pairs = [(k, v) for k, values in form.items() for v in (values or [])]
        data = urlencode(pairs).encode("utf-8")
        return Body(size=len(data), captured=True, truncated=len(data) > limit,
                    content=data[:limit])
    try:
        data = base64.b64decode(value.get("base64") or "", validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadRecord("body.base64 is not base64") from exc
    size = value.get("size", len(data))
    if isinstance(size, bool) or not isinstance(size, int) or size < len(data):
        size = len(data)
    truncated = bool(value.get("truncated")) or len(data) > limit
    return Body(size=size, captured=True, truncated=truncated, content=data[:limit])


def _http_version(status_line: Any) -> str:
    if isinstance(status_line, str) and status_line.startswith("HTTP/"):
        return status_line.split(" ", 1)[0][len("HTTP/"):]
    return "1.1"


def _reason(status_line: Any) -> str:
    if isinstance(status_line, str):
        parts = status_line.split(" ", 2)
        if len(parts) == 3:
            return parts[2]
    return ""


def method_and_url(record: Any) -> tuple[str, str]:
    """The two fields a session's request filter needs, validated."""
    if not isinstance(record, dict):
        raise BadRecord("record must be an object")
    method, url = record.get("method"), record.get("url")
    if not isinstance(method, str) or not method:
        raise BadRecord("method must be a non-empty string")
    if not isinstance(url, str) or urlsplit(url).scheme not in DEFAULT_PORTS:
        raise BadRecord("url must be an http or https URL")
    return method.upper(), url


def transaction_from_record(
    record: dict[str, Any], session_id: str | None, body_limit: int
) -> Transaction:
    """Build the transaction for one finished browser exchange."""
    method, url = method_and_url(record)
    parts = urlsplit(url)
    started_ms = _number(record, "started")
    ended_ms = _number(record, "ended", started_ms)
    sent_ms = _number(record, "sent", started_ms)
    headers_ms = _number(record, "headers_received", ended_ms)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = Request(
        method=method,
        target=target.encode("utf-8"),
        http_version=_http_version(record.get("status_line")),
        headers=_headers(record.get("request_headers"), "request_headers"),
        body=_request_body(record.get("body"), body_limit),
    )
    response = None
    status = record.get("status")
    if status is not None:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
            raise BadRecord("status must be an HTTP status code")
        headers = _headers(record.get("response_headers"), "response_headers")
        length = header_value(headers, b"content-length")
        size = int(length) if length is not None and length.isdigit() else 0
        response = Response(
            status=status,
            reason=_reason(record.get("status_line")),
            http_version=_http_version(record.get("status_line")),
            headers=headers,
            body=Body(size=size, captured=False),
        )
    error = record.get("error")
    if error is not None and not isinstance(error, str):
        raise BadRecord("error must be a string")
    if response is None and error is None:
        error = "the browser reported no response"
    return Transaction(
        id=new_id(),
        session_id=session_id,
        started_at=started_ms / 1000.0,
        duration_ms=max(0.0, ended_ms - started_ms),
        url=url,
        scheme=parts.scheme,
        client=BROWSER_CLIENT,
        server=Address(parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme]),
        request=request,
        response=response,
        error=error,
        timings=Timings(
            send_ms=max(0.0, sent_ms - started_ms),
            wait_ms=max(0.0, headers_ms - sent_ms),
            receive_ms=max(0.0, ended_ms - headers_ms),
        ),
    )
