"""The web page shows a WebSocket transaction's messages in its detail, as text (never
markup), new ones live; driven in headless Chromium by Playwright like test_web_page."""

from __future__ import annotations

from typing import Any

from tests.postcap_process import PostcapProcess
from tests.test_web_page import (  # noqa: F401  (fixtures and marks shared with that module)
    browser,
    expect,
    no_active_session,
    page,
    pytestmark,
    server,
    sign_in,
)
from tests.test_e2e_websocket import open_ws
from tests.wsorigin import port_of, websocket_origin


def test_websocket_messages_in_the_detail_as_text(server: PostcapProcess, page: Any) -> None:
    sign_in(page, server)
    page.fill("#start-name", "websocket session")
    page.click("#start-button")
    page.wait_for_selector("#view-live:not([hidden])")
    expect(page.locator("body")).to_have_attribute("data-events", "connected")
    hostile = "<img src=x onerror=\"document.title='owned'\"><b>bold</b>"
    with websocket_origin() as origin, open_ws(server, f"ws://127.0.0.1:{port_of(origin)}/chat") as ws:
        ws.send("plain words")
        assert ws.recv(timeout=10) == "plain words"
        rows = "#requests-table tbody tr"
        expect(page.locator(rows)).to_have_count(1)
        page.click(f"{rows}:has-text('/chat')")
        page.wait_for_selector("#ws-messages")
        expect(page.locator("#ws-messages tbody tr")).to_have_count(2)
        ws.send(hostile)  # arrives live, through a message event
        assert ws.recv(timeout=10) == hostile
        expect(page.locator("#ws-messages tbody tr")).to_have_count(4)
    cells = page.locator("#ws-messages td.ws-data").all_inner_texts()
    assert cells[:3] == ["plain words", "plain words", hostile]
    assert page.locator("#ws-messages img, #ws-messages b").count() == 0
    assert page.title() != "owned"
    assert page.problems == []
