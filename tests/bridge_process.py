"""The real ``postcap-bridge`` console script for tests: one-shot commands in a
given environment, and the host on pipes speaking the browser's framing."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from postcap.interceptor.extension_id import EXTENSION_ID

BRIDGE = shutil.which("postcap-bridge", path=os.path.dirname(sys.executable)) or "postcap-bridge"


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k != "POSTCAP_HOME"}
    env.update(HOME=str(home), **extra)
    return env


def bridge(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BRIDGE, *args], env=env, capture_output=True, text=True, timeout=60)


class HostProcess:
    """The real ``postcap-bridge host`` on pipes, speaking the browser's framing."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [BRIDGE, "host", f"chrome-extension://{EXTENSION_ID}/"], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def send(self, raw: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(raw)
        self.process.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        (length,) = struct.unpack("=I", self.process.stdout.read(4))
        return json.loads(self.process.stdout.read(length))

    def read_until(self, predicate: Any, limit: int = 20) -> dict[str, Any]:
        for _ in range(limit):
            message = self.read()
            if predicate(message):
                return message
        raise AssertionError("the expected message did not come")

    def close(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            return self.process.wait(20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
