"""Headless Debian Chromium driven over ``--remote-debugging-pipe`` (no websocket
client needed): the DevTools protocol as NUL-terminated JSON on fds 3 (commands
in) and 4 (replies out) of the browser.

    with PipeChromium(home, user_data_dir, extensions=[ext]) as browser:
        target = browser.call("Target.createTarget", url="http://…")["targetId"]
        session = browser.attach(target)
        browser.evaluate(session, "document.title")
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

CHROMIUM_BINARY = "/usr/lib/chromium/chromium"  # /usr/bin/chromium is a wrapper adding flags
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--password-store=basic", "--remote-debugging-pipe",
]
CALL_TIMEOUT = 30.0


class CDPError(Exception):
    pass


class PipeChromium:
    def __init__(self, home: Path, user_data_dir: Path, extensions: list[Path],
                 env: dict[str, str] | None = None, flags: list[str] | None = None) -> None:
        self.home = home
        self.flags = list(flags or [])
        self.user_data_dir = user_data_dir
        self.extensions = extensions
        self.env = {**os.environ, **(env or {}), "HOME": str(home)}
        self.process: subprocess.Popen[bytes] | None = None
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []

    def start(self) -> "PipeChromium":
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        # Copies above 9, so that dup2 onto 3 and 4 in the child cannot clobber them.
        child_in = fcntl.fcntl(commands_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(replies_write, fcntl.F_DUPFD_CLOEXEC, 10)

        def plumb() -> None:
            os.dup2(child_in, 3, inheritable=True)
            os.dup2(child_out, 4, inheritable=True)

        self._log = open(self.home / "chromium.log", "wb")
        extensions = ",".join(str(path) for path in self.extensions)
        extension_flags = [f"--load-extension={extensions}",
                           f"--disable-extensions-except={extensions}"] if extensions else []
        self.process = subprocess.Popen(
            [CHROMIUM_BINARY, *FLAGS, *self.flags, f"--user-data-dir={self.user_data_dir}",
             *extension_flags, "about:blank"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self._log, preexec_fn=plumb, close_fds=False,
        )
        for fd in {commands_read, replies_write, child_in, child_out}:
            os.close(fd)
        return self

    def call(self, method: str, session_id: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session_id is not None:
            message["sessionId"] = session_id
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + CALL_TIMEOUT
        while True:
            for reply in self._read(deadline):
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise CDPError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
                self.events.append(reply)

    def _read(self, deadline: float) -> list[dict[str, Any]]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CDPError("no reply from Chromium in time")
        ready, _, _ = select.select([self._replies], [], [], remaining)
        if not ready:
            raise CDPError("no reply from Chromium in time")
        data = os.read(self._replies, 1 << 20)
        if not data:
            raise CDPError("Chromium closed the DevTools pipe")
        self._buffer += data
        *messages, self._buffer = self._buffer.split(b"\0")
        return [json.loads(m) for m in messages if m]

    def open_page(self, url: str) -> str:
        """Open ``url`` in a new tab; the attached DevTools session id."""
        target = self.call("Target.createTarget", url=url)["targetId"]
        return self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def evaluate(self, session_id: str, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session_id, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, session_id: str, expression: str, timeout: float = 20.0) -> Any:
        """Evaluate until truthy (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(session_id, expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.1)

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        try:
            self.call("Browser.close")
        except (CDPError, OSError):
            pass
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        for fd in (self._commands, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass
        self.process = None
        self._log.close()

    def __enter__(self) -> "PipeChromium":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
