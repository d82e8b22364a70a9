"""A load client for end-to-end tests, run as a subprocess (its own CPU, not the test's).

    python tests/load_client.py PROXY_PORT ORIGIN_AUTHORITY CLIENTS REQUESTS [TAG]

Opens CLIENTS keep-alive connections to the proxy at once; each sends REQUESTS
``GET http://ORIGIN/echo?tag=TAG&c=C&r=R`` one after the other on its connection and
checks that the answer is a 200 whose body echoes exactly that query.  Prints one
JSON line: ``{"ok": n, "failures": [...first few...], "elapsed_s": t}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def _client(port: int, origin: str, tag: str, number: int, requests: int,
                  failures: list[str]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ok = 0
    try:
        for index in range(requests):
            query = f"tag={tag}&c={number}&r={index}"
            writer.write(f"GET http://{origin}/echo?{query} HTTP/1.1\r\nHost: {origin}\r\n\r\n".encode())
            status = await reader.readline()
            length = -1
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length >= 0 else b""
            if not status.startswith(b"HTTP/1.1 200") or json.loads(body)["path"] != f"/echo?{query}":
                failures.append(f"{query}: {status!r} {body[:80]!r}")
                return ok
            ok += 1
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        failures.append(f"client {number}: {exc!r}")
    finally:
        writer.close()
    return ok


async def main(port: int, origin: str, clients: int, requests: int, tag: str) -> None:
    failures: list[str] = []
    started = time.monotonic()
    results = await asyncio.gather(*(_client(port, origin, tag, c, requests, failures) for c in range(clients)))
    print(json.dumps({"ok": sum(results), "failures": failures[:5], "elapsed_s": time.monotonic() - started}))


if __name__ == "__main__":
    port, origin, clients, requests = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    asyncio.run(main(port, origin, clients, requests, sys.argv[5] if len(sys.argv) > 5 else "load"))
