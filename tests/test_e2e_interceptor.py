"""The interceptor end to end: Debian's Chromium (new headless) with the shipped
extension loaded, the host manifest written by ``postcap-bridge install``, the
real bridge started by the browser, and the real server."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from postcap.interceptor.extension_id import EXTENSION_ID, HOST_NAME, extension_dir
from tests.cdp import CHROMIUM_BINARY, PipeChromium
from tests.bridge_process import bridge, env_for
from tests.harness import Origin
from tests.postcap_process import PostcapProcess

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM_BINARY, os.X_OK), reason=f"Debian chromium ({CHROMIUM_BINARY}) is not installed"
)

WAIT = 30.0


def wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Rig:
    """Server, origin, a temp HOME with the host manifest installed, and the browser."""

    def __init__(self, tmp_path: Path, origin: Origin, server: PostcapProcess) -> None:
        self.origin = origin
        self.server = server
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.user_data_dir = self.home / ".config" / "chromium"
        self.env = env_for(self.home, POSTCAP_HOME=server.data_dir)
        self.extension = tmp_path / "extension"
        shutil.copytree(extension_dir(), self.extension,
                        ignore=shutil.ignore_patterns("__pycache__"))
        self.browser: PipeChromium | None = None

    def bridge(self, *args: str) -> subprocess.CompletedProcess[str]:
        return bridge(self.env, *args)

    def start_browser(self) -> PipeChromium:
        self.browser = PipeChromium(self.home, self.user_data_dir, [self.extension], env=self.env)
        return self.browser.start()

    def status(self) -> dict[str, Any]:
        return self.server.rpc("interceptor.status")

    def browse(self) -> None:
        assert self.browser is not None
        page = self.browser.open_page(self.origin.url("/browse.html"))
        title = self.browser.wait_for(page, "document.title === 'browse done'")
        assert title, "the page did not finish its fetches"

    def set_extension_key(self, key: str) -> str:
        """Type the key into the popup and save it; the popup's DevTools session."""
        assert self.browser is not None
        popup = self.browser.open_page(f"chrome-extension://{EXTENSION_ID}/popup.html")
        assert self.browser.wait_for(popup, "document.body && document.body.dataset.ready === 'yes'")
        self.browser.evaluate(popup, f"document.getElementById('key').value = '{key}';"
                                     "document.getElementById('save').click(); true")
        assert self.browser.wait_for(popup, "document.body.dataset.saved === 'yes'")
        return popup


@pytest.fixture
def rig(tmp_path: Path, origin: Origin) -> Iterator[Rig]:
    with PostcapProcess(tmp_path / "data") as server:
        setup = Rig(tmp_path, origin, server)
        installed = setup.bridge("install", "--browser", "chromium")
        assert installed.returncode == 0, installed.stderr
        manifest = setup.user_data_dir / "NativeMessagingHosts" / f"{HOST_NAME}.json"
        assert manifest.exists(), installed.stdout
        try:
            yield setup
        finally:
            if setup.browser is not None:
                setup.browser.stop()


def captured(rig: Rig, session_id: str) -> dict[str, dict[str, Any]]:
    return {item["url"]: item for item in rig.server.requests(session_id, limit=1000)}


