"""Helpers for end-to-end tests: a real origin server in a subprocess, free ports.

    origin = start_origin()
    try:
        urllib.request.urlopen(origin.url("/hello"))
    finally:
        origin.stop()

or ``with start_origin() as origin: ...``.
"""

from __future__ import annotations

import os
import shutil
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import pytest

ORIGIN_SCRIPT = Path(__file__).with_name("origin.py")
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


#: Marks tests that drive real curl (skipped, with the reason, where curl is missing).
requires_curl = pytest.mark.skipif(
    shutil.which("curl") is None,
    reason="curl is required for end-to-end tests (apt-get install curl)",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Origin:
    """A running ``tests/origin.py`` subprocess."""

    host = "127.0.0.1"

    def __init__(self, process: subprocess.Popen[bytes], port: int, tls: bool) -> None:
        self.process = process
        self.port = port
        self.tls = tls

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this origin."""
        if not path.startswith("/"):
            path = "/" + path
        return f"{self.scheme}://{self.authority}{path}"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM, wait up to 10 s, then kill.  Returns the exit status; idempotent."""
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None and not process.stdout.closed:
            process.stdout.close()
        return process.returncode

    def __enter__(self) -> "Origin":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Origin {self.url()} pid={self.process.pid}>"


def start_origin(
    tls: tuple[str, str] | None = None, timeout: float = READY_TIMEOUT,
    script: Path = ORIGIN_SCRIPT, http2: bool = False,
) -> Origin:
    """Launch ``tests/origin.py`` (or another origin ``script`` with the same command line;
    over TLS with ``tls=(cert, key)``, offering HTTP/2 by ALPN with ``http2``) and wait
    for READY."""
    command = [sys.executable, str(script)]
    if tls is not None:
        command += ["--tls", str(tls[0]), str(tls[1])]
    if http2:
        command.append("--http2")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        port = _read_ready(process, timeout)
    except BaseException:
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()
        raise
    return Origin(process, port, tls is not None)


def _read_ready(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Read stdout until a ``READY <port>`` line, the process ends, or ``timeout``."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    received = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            while b"\n" in received:
                line, received = received.split(b"\n", 1)
                words = line.strip().split()
                if len(words) == 2 and words[0] == b"READY" and words[1].isdigit():
                    return int(words[1])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"origin did not print READY within {timeout:g} s")
            if not selector.select(remaining):
                continue
            data = os.read(fd, 4096)
            if not data:
                status = process.wait(1)
                raise RuntimeError(f"origin exited with status {status} before READY")
            received += data
