"""Run the real ``twistd -n postcap`` in a subprocess for end-to-end tests.

    with PostcapProcess(tmp_path) as server:
        server.rpc("session.start", name="x")
        server.curl("http://127.0.0.1:PORT/hello")

Ports are picked free on 127.0.0.1; the data dir is the test's temp dir; the
process is always stopped (SIGTERM, then SIGKILL after a bound).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.harness import free_port

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
TWISTD = shutil.which("twistd", path=os.path.dirname(sys.executable)) or "twistd"


class RPCError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = error.get("message")
        self.data = error.get("data")


class PostcapProcess:
    """A ``twistd -n postcap`` subprocess with its own ports and data dir."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *args: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
        control_port: int | None = None,
    ) -> None:
        self.data_dir = str(data_dir)
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.port = port or free_port()
        self.control_port = control_port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(self.data_dir, "twistd.log")

    # -- lifecycle ---------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            TWISTD, "-n", "--pidfile=", "--logfile", self.log_path, "postcap",
            "--port", str(self.port),
            "--interface", "127.0.0.1",
            "--control", f"tcp:{self.control_port}:interface=127.0.0.1",
            "--data-dir", self.data_dir,
            *self.args,
        ]

    def start(self) -> "PostcapProcess":
        os.makedirs(self.data_dir, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(), env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postcap exited with {self.process.returncode}:\n{self.output()}")
            if self._ready():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"postcap did not start within {START_TIMEOUT} s:\n{self.log()}")

    def _ready(self) -> bool:
        if not os.path.exists(os.path.join(self.data_dir, "server.json")):
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process and wait for it; returns its exit code."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()
        self.process = None
        os.unlink(os.path.join(self.data_dir, "server.json")) if os.path.exists(
            os.path.join(self.data_dir, "server.json")
        ) else None
        return process.returncode

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def __enter__(self) -> "PostcapProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def output(self) -> str:
        if self.process is None or self.process.stdout is None:
            return ""
        return self.process.stdout.read().decode("utf-8", "replace")

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text("utf-8", "replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    # -- clients -------------------------------------------------------------------------

    @property
    def token(self) -> str:
        return Path(self.data_dir, "control.token").read_text().strip()

    @property
    def ca_path(self) -> str:
        return os.path.join(self.data_dir, "ca", "postcap-ca.pem")

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http(
        self, path: str, body: bytes | None = None, token: str | None = "", method: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """A request to the control channel: (status, headers, body)."""
        request = urllib.request.Request(self.control_url + path, data=body, method=method)
        if token == "":
            token = self.token
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def rpc_raw(self, payload: Any) -> Any:
        status, _, body = self.http(
            "/rpc", json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        if status == 204:
            return None
        assert status == 200, (status, body)
        return json.loads(body)

    def rpc(self, method: str, /, **params: Any) -> Any:
        """Call a method; its result, or :class:`RPCError`."""
        answer = self.rpc_raw({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        if "error" in answer:
            raise RPCError(answer["error"])
        return answer["result"]

    def curl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        """Run real curl through the proxy (``-x``)."""
        command = ["curl", "-sS", "--max-time", str(int(timeout)), "-x", self.proxy_url, *args]
        result = subprocess.run(command, capture_output=True, timeout=timeout + 10)
        if check and result.returncode != 0:
            raise AssertionError(f"curl failed ({result.returncode}): {result.stderr.decode()}")
        return result

    def requests(self, session_id: str | None = None, **params: Any) -> list[dict[str, Any]]:
        if session_id is not None:
            params["session_id"] = session_id
        return self.rpc("request.list", **params)["items"]


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")