def test_browser_traffic_and_cookies_reach_the_session(rig: Rig) -> None:
    session = rig.server.rpc("session.start", name="browser", source="interceptor",
                             capture_cookies=True)
    rig.server.rpc("cookiesync.set", enabled=True, domains=["127.0.0.1"])
    rig.start_browser()
    wait_until(lambda: rig.status()["secure"], "the extension's hello over the default key")
    rig.browse()
    echo_url = rig.origin.url("/echo")
    items = wait_until(lambda: (lambda c: c if echo_url in c else None)(captured(rig, session["id"])),
                       "the page's POST to be captured")
    for path in ("/browse.html", "/style.css", "/script.js", "/image.png",
                 "/cookies/set?flavour=oatmeal", "/echo"):
        assert rig.origin.url(path) in items, (path, sorted(items))
        assert items[rig.origin.url(path)]["status"] == 200
    post = rig.server.rpc("request.get", id=items[echo_url]["id"])
    assert post["method"] == "POST"
    assert post["request"]["body"]["text"] == "posted from the page"
    cookie_call = rig.server.rpc("request.get", id=items[rig.origin.url("/cookies/set?flavour=oatmeal")]["id"])
    set_cookies = [v for n, v in cookie_call["response"]["headers"] if n.lower() == "set-cookie"]
    assert set_cookies == ["flavour=oatmeal; Path=/; HttpOnly"]
    status = wait_until(lambda: (lambda s: s if s["cookies_received"] >= 2 else None)(rig.status()),
                        "the chrome.cookies changes to arrive")
    captured_cookies = rig.server.rpc("cookie.list", session_id=session["id"])["items"]
    assert {(c["name"], c["value"], c["source"], c["http_only"]) for c in captured_cookies
            if c["source"] == "response"} == {("flavour", "oatmeal", "response", True)}
    # the script-set cookie only chrome.cookies saw, and the HttpOnly one, are in the jar
    jar = {c["name"]: c for c in rig.server.rpc("cookiejar.list", domain="127.0.0.1")["items"]}
    assert jar["theme"]["value"] == "dark" and not jar["theme"]["http_only"]
    assert jar["flavour"]["value"] == "oatmeal" and jar["flavour"]["http_only"]
    assert status["connected"] and status["secure"] and not status["custom_key"]
    assert status["rejected_frames"] == 0
    assert status["captured_requests"] >= 6
    session = rig.server.rpc("session.get", id=session["id"])
    assert session["source"] == "interceptor" and session["request_count"] >= 6


def test_custom_key_on_both_ends_with_a_url_filter(rig: Rig) -> None:
    assert rig.server.rpc("interceptor.set_key", key="Both3ndsKey2026") == {
        "secure": True, "custom_key": True}
    session = rig.server.rpc("session.start", source="interceptor",
                             filters={"url_contains": "cookies|echo"})
    rig.start_browser()
    wait_until(lambda: rig.status()["rejected_frames"], "the default-key hello to be rejected")
    popup = rig.set_extension_key("Both3ndsKey2026")
    wait_until(lambda: rig.status()["secure"], "the link to be secure under the custom key")
    assert rig.browser is not None
    assert rig.browser.wait_for(popup, "document.getElementById('secure').textContent"
                                       " === 'secure (custom key)'")
    rig.browse()
    echo_url = rig.origin.url("/echo")
    items = wait_until(lambda: (lambda c: c if echo_url in c else None)(captured(rig, session["id"])),
                       "the page's POST to be captured")
    assert sorted(items) == sorted([rig.origin.url("/cookies/set?flavour=oatmeal"), echo_url])
    status = rig.status()
    assert status["custom_key"] and status["secure"]
    # The extension applied the pushed url_contains itself: nothing else was even sent.
    assert status["ignored_requests"] == 0 and status["captured_requests"] == 2


def test_mismatched_keys_capture_nothing_and_status_says_why(rig: Rig) -> None:
    rig.server.rpc("interceptor.set_key", key="ServerOnlyKey99")
    session = rig.server.rpc("session.start", source="interceptor")
    rig.start_browser()
    wait_until(lambda: rig.status()["rejected_frames"], "the extension's hello to be rejected")
    before = rig.status()["rejected_frames"]
    rig.browse()
    wait_until(lambda: rig.status()["rejected_frames"] >= before + 6,
               "the page's requests to arrive (and be rejected)")
    status = rig.status()
    assert status["connected"] is True
    assert status["secure"] is False
    assert "failed authentication" in status["last_error"]
    assert status["captured_requests"] == 0
    assert rig.server.requests(session["id"]) == []
    doctor = rig.bridge("doctor", "--browser", "chromium")
    assert doctor.returncode == 1
    assert "PROBLEM KEY_MISMATCH" in doctor.stdout, doctor.stdout
