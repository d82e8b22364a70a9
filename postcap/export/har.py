"""HAR 1.2 from captured transactions (pages-less: ``log.entries`` only).

One entry per HTTP exchange, in capture order; blind tunnels (``--ignore-hosts``)
have no HTTP content and are left out.  Exchanges that ended without a response get
``status: 0`` and the error in ``response._error``.  Bodies: ``postData.text`` for
requests, ``content.text`` for responses, base64 with ``encoding: "base64"`` when not
UTF-8; bodies not stored (media, ``save_responses: false``) have no ``text``.
A response sent with a ``Content-Encoding`` has its decoded body in ``content.text``
(HAR 1.2), ``content.size`` is the decoded size and ``content.compression`` what the
coding saved; one that cannot be decoded keeps the bytes as sent and says why in
``content._decodeError``.  Request bodies (``postData``) stay as sent.
Timings map postcap's phases (``ssl`` is included in ``connect``, as HAR says).
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qsl, urlsplit

from postcap.export.websocket import add_websocket_messages
from postcap._version import __version__
from postcap.cookies import parse_cookie_header, parse_set_cookies
from postcap.encodings import decoded_json
from postcap.model import is_ip_literal

CREATOR = {"name": "postcap", "version": __version__}
EXPORT_PAGE = 200


def _headers(pairs: list[list[str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs]


def _header(pairs: list[list[str]], name: str) -> str:
    for key, value in pairs:
        if key.lower() == name:
            return value
    return ""


def _ms(value: float) -> float:
    return round(value, 3) if value >= 0 else -1


def _request_cookies(headers: list[list[str]]) -> list[dict[str, Any]]:
    return [{"name": n, "value": v}
            for key, value in headers if key.lower() == "cookie"
            for n, v in parse_cookie_header(value)]


def _response_cookies(headers: list[list[str]], url: str, now: float) -> list[dict[str, Any]]:
    cookies = []
    set_cookies = [value for key, value in headers if key.lower() == "set-cookie"]
    for cookie in parse_set_cookies(set_cookies, url, now):
        entry: dict[str, Any] = {"name": cookie.name, "value": cookie.value, "path": cookie.path,
                                 "domain": cookie.domain, "httpOnly": cookie.http_only,
                                 "secure": cookie.secure}
        expires = cookie.to_json()["expires"]
        if expires is not None:
            entry["expires"] = expires
        cookies.append(entry)
    return cookies


def entry_from_detail(detail: dict[str, Any]) -> dict[str, Any] | None:
    """The HAR entry of a transaction detail, or None for a blind tunnel."""
    if detail.get("kind") == "tunnel":
        return None
    request = detail["request"]
    url = detail["url"]
    started = _epoch(detail["started_at"])
    body = request["body"]
    har_request: dict[str, Any] = {
        "method": detail["method"],
        "url": url,
        "httpVersion": request["http_version"],
        "cookies": _request_cookies(request["headers"]),
        "headers": _headers(request["headers"]),
        "queryString": [{"name": k, "value": v}
                        for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)],
        "headersSize": -1,
        "bodySize": body["size"],
    }
    if body["size"]:
        mime = _header(request["headers"], "content-type") or "application/octet-stream"
        post: dict[str, Any] = {"mimeType": mime, "text": body.get("text") or ""}
        if body.get("encoding") == "base64":
            post["_encoding"] = "base64"
        if mime.split(";")[0].strip().lower() == "application/x-www-form-urlencoded" \
                and body.get("encoding") == "utf-8":
            post["params"] = [{"name": k, "value": v}
                              for k, v in parse_qsl(post["text"], keep_blank_values=True)]
        har_request["postData"] = post
    if request.get("trailers"):
        har_request["_trailers"] = _headers(request["trailers"])
    response = detail.get("response")
    if response is None:
        har_response: dict[str, Any] = {
            "status": 0, "statusText": "", "httpVersion": request["http_version"],
            "cookies": [], "headers": [], "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "", "headersSize": -1, "bodySize": -1,
            "_error": detail.get("error") or "no response",
        }
    else:
        rbody = response["body"]
        content: dict[str, Any] = {
            "size": rbody["size"],
            "mimeType": _header(response["headers"], "content-type") or "x-unknown",
        }
        if rbody["captured"] and rbody.get("text") is not None:
            content.update(_content_text(rbody))
        har_response = {
            "status": response["status"],
            "statusText": response["reason"],
            "httpVersion": response["http_version"],
            "cookies": _response_cookies(response["headers"], url, started),
            "headers": _headers(response["headers"]),
            "content": content,
            "redirectURL": _header(response["headers"], "location"),
            "headersSize": -1,
            "bodySize": rbody["size"],
        }
        if response.get("trailers"):
            har_response["_trailers"] = _headers(response["trailers"])
        if detail.get("error"):
            har_response["_error"] = detail["error"]
    timings = detail["timings"]
    connect, tls = _ms(timings["connect_ms"]), _ms(timings["tls_ms"])
    har_timings = {
        "blocked": -1,
        "dns": -1,
        "connect": -1 if connect < 0 else round(connect + max(tls, 0), 3),
        "ssl": tls,
        "send": max(0.0, _ms(timings["send_ms"])),
        "wait": max(0.0, _ms(timings["wait_ms"])),
        "receive": max(0.0, _ms(timings["receive_ms"])),
    }
    entry: dict[str, Any] = {
        "startedDateTime": detail["started_at"],
        "time": round(detail["duration_ms"], 3),
        "request": har_request,
        "response": har_response,
        "cache": {},
        "timings": har_timings,
        "_postcap": {"id": detail["id"], "session_id": detail["session_id"]},
    }
    add_websocket_messages(entry, detail)
    server = detail.get("server") or {}
    if is_ip_literal(server.get("host", "")):
        entry["serverIPAddress"] = server["host"]
    return entry


def _content_text(body: dict[str, Any]) -> dict[str, Any]:
    """``content``'s text fields for a stored response body, decoded where it was
    sent with a Content-Encoding."""
    decoded = decoded_json(body)
    shown = body if decoded is None or "error" in decoded else decoded
    fields: dict[str, Any] = {"text": shown["text"]}
    if shown["encoding"] == "base64":
        fields["encoding"] = "base64"
    if decoded is not None and "error" in decoded:
        fields["_decodeError"] = decoded["error"]
        fields["comment"] = f"not decoded ({decoded['error']}): the body as sent"
    elif decoded is not None:
        # The decoded size; a decoded copy cut short is known to be at least that big.
        cut = decoded["truncated"]
        fields["size"] = max(body["size"], decoded["size"]) if cut else decoded["size"]
        if decoded["size"] > body["size"]:
            fields["compression"] = decoded["size"] - body["size"]
    if body.get("truncated") or shown.get("truncated"):
        fields.setdefault("comment", "truncated by postcap's --max-capture-body")
    return fields


def _epoch(iso: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def har_document(entries: list[dict[str, Any]], comment: str = "") -> dict[str, Any]:
    log: dict[str, Any] = {"version": "1.2", "creator": CREATOR, "entries": entries}
    if comment:
        log["comment"] = comment
    return {"log": log}


async def har_chunks(
    session_name: str,
    fetch_page: Callable[[int, int], Awaitable[tuple[int, list[dict[str, Any]]]]],
) -> AsyncIterator[bytes]:
    """The HAR document as JSON text, a page of entries at a time (never whole in memory).

    ``fetch_page(after, limit)`` returns ``(next_after, details)`` (see
    :meth:`postcap.sinks.history.SQLiteHistoryStore.details_after`).
    """
    head = json.dumps(har_document([], f"postcap session {session_name}"))
    prefix, _, suffix = head.rpartition('"entries": []')
    yield (prefix + '"entries": [').encode("utf-8")
    after, first = 0, True
    while True:
        after, details = await fetch_page(after, EXPORT_PAGE)
        if not details:
            break
        pieces = []
        for detail in details:
            entry = entry_from_detail(detail)
            if entry is not None:
                pieces.append(("" if first else ",") + json.dumps(entry))
                first = False
        if pieces:
            yield "".join(pieces).encode("utf-8")
    yield ("]" + suffix).encode("utf-8")


async def har_entries(
    fetch_page: Callable[[int, int], Awaitable[tuple[int, list[dict[str, Any]]]]],
) -> list[dict[str, Any]]:
    """Every entry, in order (for ``session.export``, which answers in one object)."""
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        after, details = await fetch_page(after, EXPORT_PAGE)
        if not details:
            return entries
        entries.extend(e for e in map(entry_from_detail, details) if e is not None)


__all__ = ["CREATOR", "entry_from_detail", "har_chunks", "har_document", "har_entries"]
