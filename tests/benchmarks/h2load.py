"""An HTTP/2 load client through an HTTP proxy's CONNECT (h2load cannot use a proxy).

Each connection: CONNECT, TLS with ALPN h2 trusting the proxy's CA, then
``streams`` requests in flight at all times, for ``duration`` seconds.
Connections are spread over ``processes`` worker processes (one asyncio loop
each) so that the client is not the bottleneck on a small machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import ssl
import time
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.events


@dataclass(frozen=True)
class H2Target:
    host: str
    port: int
    path: str
    ca_cert: str
    proxy_port: int


async def _connection(target: H2Target, streams: int, deadline: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", target.proxy_port)
    authority = f"{target.host}:{target.port}"
    writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode("ascii"))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"CONNECT refused: {head[:80]!r}")
    context = ssl.create_default_context(cafile=target.ca_cert)
    context.set_alpn_protocols(["h2"])
    await writer.start_tls(context, server_hostname=target.host)
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    connection.initiate_connection()
    connection.increment_flow_control_window(16 * 1024 * 1024)
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority.encode()),
              (b":path", target.path.encode())]
    started: dict[int, float] = {}
    done = 0

    def send_one() -> None:
        stream_id = connection.get_next_available_stream_id()
        connection.send_headers(stream_id, fields, end_stream=True)
        started[stream_id] = time.perf_counter()

    for _ in range(streams):
        send_one()
    writer.write(connection.data_to_send())
    while started:
        data = await reader.read(65536)
        if not data:
            break
        for event in connection.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                began = started.pop(event.stream_id, None)
                if began is not None:
                    latencies.append(time.perf_counter() - began)
                    done += 1
                    if time.perf_counter() < deadline:
                        send_one()
            elif isinstance(event, h2.events.StreamReset):
                started.pop(event.stream_id, None)
        writer.write(connection.data_to_send())
    connection.close_connection()
    writer.write(connection.data_to_send())
    writer.close()
    return done


async def _worker_main(target: H2Target, connections: int, streams: int, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    deadline = time.perf_counter() + duration
    results = await asyncio.gather(
        *(_connection(target, streams, deadline, latencies) for _ in range(connections)),
        return_exceptions=True,
    )
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return {"requests": sum(r for r in results if isinstance(r, int)), "latencies": latencies, "errors": errors}


def _worker(args: tuple[H2Target, int, int, float]) -> dict[str, Any]:
    return asyncio.run(_worker_main(*args))


def run_h2_load(
    target: H2Target, connections: int = 10, streams: int = 10, duration: float = 5.0, processes: int = 2
) -> dict[str, Any]:
    """req/s and latency percentiles of ``connections`` × ``streams`` through the proxy."""
    shares = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(_worker, [(target, share, streams, duration) for share in shares if share])
    elapsed = time.perf_counter() - started
    latencies = sorted(x for part in parts for x in part["latencies"])
    requests = sum(part["requests"] for part in parts)

    def percentile(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000, 2)

    return {
        "connections": connections,
        "streams": streams,
        "requests": requests,
        "req_per_s": round(requests / max(duration, 1e-9), 1),
        "elapsed_s": round(elapsed, 2),
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "errors": [e for part in parts for e in part["errors"]][:5],
    }
