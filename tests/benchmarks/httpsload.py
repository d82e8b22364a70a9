"""A small HTTPS load client: worker processes speaking raw HTTP/1.1 over ``ssl`` sockets.

Through a proxy each connection is ``CONNECT host:port`` then TLS to the
proxy's intercepting certificate (trusted via the proxy's CA); direct, TLS to
the origin.  Two modes:

- ``keepalive``: each worker keeps one connection and sends requests back to back;
- ``newconn``: each request opens a new connection (TCP + CONNECT + TLS),
  sends ``Connection: close`` and closes, so an intercepting proxy does two
  TLS handshakes (client side and upstream) per request.

Every worker stops at a shared deadline; sockets have timeouts, so the run
is bounded in time.  Each worker reports its count, errors and latencies.
"""

from __future__ import annotations

import multiprocessing
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Callable

SOCKET_TIMEOUT = 10.0
JOIN_GRACE = SOCKET_TIMEOUT + 5.0


@dataclass(frozen=True)
class Target:
    host: str  # name the client asks for (CONNECT authority, SNI, Host)
    port: int
    path: str
    ca_cert: str  # what the client trusts: the proxy's CA, or the origin's when direct
    proxy_port: int | None = None  # None: direct


class ResponseError(Exception):
    pass


def _read_head(stream: Any) -> tuple[int, int | None]:
    status_line = stream.readline(65537)
    if not status_line:
        raise ResponseError("connection closed before a response")
    parts = status_line.split(None, 2)
    status = int(parts[1])
    length: int | None = None
    while True:
        line = stream.readline(65537)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return status, length


def _read_response(stream: Any) -> int:
    status, length = _read_head(stream)
    if length is None:
        raise ResponseError("response without Content-Length")
    remaining = length
    while remaining:
        chunk = stream.read(min(remaining, 262144))
        if not chunk:
            raise ResponseError("connection closed mid-body")
        remaining -= len(chunk)
    if status != 200:
        raise ResponseError(f"status {status}")
    return length


def _open(target: Target, context: ssl.SSLContext) -> tuple[ssl.SSLSocket, Any]:
    if target.proxy_port is None:
        raw = socket.create_connection(("127.0.0.1", target.port), timeout=SOCKET_TIMEOUT)
    else:
        raw = socket.create_connection(("127.0.0.1", target.proxy_port), timeout=SOCKET_TIMEOUT)
        try:
            authority = f"{target.host}:{target.port}"
            raw.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = raw.recv(4096)
                if not chunk or len(head) > 65536:
                    raise ResponseError("CONNECT: no response head")
                head += chunk
            if head.split(None, 2)[1] != b"200":
                raise ResponseError(f"CONNECT: {head.splitlines()[0]!r}")
        except BaseException:
            raw.close()
            raise
    try:
        tls = context.wrap_socket(raw, server_hostname=target.host)
    except BaseException:
        raw.close()
        raise
    return tls, tls.makefile("rb", buffering=65536)


def _client_context(ca_cert: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_cert)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _worker(target: Target, mode: str, start_at: float, deadline: float, results: Any) -> None:
    context = _client_context(target.ca_cert)
    close = mode == "newconn"
    request = (
        f"GET {target.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"User-Agent: postcap-bench\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    received = 0
    connection: tuple[ssl.SSLSocket, Any] | None = None
    delay = start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    while time.monotonic() < deadline:
        now = time.perf_counter()
        try:
            if connection is None:
                connection = _open(target, context)
            sock, stream = connection
            sock.sendall(request)
            received += _read_response(stream)
            latencies.append(time.perf_counter() - now)
            if close:
                stream.close()
                sock.close()
                connection = None
        except (OSError, ValueError, IndexError, ResponseError) as error:
            kind = type(error).__name__ + (f": {error}" if isinstance(error, ResponseError) else "")
            errors[kind] = errors.get(kind, 0) + 1
            if connection is not None:
                connection[1].close()
                connection[0].close()
                connection = None
            time.sleep(0.01)
    if connection is not None:
        connection[1].close()
        connection[0].close()
    results.put({"latencies": latencies, "errors": errors, "bytes": received})


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def run_load(
    target: Target,
    mode: str,
    workers: int,
    duration: float,
    on_tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Run ``workers`` processes for ``duration`` s; req/s, latency percentiles, errors."""
    assert mode in ("keepalive", "newconn")
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    start_at = time.monotonic() + 0.5
    deadline = start_at + duration
    processes = [
        ctx.Process(target=_worker, args=(target, mode, start_at, deadline, results), daemon=True)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    collected: list[dict[str, Any]] = []
    hard_stop = time.monotonic() + 0.5 + duration + JOIN_GRACE
    while len(collected) < workers and time.monotonic() < hard_stop:
        on_tick()
        try:
            collected.append(results.get(timeout=0.25))
        except Exception:  # queue.Empty
            continue
    for process in processes:
        process.join(max(0.1, hard_stop - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(5)
    latencies = sorted(value for result in collected for value in result["latencies"])
    errors: dict[str, int] = {}
    for result in collected:
        for kind, count in result["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    return {
        "mode": mode,
        "workers": workers,
        "duration_s": duration,
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / duration, 1),
        "p50_ms": None if p50 is None else round(p50 * 1000, 3),
        "p99_ms": None if p99 is None else round(p99 * 1000, 3),
        "errors": errors,
        "workers_reported": len(collected),
    }
