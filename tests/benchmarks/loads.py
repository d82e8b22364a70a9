"""The plain-HTTP loads of the suite: wrk through a proxy, big downloads, a slow reader, the soak.

wrk sends absolute-form targets (``GET http://127.0.0.1:PORT/1k``) from a Lua
script (``absolute.lua``); the same script works direct against nginx, which
accepts absolute-form too.  Every load is bounded in time.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.support import MIB, ProcessWatch, System, ensure_apt, rss_kib

LUA_SCRIPT = Path(__file__).with_name("absolute.lua")
SOCKET_TIMEOUT = 30.0


def wrk(
    system: System, origin_port: int, path: str, connections: int, duration: float, threads: int = 2
) -> dict[str, Any]:
    """wrk against ``system`` (a proxy, or nginx itself when direct); figures, proxy CPU/RSS."""
    ensure_apt("wrk")
    port = system.port if system.is_proxy else origin_port
    env = dict(
        os.environ,
        BENCH_TARGET=f"http://127.0.0.1:{origin_port}{path}",
        BENCH_HOST=f"127.0.0.1:{origin_port}",
    )
    command = [
        shutil.which("wrk") or "wrk",
        f"-t{threads}",
        f"-c{max(connections, threads)}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        f"http://127.0.0.1:{port}/",
    ]
    watch = ProcessWatch(system.pid).start()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + duration + 60
    while process.poll() is None and time.monotonic() < deadline:
        watch.sample()
        time.sleep(0.2)
    if process.poll() is None:
        process.kill()
    output = process.communicate(timeout=30)[0]
    figures: dict[str, Any] = {"connections": connections, "path": path}
    for line in output.splitlines():
        if line.startswith("JSON "):
            raw = json.loads(line[5:])
            seconds = raw["duration_us"] / 1e6
            answered = raw["requests"] > 0
            figures.update(
                {
                    "requests": raw["requests"],
                    "req_per_s": round(raw["requests"] / seconds, 1) if seconds else None,
                    "p50_ms": round(raw["p50_us"] / 1000, 3) if answered else None,
                    "p99_ms": round(raw["p99_us"] / 1000, 3) if answered else None,
                    "errors": {
                        key[7:]: value
                        for key, value in raw.items()
                        if key.startswith("errors_") and value
                    },
                }
            )
    if "requests" not in figures:
        figures["failure"] = output[-2000:]
    figures.update(watch.result())
    return figures


def _send_get(sock: socket.socket, origin_port: int, path: str, proxied: bool) -> None:
    target = f"http://127.0.0.1:{origin_port}{path}" if proxied else path
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n\r\n".encode())


def _read_head(stream: Any) -> int:
    status_line = stream.readline(65537)
    if not status_line.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected response {status_line!r}")
    length = None
    while (line := stream.readline(65537)) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError("no Content-Length")
    return length


def downloads(
    system: System, origin_port: int, count: int = 50, path: str = "/10m"
) -> dict[str, Any]:
    """``count`` sequential downloads on one keep-alive connection: total time, peak proxy RSS."""
    watch = ProcessWatch(system.pid).start()
    port = system.port if system.is_proxy else origin_port
    started = time.perf_counter()
    received = 0
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        stream = sock.makefile("rb", buffering=0)
        for _ in range(count):
            _send_get(sock, origin_port, path, system.is_proxy)
            remaining = _read_head(stream)
            chunks = 0
            while remaining:
                chunk = stream.read(min(remaining, 1 << 20))
                if not chunk:
                    raise RuntimeError("connection closed mid-body")
                remaining -= len(chunk)
                received += len(chunk)
                chunks += 1
                if chunks % 16 == 0:
                    watch.sample()
        stream.close()
    total = time.perf_counter() - started
    figures = {
        "downloads": count,
        "total_s": round(total, 3),
        "mib_per_s": round(received / MIB / total, 1),
    }
    figures.update(watch.result())
    return figures


def slow_reader(
    system: System, origin_port: int, path: str = "/10m", rate_mib_s: float = 2.0
) -> dict[str, Any]:
    """One client reading ``path`` at ~``rate_mib_s`` with a small receive buffer: RSS growth."""
    if not system.is_proxy:
        return {}
    before = rss_kib(system.pid) if system.pid else 0
    peak = before
    chunk_size = 64 * 1024
    interval = chunk_size / (rate_mib_s * MIB)
    started = time.perf_counter()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(SOCKET_TIMEOUT)
        sock.connect(("127.0.0.1", system.port or 0))
        stream = sock.makefile("rb", buffering=0)
        _send_get(sock, origin_port, path, True)
        remaining = _read_head(stream)
        next_read = time.perf_counter()
        while remaining:
            delay = next_read - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            next_read += interval
            chunk = stream.read(min(remaining, chunk_size))
            if not chunk:
                raise RuntimeError("connection closed mid-body")
            remaining -= len(chunk)
            if system.pid:
                peak = max(peak, rss_kib(system.pid))
        stream.close()
    finally:
        sock.close()
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "rss_before_mib": round(before / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
        "rss_growth_mib": round((peak - before) / 1024, 2),
    }


def soak(
    system: System,
    origin_port: int,
    total: int,
    step: int,
    connections: int = 10,
    path: str = "/1k",
    max_s: float = 3600.0,
) -> dict[str, Any]:
    """About ``total`` small requests in wrk runs of ~``step`` requests: proxy RSS after each.

    wrk stops by time, so each run's duration is sized from the rate so far;
    the last figure is at the actual count reached.  Bounded by ``max_s``.
    """
    assert system.pid is not None
    points: list[dict[str, Any]] = [
        {"requests": 0, "rss_mib": round(rss_kib(system.pid) / 1024, 1)}
    ]
    done = 0
    errors = 0
    rate = 1000.0
    started = time.perf_counter()
    deadline = time.monotonic() + max_s
    while done < total and time.monotonic() < deadline:
        seconds = max(1.0, min(step, total - done) / rate)
        result = wrk(system, origin_port, path, connections, seconds)
        if not result.get("requests"):
            points.append({"requests": done, "failure": result.get("failure", "")[-500:]})
            break
        done += result["requests"]
        rate = max(result["req_per_s"] or rate, 50.0)
        errors += sum(result["errors"].values())
        points.append(
            {
                "requests": done,
                "rss_mib": round(rss_kib(system.pid) / 1024, 1),
                "req_per_s": result["req_per_s"],
            }
        )
    rss = [point["rss_mib"] for point in points if "rss_mib" in point]
    return {
        "requests": done,
        "errors": errors,
        "seconds": round(time.perf_counter() - started, 1),
        "rss_start_mib": rss[0],
        "rss_end_mib": rss[-1],
        "rss_after_first_step_mib": rss[1] if len(rss) > 1 else rss[0],
        "points": points,
    }
