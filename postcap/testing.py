"""Test helpers shipped with postcap: factories for model objects and fakes.

``make_transaction()`` builds a realistic finished exchange (``GET
http://example.test/path`` answered ``200`` with a small JSON body, captured
bodies, timings); every field can be overridden by keyword.
``make_session()`` does the same for a :class:`~postcap.model.SessionRecord`.
:class:`MemorySink` is the reference in-memory capture sink and
:class:`MemoryHistoryStore` the reference in-memory history store (every
Deferred already fired: drive it with ``successResultOf`` under a ``Clock``).
"""

from __future__ import annotations

import os
import tempfile
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from postcap.filters import default_options
from postcap.model import (
    Address,
    Body,
    Headers,
    Request,
    Response,
    SessionRecord,
    TLSInfo,
    Timings,
    Transaction,
    new_id,
)
from postcap.sinks.memory import MemoryHistoryStore, MemorySink

__all__ = [
    "DEFAULT_SESSION_ID",
    "MemoryHistoryStore",
    "MemorySink",
    "body",
    "default_session_options",
    "make_session",
    "make_transaction",
    "spooled_body",
]

#: The session id ``make_transaction`` uses unless told otherwise.
DEFAULT_SESSION_ID = "test-session"

#: A fixed, exactly representable moment (2023-11-14T22:13:20Z).
DEFAULT_STARTED_AT = 1_700_000_000.0

_UNSET: Any = object()

_DEFAULT_PORTS = {"http": 80, "https": 443}


def body(data: bytes, *, captured: bool = True, truncated: bool = False) -> Body:
    """An in-memory body whose stored copy is ``data`` (size = ``len(data)``)."""
    return Body(size=len(data), captured=captured, truncated=truncated, content=data)


def spooled_body(data: bytes, directory: str | None = None) -> Body:
    """A captured body whose stored copy lives in a new spool file (blocking I/O).

    The caller deletes the file, e.g. with ``Transaction.discard_spools()``.
    """
    handle, path = tempfile.mkstemp(prefix="body-", dir=directory)
    with os.fdopen(handle, "wb") as spool:
        spool.write(data)
    return Body(size=len(data), captured=True, spool_path=path)


def _as_body(value: bytes | Body) -> Body:
    return value if isinstance(value, Body) else body(value)


def _default_request_headers(host: bytes, request_body: Body) -> Headers:
    headers: list[tuple[bytes, bytes]] = [
        (b"Host", host),
        (b"User-Agent", b"postcap-tests/1.0"),
        (b"Accept", b"*/*"),
    ]
    if request_body.size:
        headers.append((b"Content-Length", str(request_body.size).encode("ascii")))
    return tuple(headers)


def _default_response_headers(content_type: str, response_body: Body) -> Headers:
    headers: list[tuple[bytes, bytes]] = []
    if content_type:
        headers.append((b"Content-Type", content_type.encode("latin-1")))
    headers.append((b"Content-Length", str(response_body.size).encode("ascii")))
    return tuple(headers)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def make_transaction(
    *,
    id: str | None = None,
    session_id: str | None = DEFAULT_SESSION_ID,
    method: str = "GET",
    url: str = "http://example.test/path",
    status: int = 200,
    reason: str | None = None,
    request_body: bytes | Body = b"",
    response_body: bytes | Body = b'{"ok": true}',
    request_headers: Headers | None = None,
    response_headers: Headers | None = None,
    content_type: str = "application/json",
    http_version: str = "HTTP/1.1",
    started_at: float = DEFAULT_STARTED_AT,
    duration_ms: float = 42.5,
    error: str | None = None,
    with_response: bool | None = None,
    timings: Timings | None = None,
    tls: TLSInfo | None = _UNSET,
    client: Address | None = None,
    server: Address | None = None,
    kind: str = "http",
    request_trailers: Headers = (),
    response_trailers: Headers = (),
) -> Transaction:
    """A realistic finished transaction; keywords override each part.

    ``request_body``/``response_body`` take bytes (captured in memory) or a
    ready :class:`Body`.  Giving ``error`` drops the response unless
    ``with_response=True`` (a response cut short).  ``https`` URLs get an
    origin-form target and TLS details unless ``tls=None``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme or "http"
    host = parts.hostname or "example.test"
    port = parts.port or _DEFAULT_PORTS.get(scheme, 80)
    req_body = _as_body(request_body)
    resp_body = _as_body(response_body)
    target = url if scheme == "http" else (parts.path or "/") + (
        f"?{parts.query}" if parts.query else ""
    )
    request = Request(
        method=method,
        target=target.encode("latin-1"),
        http_version=http_version,
        headers=request_headers
        if request_headers is not None
        else _default_request_headers(parts.netloc.encode("latin-1"), req_body),
        body=req_body,
        trailers=request_trailers,
    )
    response = Response(
        status=status,
        reason=_reason(status) if reason is None else reason,
        http_version=http_version,
        headers=response_headers
        if response_headers is not None
        else _default_response_headers(content_type, resp_body),
        body=resp_body,
        trailers=response_trailers,
    )
    if with_response is None:
        with_response = error is None
    if tls is _UNSET:
        tls = TLSInfo(sni=host, version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256") if (
            scheme == "https"
        ) else None
    return Transaction(
        id=new_id() if id is None else id,
        session_id=session_id,
        started_at=started_at,
        duration_ms=duration_ms,
        url=url,
        scheme=scheme,
        client=client or Address("192.168.1.23", 52044),
        server=server or Address(host, port),
        request=request,
        response=response if with_response else None,
        error=error,
        timings=timings
        or Timings(
            connect_ms=3.0,
            tls_ms=5.25 if scheme == "https" else -1.0,
            send_ms=0.5,
            wait_ms=30.0,
            receive_ms=3.75,
        ),
        tls=tls,
        kind=kind,
    )


def default_session_options(
    name: str = "Proxy debug session", source: str = "proxy"
) -> dict[str, Any]:
    """The contract's default session options, with ``name`` and ``source`` set."""
    options = default_options()
    options.update(name=name, source=source)
    return options


def make_session(
    *,
    id: str | None = None,
    name: str = "Proxy debug session",
    source: str = "proxy",
    state: str = "running",
    started_at: float = DEFAULT_STARTED_AT,
    stopped_at: float | None = None,
    options: dict[str, Any] | None = None,
    request_count: int = 0,
    total_bytes: int = 0,
    last_activity: float | None = None,
) -> SessionRecord:
    """A session record (a fresh id unless given) with the default options."""
    return SessionRecord(
        id=new_id() if id is None else id,
        name=name,
        source=source,
        state=state,
        started_at=started_at,
        stopped_at=stopped_at,
        options=default_session_options(name, source) if options is None else options,
        request_count=request_count,
        total_bytes=total_bytes,
        last_activity=last_activity,
    )
