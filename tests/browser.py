"""Headless Debian Chromium for end-to-end tests: a throwaway profile whose NSS
database trusts a given CA, all traffic through a given proxy, no background
network chatter."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CERTUTIL = shutil.which("certutil")

QUIET_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--metrics-recording-only",
    "--password-store=basic",
]


def missing() -> str | None:
    """Why browser tests cannot run here, or None."""
    if CHROMIUM is None:
        return "Debian chromium is not installed (apt-get install chromium)"
    if CERTUTIL is None:
        return "certutil is not installed (apt-get install libnss3-tools)"
    return None


def trusting_home(directory: Path, ca_pem: str) -> Path:
    """A HOME whose NSS database (~/.pki/nssdb) trusts ``ca_pem`` for TLS servers."""
    nssdb = directory / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    assert CERTUTIL is not None
    subprocess.run([CERTUTIL, "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True, capture_output=True)
    subprocess.run(
        [CERTUTIL, "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "postcap-test", "-i", ca_pem],
        check=True, capture_output=True,
    )
    return directory


def dump_dom(url: str, proxy: str | None, home: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Load ``url`` through ``proxy`` (None: directly) and return Chromium's serialized DOM."""
    assert CHROMIUM is not None
    profile = home / "profile"
    command = [
        CHROMIUM, *QUIET_FLAGS,
        f"--user-data-dir={profile}",
        *([f"--proxy-server={proxy}", "--proxy-bypass-list=<-loopback>"] if proxy
          else ["--no-proxy-server"]),
        "--virtual-time-budget=5000",
        "--dump-dom", url,
    ]
    env = dict(os.environ, HOME=str(home))
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
