"""Headless Chromium through postcap: a page whose script talks to its origin over a
WebSocket (wss through an intercepted CONNECT, ws through a plain one), every message
captured."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests import browser
from tests.cdp import PipeChromium
from tests.certs import make_test_pki
from tests.postcap_process import PostcapProcess
from tests.wsorigin import port_of, websocket_origin

pytestmark = pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_chromium_page_with_a_websocket(tmp_path: Path, scheme: str) -> None:
    """wss:// (CONNECT, intercepted TLS) and ws:// (Chromium sends a CONNECT with plain
    HTTP inside for it)."""
    pki = make_test_pki(str(tmp_path / "pki"))
    tls = (pki.good.cert, pki.good.key) if scheme == "https" else None
    with websocket_origin(tls=tls) as origin, PostcapProcess(
        tmp_path / "data", env={"SSL_CERT_FILE": pki.ca_cert}
    ) as server:
        session = server.rpc("session.start", name="chromium websocket")
        home = browser.trusting_home(tmp_path / "home", server.ca_path)
        base = f"{scheme}://127.0.0.1:{port_of(origin)}"
        flags = [f"--proxy-server={server.proxy_url}", "--proxy-bypass-list=<-loopback>"]
        with PipeChromium(home, tmp_path / "profile", [], flags=flags) as chromium:
            page = chromium.open_page(base + "/page.html")
            shown = chromium.wait_for(page, "document.title === 'done' && document.getElementById('out').textContent")
        assert shown == "echo: hello from chromium"
        by_url = {item["url"]: item for item in server.requests(session["id"])}
        assert by_url[base + "/page.html"]["status"] == 200
        socket_item = by_url[base + "/echo"]
        assert socket_item["status"] == 101
        deadline = time.monotonic() + 10
        while True:
            messages = server.rpc("request.messages", id=socket_item["id"])["items"]
            if len(messages) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [(m["direction"], m["type"], m["text"]) for m in messages[:2]] == [
            ("client", "text", "hello from chromium"), ("server", "text", "hello from chromium"),
        ]
        detail = server.rpc("request.get", id=socket_item["id"])
        assert detail["kind"] == "websocket"
        if scheme == "https":
            assert detail["tls"]["version"] == "TLSv1.3"
        else:
            assert detail["tls"] is None
