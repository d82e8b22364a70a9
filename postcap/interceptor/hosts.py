"""Where Chromium-family browsers look for native-messaging host manifests, and
writing/removing ours.

A browser reads ``<user-data-dir>/NativeMessagingHosts/<name>.json`` on Linux
and macOS (started with ``--user-data-dir=DIR`` it reads only ``DIR/…``, hence
the ``--user-data-dir`` option).  On Windows the manifest may live anywhere and
a registry key under HKCU names it.  The manifest's ``path`` must be an
absolute executable, so install writes a small wrapper script that runs this
Python with ``postcap.interceptor.bridge host``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from postcap.interceptor.extension_id import EXTENSION_ID, HOST_NAME, extension_origin


@dataclass(frozen=True, slots=True)
class Browser:
    name: str
    linux_dir: str          # user data dir, relative to ~
    macos_dir: str          # relative to ~/Library/Application Support
    windows_key: str        # under HKEY_CURRENT_USER
    executables: tuple[str, ...]
    macos_app: str


BROWSERS: dict[str, Browser] = {
    "chrome": Browser("Google Chrome", ".config/google-chrome", "Google/Chrome",
                      r"Software\Google\Chrome",
                      ("google-chrome", "google-chrome-stable", "chrome"), "Google Chrome.app"),
    "chromium": Browser("Chromium", ".config/chromium", "Chromium", r"Software\Chromium",
                        ("chromium", "chromium-browser"), "Chromium.app"),
    # Brave on Windows reads Chrome's registry key.
    "brave": Browser("Brave", ".config/BraveSoftware/Brave-Browser",
                     "BraveSoftware/Brave-Browser", r"Software\Google\Chrome",
                     ("brave-browser", "brave"), "Brave Browser.app"),
    "edge": Browser("Microsoft Edge", ".config/microsoft-edge", "Microsoft Edge",
                    r"Software\Microsoft\Edge",
                    ("microsoft-edge", "microsoft-edge-stable"), "Microsoft Edge.app"),
}


def user_data_dir(browser: str, platform: str = sys.platform) -> Path:
    """The browser's default user data dir on this platform (not Windows)."""
    entry = BROWSERS[browser]
    home = Path(os.path.expanduser("~"))
    if platform == "darwin":
        return home / "Library" / "Application Support" / entry.macos_dir
    return home / entry.linux_dir


def manifest_path(browser: str, data_dir: str | None = None, platform: str = sys.platform) -> Path:
    """Where the host manifest goes (Windows: our own folder; the registry points to it)."""
    if platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", os.path.expanduser("~"))) / "postcap"
        return base / browser / f"{HOST_NAME}.json"
    root = Path(data_dir) if data_dir else user_data_dir(browser, platform)
    return root / "NativeMessagingHosts" / f"{HOST_NAME}.json"


def browser_installed(browser: str, platform: str = sys.platform) -> bool:
    entry = BROWSERS[browser]
    if any(shutil.which(name) for name in entry.executables):
        return True
    if platform == "darwin":
        return any(Path(root, entry.macos_app).exists()
                   for root in ("/Applications", os.path.expanduser("~/Applications")))
    return user_data_dir(browser, platform).is_dir()


def wrapper_dir(platform: str = sys.platform) -> Path:
    if platform == "darwin":
        return Path(os.path.expanduser("~/Library/Application Support/postcap"))
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(xdg) / "postcap"


def write_wrapper(postcap_data_dir: str | None, platform: str = sys.platform) -> Path:
    """An executable that starts the bridge with this Python (and data dir, if given)."""
    directory = wrapper_dir(platform)
    directory.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "postcap.interceptor.bridge"]
    if postcap_data_dir:
        command += ["--data-dir", os.path.abspath(postcap_data_dir)]
    command.append("host")
    if platform == "win32":
        path = directory / "postcap-bridge-host.bat"
        path.write_text("@echo off\r\n" + subprocess_line(command) + " %*\r\n", "utf-8")
        return path
    path = directory / "postcap-bridge-host"
    path.write_text(
        "#!/bin/sh\n# Written by `postcap-bridge install`: the native-messaging host for postcap.\n"
        f"exec {shlex.join(command)} \"$@\"\n",
        "utf-8",
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def subprocess_line(command: list[str]) -> str:
    return " ".join(f'"{part}"' for part in command)


def host_manifest(executable: Path, extension_ids: list[str]) -> dict[str, object]:
    return {
        "name": HOST_NAME,
        "description": "postcap Interceptor bridge",
        "path": str(executable),
        "type": "stdio",
        "allowed_origins": [extension_origin(extension_id) for extension_id in extension_ids],
    }


def install(
    browser: str,
    extension_ids: list[str] | None = None,
    user_data: str | None = None,
    postcap_data_dir: str | None = None,
    platform: str = sys.platform,
) -> Path:
    """Write the wrapper and the host manifest; the manifest's path."""
    executable = write_wrapper(postcap_data_dir, platform)
    target = manifest_path(browser, user_data, platform)
    target.parent.mkdir(parents=True, exist_ok=True)
    manifest = host_manifest(executable, extension_ids or [EXTENSION_ID])
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    os.replace(temporary, target)
    if platform == "win32":  # pragma: no cover - Windows only
        import winreg

        key = winreg.CreateKey(winreg.HKEY_CURRENT_USER,
                               rf"{BROWSERS[browser].windows_key}\NativeMessagingHosts\{HOST_NAME}")
        winreg.SetValueEx(key, "", 0, winreg.REG_SZ, str(target))
        winreg.CloseKey(key)
    return target


def uninstall(browser: str, user_data: str | None = None, platform: str = sys.platform) -> bool:
    """Remove the host manifest; whether there was one."""
    target = manifest_path(browser, user_data, platform)
    if platform == "win32":  # pragma: no cover - Windows only
        import winreg

        try:
            winreg.DeleteKey(winreg.HKEY_CURRENT_USER,
                             rf"{BROWSERS[browser].windows_key}\NativeMessagingHosts\{HOST_NAME}")
        except OSError:
            pass
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    return True
