"""WebSocket echo through the proxy: postcap (capture on) vs mitmdump vs direct, in one run.

    python tests/benchmarks/bench_websocket.py [--duration S] [--connections N]
        [--size BYTES] [--window N] [--text] [--json FILE]

An echo origin (the ``websockets`` package, asyncio, in a process of its own) on
127.0.0.1; a load client in another process opens ``--connections`` WebSockets
(through the proxy with CONNECT, as ``websockets`` does) and keeps ``--window``
messages of ``--size`` bytes in flight on each, for ``--duration`` seconds.  The
figure is echoed messages per second (each is two relayed messages: one up, one
down), with the proxy's CPU and peak RSS.  Systems, one after the other: direct,
postcap with a capture session running (every message stored), mitmdump with flow
capture (``-w FILE``).  Prints a table with postcap's ratios and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.support import (  # noqa: E402
    MitmdumpSystem,
    NginxOrigin,
    PostcapSystem,
    ProcessWatch,
    System,
    ensure_mitmdump,
    ensure_postcap_python,
    free_port,
    machine,
    print_table,
    stop_process,
    wait_for_port,
    write_json,
)

SYSTEMS = ["direct", "postcap", "mitmdump"]


# -- the origin and the load client (each run as a child process of this script) ---------------


async def _serve_echo(port: int) -> None:
    from websockets.asyncio.server import serve

    async def echo(connection: Any) -> None:
        async for message in connection:
            await connection.send(message)

    async with serve(echo, "127.0.0.1", port, compression=None, max_size=None, ping_interval=None):
        await asyncio.Future()


async def _load(uri: str, proxy: str | None, connections: int, size: int, window: int,
                duration: float, text: bool) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    payload: str | bytes = "x" * size if text else b"x" * size
    received = [0]

    async def one(deadline: float) -> None:
        async with connect(uri, proxy=proxy, compression=None, max_size=None,
                           ping_interval=None, open_timeout=30) as ws:
            for _ in range(window):
                await ws.send(payload)
            while True:
                await ws.recv()
                received[0] += 1
                if time.monotonic() >= deadline:
                    return
                await ws.send(payload)

    started = time.monotonic()
    # Counted up to the deadline; closing the connections (which may wait for the
    # messages still in flight) is not part of the figure.
    await asyncio.gather(*(one(started + duration) for _ in range(connections)))
    return {"messages_per_s": received[0] / duration, "messages": received[0]}


# -- the run ---------------------------------------------------------------------------------------


class EchoOrigin:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "EchoOrigin":
        # Quiet: connections reset when a proxy stops are no news.
        self.process = subprocess.Popen([sys.executable, __file__, "--origin", str(self.port)],
                                        stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)


def run_load(system: System, origin: EchoOrigin, args: argparse.Namespace) -> dict[str, Any]:
    uri = f"ws://127.0.0.1:{origin.port}/echo"
    proxy = f"http://127.0.0.1:{system.port}" if system.is_proxy else ""
    command = [sys.executable, __file__, "--load", uri, "--proxy", proxy,
               "--connections", str(args.connections), "--size", str(args.size),
               "--window", str(args.window), "--duration", str(args.duration)]
    if args.text:
        command.append("--text")
    watch = ProcessWatch(system.pid).start() if system.pid else None
    result = subprocess.run(command, capture_output=True, text=True, timeout=args.duration + 120)
    if result.returncode != 0:
        raise RuntimeError(f"load client failed: {result.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(result.stdout)
    if watch is not None:
        figures["proxy"] = watch.result()
    return figures


def stored_messages(postcap: PostcapSystem) -> int:
    """How many messages postcap's history holds (capture really was on)."""
    assert postcap.session is not None
    total = 0
    for item in postcap.server.requests(postcap.session["id"], limit=1000):
        if item["status"] == 101:
            total += postcap.server.rpc("request.messages", id=item["id"], limit=1)["total"]
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--window", type=int, default=8, help="messages in flight per connection")
    parser.add_argument("--text", action="store_true", help="text messages (default binary)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--origin", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--proxy", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.origin:
        asyncio.run(_serve_echo(args.origin))
        return 0
    if args.load:
        figures = asyncio.run(_load(args.load, args.proxy or None, args.connections, args.size,
                                    args.window, args.duration, args.text))
        print(json.dumps(figures))
        return 0
    ensure_postcap_python()
    ensure_mitmdump()
    results: dict[str, Any] = {"machine": machine(), "settings": {
        "duration_s": args.duration, "connections": args.connections, "size": args.size,
        "window": args.window, "text": args.text}}
    with EchoOrigin() as origin, NginxOrigin() as nginx:
        results["direct"] = run_load(System("direct"), origin, args)
        postcap = PostcapSystem("postcap", nginx, with_session=True)
        with postcap as system:
            results["postcap"] = run_load(system, origin, args)
            results["postcap"]["stored_messages"] = stored_messages(postcap)
        with MitmdumpSystem(nginx) as system:
            results["mitmdump"] = run_load(system, origin, args)
            results["mitmdump"]["version"] = system.info.get("version")
    rows = [
        {"figure": "echoed messages/s", "unit": "msg/s",
         "values": {name: results[name]["messages_per_s"] for name in SYSTEMS}},
        {"figure": "proxy CPU", "unit": "%",
         "values": {name: results[name].get("proxy", {}).get("cpu_percent") for name in SYSTEMS}},
        {"figure": "proxy peak RSS", "unit": "MiB",
         "values": {name: results[name].get("proxy", {}).get("rss_peak_mib") for name in SYSTEMS}},
    ]
    print_table(rows, SYSTEMS)
    print(f"postcap stored {results['postcap']['stored_messages']:,} messages; "
          f"load average {results['machine']['loadavg']}")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
