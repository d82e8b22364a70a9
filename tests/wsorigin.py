"""A WebSocket origin for end-to-end tests: the ``websockets`` package's server in a thread.

It echoes every message back; the text ``close:CODE`` makes it close with that code
instead.  Over HTTP it serves ``/page.html``, whose script opens a WebSocket to
``/echo`` on the same origin (for the Chromium test).
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from typing import Iterator

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

PAGE = b"""<!doctype html>
<html><head><title>waiting</title></head><body><p id="out">none</p>
<script>
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(scheme + "//" + location.host + "/echo");
ws.onopen = () => ws.send("hello from chromium");
ws.onmessage = (event) => {
  document.getElementById("out").textContent = "echo: " + event.data;
  document.title = "done";
  ws.close(1000, "bye");
};
ws.onerror = () => { document.title = "error"; };
</script></body></html>
"""


def _echo(connection: ServerConnection) -> None:
    for message in connection:
        if isinstance(message, str) and message.startswith("close:"):
            connection.close(int(message.split(":", 1)[1]), "asked to")
            return
        connection.send(message)


def _page(connection: ServerConnection, request: Request) -> Response | None:
    if request.path != "/page.html":
        return None
    headers = Headers([("Content-Type", "text/html; charset=utf-8"),
                       ("Content-Length", str(len(PAGE))), ("Connection", "close")])
    return Response(200, "OK", headers, PAGE)


@contextlib.contextmanager
def websocket_origin(tls: tuple[str, str] | None = None, max_size: int | None = 2 ** 24,
                     alpn: list[str] | None = None) -> Iterator[Server]:
    """An echo server on 127.0.0.1 (``server.socket.getsockname()[1]`` is its port);
    with ``alpn``, its TLS picks the first of these the client offers."""
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        if alpn:
            context.set_alpn_protocols(alpn)
    server = serve(_echo, "127.0.0.1", 0, ssl=context, process_request=_page,
                   max_size=max_size, ping_interval=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)


def port_of(server: Server) -> int:
    return int(server.socket.getsockname()[1])
