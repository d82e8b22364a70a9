"""A raw-socket origin for hostile-input tests: it records every byte it receives.

    with RawOrigin() as origin:
        ...  # send requests for http://127.0.0.1:{origin.port}/ through the proxy
        assert origin.received() == b""  # nothing reached the origin

Each connection is served by a thread: requests are read with a deliberately
simple parser (Content-Length or chunked bodies) and answered
``200 OK`` with body ``ok``.  ``/hang`` is read but never answered.  Every
connection's bytes are kept in :attr:`RawOrigin.connections`, and whether the
connection ended in :attr:`RawOrigin.closed`.  ``/short-body`` declares 1000 bytes,
sends 100 and closes; ``/big`` declares 10 GB and streams until the peer goes.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class RawOrigin:
    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self.connections: list[bytearray] = []
        self.closed: list[threading.Event] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        acceptor = threading.Thread(target=self._accept, daemon=True)
        acceptor.start()
        self._threads.append(acceptor)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self) -> bytes:
        with self._lock:
            return b"".join(bytes(c) for c in self.connections)

    def wait_for(self, data: bytes, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if data in self.received():
                return True
            time.sleep(0.02)
        return False

    def _accept(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                buffer = bytearray()
                closed = threading.Event()
                self.connections.append(buffer)
                self.closed.append(closed)
                self._sockets.append(conn)
            worker = threading.Thread(target=self._serve, args=(conn, buffer, closed), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _serve(self, conn: socket.socket, buffer: bytearray, closed: threading.Event) -> None:
        pending = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                with self._lock:
                    buffer.extend(data)
                pending += data
                while True:
                    used = _complete_request(pending)
                    if used is None:
                        break
                    request, pending = pending[:used], pending[used:]
                    path = request.split(b"\r\n", 1)[0].split(b" ")[1]
                    if path.startswith(b"/hang"):
                        continue
                    if path.startswith(b"/short-body"):
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"s" * 100)
                        return
                    if path.startswith(b"/big"):
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")
                        while not self._stopping:
                            conn.sendall(b"b" * 65536)
                        return
                    conn.sendall(RESPONSE)
        except OSError:
            pass
        finally:
            closed.set()
            conn.close()

    def stop(self) -> None:
        self._stopping = True
        self.listener.close()
        with self._lock:
            for conn in self._sockets:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> "RawOrigin":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _complete_request(data: bytes) -> int | None:
    """Length of the first complete request in ``data`` (simple framing), or None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end].lower()
    start = end + 4
    if b"transfer-encoding: chunked" in head:
        position = start
        while True:
            line_end = data.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(data[position:line_end].split(b";")[0], 16)
            if size == 0:
                trailer_end = data.find(b"\r\n\r\n", line_end)
                if data[line_end:line_end + 4] == b"\r\n\r\n":
                    return line_end + 4
                return None if trailer_end < 0 else trailer_end + 4
            position = line_end + 2 + size + 2
            if position > len(data):
                return None
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
            return start + length if len(data) >= start + length else None
    return start
