"""The web page on the control port, driven in headless Debian Chromium by Playwright:
sign in, start a session, watch curl's requests arrive live, open one, read the
overview charts, stop the session.  A screenshot is kept in the test's tmp dir."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.browser import CHROMIUM
from tests.harness import Origin
from tests.history_seed import SEEDED_SESSION, seed_history
from tests.postcap_process import PostcapProcess

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="pip install playwright (the test extra)"
)
expect = sync_api.expect

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)"
    ),
    pytest.mark.skipif(
        shutil.which("curl") is None, reason="curl is required (apt-get install curl)"
    ),
]

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
UI_TIMEOUT_MS = 20_000
ROWS = "#requests-table tbody tr[data-id]"  # rendered rows (placeholders have no id)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("web")) as running:
        yield running


@pytest.fixture(autouse=True)
def no_active_session(server: PostcapProcess) -> Iterator[None]:
    """Each test starts and ends without a running session (the server is shared)."""
    yield
    active = server.rpc("server.info")["active_session"]
    if active:
        server.rpc("session.stop", id=active["id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS, timeout=60_000
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    opened.problems = problems
    try:
        yield opened
    finally:
        context.close()


def sign_in(page: Any, server: PostcapProcess) -> None:
    page.goto(server.control_url + "/")
    page.fill("#token-input", server.token)
    page.click("#signin-button")
    page.wait_for_selector("#view-sessions:not([hidden]), #view-live:not([hidden])")


def stored_token(page: Any) -> Any:
    return page.evaluate("() => sessionStorage.getItem('postcap.token')")


def test_page_is_public_with_security_headers_and_api_stays_guarded(server: PostcapProcess) -> None:
    status, headers, body = server.http("/", token=None)
    assert status == 200
    assert b'<form id="signin-form"' in body
    assert b"<script>" not in body  # no inline script
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    for asset, kind in (("/static/app.js", "text/javascript"), ("/static/app.css", "text/css")):
        status, headers, body = server.http(asset, token=None)
        assert status == 200 and headers["Content-Type"].startswith(kind) and body
    assert server.http("/static/nope.js", token=None)[0] == 404
    assert server.http("/rpc", b"{}", token=None)[0] == 401
    assert server.http("/events", token=None)[0] == 401
    assert server.http("/rpc", b"{}", token="wrong")[0] == 401


def test_wrong_token_is_refused_by_the_form(server: PostcapProcess, page: Any) -> None:
    page.goto(server.control_url + "/")
    page.fill("#token-input", "not-the-token")
    page.click("#signin-button")
    error = page.wait_for_selector("#signin-error:not([hidden])")
    assert "refused" in error.inner_text()
    assert stored_token(page) is None
    assert "token" not in page.url


def test_live_session_in_the_browser(
    server: PostcapProcess, origin: Origin, page: Any, tmp_path: Path
) -> None:
    sign_in(page, server)
    assert server.token not in page.url
    assert stored_token(page) == server.token

    page.fill("#start-name", "browser session")
    page.click("#start-button")
    page.wait_for_selector("#view-live:not([hidden])")
    assert page.inner_text("#live-title") == "browser session"
    assert page.inner_text("#live-state") == "running"
    expect(page.locator("body")).to_have_attribute("data-events", "connected")

    server.curl(origin.url("/hello"))
    server.curl(origin.url("/status/404"), check=False)
    server.curl(
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        '{"user":"ada","roles":["admin"]}',
        origin.url("/echo"),
    )
    rows = ROWS
    expect(page.locator(rows)).to_have_count(3)
    expect(page.locator(ROWS).first).to_contain_text("/echo")  # newest first
    table = page.inner_text("#requests-table")
    assert "/hello" in table and "/status/404" in table and "/echo" in table
    assert "3 req" in page.inner_text("#corner-size")

    page.click(f"{rows}:has-text('/echo')")
    detail = page.wait_for_selector("#detail:not([hidden])")
    text = detail.inner_text()
    assert "POST " + origin.url("/echo") in text
    page.click("#dtab-body")
    expect(page.locator("#detail")).to_contain_text('"user": "ada"')  # JSON pretty-printed
    page.click("#dtab-timing")
    assert page.locator("#detail svg.waterfall rect").count() == 5

    page.fill("#search", "status")
    expect(page.locator(rows)).to_have_count(1)
    page.fill("#search", "")
    page.select_option("#filter-method", "POST")
    expect(page.locator(rows)).to_have_count(1)
    page.select_option("#filter-method", "")
    expect(page.locator(rows)).to_have_count(3)

    page.click("#tab-overview")
    page.wait_for_selector("svg[data-chart=by_method] g[data-key=GET]")
    counts = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('svg[data-chart]')]
        .map(chart => [chart.dataset.chart,
                       Object.fromEntries([...chart.querySelectorAll('g[data-key]')]
                         .map(g => [g.dataset.key, Number(g.dataset.count)]))]))"""
    )
    assert counts["by_method"] == {"GET": 2, "POST": 1}
    assert counts["by_domain"] == {"127.0.0.1": 3}
    assert counts["by_status"] == {"200": 2, "404": 1}
    assert counts["by_data_mode"] == {"none": 2, "raw-json": 1}

    page.click("#pause-button")
    expect(page.locator("#live-state")).to_have_text("paused")
    page.click("#resume-button")
    expect(page.locator("#live-state")).to_have_text("running")
    page.click("#stop-button")
    expect(page.locator("#live-state")).to_have_text("stopped")
    session = server.rpc("session.list")["items"][0]
    assert session["state"] == "stopped" and session["request_count"] == 3

    page.click("#tab-requests")
    screenshot = tmp_path / "live-session.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    assert page.problems == []


def test_sessions_list_rename_and_delete(server: PostcapProcess, page: Any) -> None:
    first = server.rpc("session.start", name="first")
    server.rpc("session.stop", id=first["id"])
    sign_in(page, server)
    row = f"#sessions-table tr[data-id='{first['id']}']"
    page.wait_for_selector(row)
    assert "stopped" in page.inner_text(row)
    page.click(f"{row} button.rename")
    page.fill(f"{row} input.rename-input", "renamed")
    page.click(f"{row} button[type=submit]")
    expect(page.locator(f"{row} td.name")).to_have_text("renamed")
    assert server.rpc("session.get", id=first["id"])["name"] == "renamed"
    page.click(f"{row} button.delete")
    page.click(f"{row} button.delete")  # confirm
    page.wait_for_selector(row, state="detached")
    assert first["id"] not in [s["id"] for s in server.rpc("session.list")["items"]]
    assert page.problems == []


def test_cookies_tab_and_downloads(server: PostcapProcess, origin: Origin, page: Any) -> None:
    session = server.rpc("session.start", name="cookies", capture_cookies=True)
    server.curl(origin.url("/cookies/set?sid=first"))
    server.curl(origin.url("/cookies/set?sid=abc123"))
    sign_in(page, server)  # the active session opens by itself
    expect(page.locator("#live-title")).to_have_text("cookies")
    page.click("#tab-cookies")
    row = page.locator("#cookies-table tbody tr", has_text="sid")
    expect(row).to_have_count(1)  # one row per distinct cookie, its latest value
    assert row.locator("td").nth(3).inner_text() == "abc123"
    assert row.locator("td").nth(4).inner_text() == "2"
    row.locator("button.add-to-jar").click()
    expect(page.locator("#jar-table tbody tr", has_text="abc123")).to_have_count(1)
    assert [c["value"] for c in server.rpc("cookiejar.list")["items"]] == ["abc123"]
    page.check("#sync-enabled")
    page.fill("#sync-domains", "example.com, api.example.org")
    page.click("#sync-save")
    expect(page.locator("#sync-state")).to_have_text("syncing 2 domain(s)")
    assert server.rpc("cookiesync.get") == {"enabled": True, "domains": ["example.com", "api.example.org"]}
    server.rpc("cookiesync.set", enabled=False, domains=[])

    with page.expect_download() as har_download:
        page.click("#export-har")
    har = json.loads(Path(har_download.value.path()).read_bytes())
    assert [e["request"]["url"] for e in har["log"]["entries"]] == [
        origin.url("/cookies/set?sid=first"), origin.url("/cookies/set?sid=abc123")
    ]
    for _ in range(2):  # the second export reuses the collection of that name
        with page.expect_download() as collection_download:
            page.click("#export-collection")
        collection = json.loads(Path(collection_download.value.path()).read_bytes())
        assert collection["info"]["name"] == "cookies" and len(collection["item"]) == 2
    assert [c["name"] for c in server.rpc("collection.list")["items"]].count("cookies") == 1
    with page.expect_download() as openapi_download:
        page.click("#export-openapi")
    described = json.loads(Path(openapi_download.value.path()).read_bytes())
    assert described["openapi"] == "3.1.0" and list(described["paths"]) == ["/cookies/set"]
    assert "abc123" not in json.dumps(described)
    with page.expect_download() as ca_download:
        page.click("#ca-download")
    assert Path(ca_download.value.path()).read_text() == Path(server.ca_path).read_text()
    server.rpc("session.stop", id=session["id"])
    assert page.problems == []


def test_encoded_bodies_are_shown_decoded(server: PostcapProcess, origin: Origin, page: Any) -> None:
    sign_in(page, server)
    page.fill("#start-name", "encoded")
    page.click("#start-button")
    page.wait_for_selector("#view-live:not([hidden])")
    expect(page.locator("body")).to_have_attribute("data-events", "connected")
    server.curl(origin.url("/encoded/br?text=shown%20decoded"), "-o", "/dev/null")
    server.curl(origin.url("/encoded/broken"), "-o", "/dev/null")
    rows = ROWS
    expect(page.locator(rows)).to_have_count(2)
    page.click(f"{rows}:has-text('/encoded/br?')")
    page.wait_for_selector("#detail:not([hidden])")
    page.click("#dtab-body")
    text = page.inner_text("#detail")
    assert "shown decoded [br]" in text and "br, 18 B decoded" in text
    page.click(f"{rows}:has-text('/encoded/broken')")
    expect(page.locator("#detail")).to_contain_text("not decoded")
    assert "this was never gzipped" in page.inner_text("#detail")
    assert page.problems == []


def test_copy_as_curl_and_compare(server: PostcapProcess, origin: Origin, page: Any) -> None:
    sign_in(page, server)
    page.fill("#start-name", "compare session")
    page.click("#start-button")
    page.wait_for_selector("#view-live:not([hidden])")
    expect(page.locator("body")).to_have_attribute("data-events", "connected")
    server.curl("-H", "Content-Type: application/json", "--data", '{"n": 1}', origin.url("/echo?a=1"))
    server.curl("-H", "Content-Type: application/json", "--data", '{"n": 2}', origin.url("/echo?a=2"))
    rows = ROWS
    expect(page.locator(rows)).to_have_count(2)

    page.click(f"{rows}:has-text('a=1')")
    page.click("#copy-curl")
    command = page.inner_text("#export-output")
    assert command.startswith("curl ") and "--data-raw '{\"n\": 1}'" in command
    page.click("#compare-mark")
    page.click(f"{rows}:has-text('a=2')")
    page.click("#compare-button")
    result = page.inner_text("#compare-result")
    assert "query a changed: 1 → 2" in result
    assert "request body $.n changed: 1 → 2" in result
    assert page.problems == []


# -- a large seeded session, at two window widths --------------------------------------------

SEEDED_COUNT = 5_000


def artifact_dir(tmp_path: Path) -> Path:
    """Screenshots go to $POSTCAP_TEST_ARTIFACTS when set, else the test's tmp dir."""
    named = os.environ.get("POSTCAP_TEST_ARTIFACTS")
    directory = Path(named) if named else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def seeded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    data_dir = tmp_path_factory.mktemp("web-seeded")
    seed_history(str(data_dir / "history.sqlite3"), SEEDED_COUNT)
    with PostcapProcess(data_dir) as running:
        yield running


def no_page_overflow(page: Any) -> bool:
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))


@pytest.mark.parametrize("width", [1400, 800])
def test_large_session_search_detail_and_layout(
    seeded_server: PostcapProcess, browser: Any, width: int, tmp_path: Path
) -> None:
    scheme = "light" if width >= 1000 else "dark"
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        sign_in(page, seeded_server)
        page.click(f"#sessions-table tr[data-id='{SEEDED_SESSION}'] td.name a")
        expect(page.locator("#request-count")).to_have_text("5,000 requests")
        newest = f"/api/items/{SEEDED_COUNT - 1}?"
        expect(page.locator(ROWS).first).to_contain_text(newest)  # newest first
        assert page.locator(ROWS).count() < 100  # virtualised: only the rows in view
        row_heights = page.evaluate(
            "() => [...document.querySelectorAll('#requests-table tbody tr')].slice(0, 5)"
            ".map(r => r.getBoundingClientRect().height)"
        )
        assert set(row_heights) == {24}
        assert "s5xx" in page.get_attribute(ROWS + ":has-text('/api/items/4998?')", "class")  # 500

        # The oldest row is reached by scrolling to the bottom (pages fetched by offset).
        page.evaluate("() => { const s = document.querySelector('#table-scroll'); s.scrollTop = s.scrollHeight; }")
        expect(page.locator(ROWS).last).to_contain_text("/api/items/0?")

        page.fill("#search", "/api/items/0?")
        expect(page.locator(ROWS)).to_have_count(1)
        expect(page.locator(ROWS).first).to_contain_text("/api/items/0?")
        page.fill("#search", newest)
        expect(page.locator(ROWS).first).to_contain_text(newest)
        expect(page.locator(ROWS)).to_have_count(1)
        page.fill("#search", "")
        # Sorting by another column sorts the loaded rows in the page (local mode).
        page.click("#requests-table th[data-key=status] button")
        page.wait_for_selector("#requests-table[aria-busy=false]")
        expect(page.locator(f"{ROWS} >> nth=0 >> td.c-status")).to_have_text("200")
        page.click("#requests-table th[data-key=status] button")
        expect(page.locator(f"{ROWS} >> nth=0 >> td.c-status")).to_have_text("500")
        page.click("#requests-table th[data-key=time] button")
        expect(page.locator(ROWS).first).to_contain_text(newest)
        page.select_option("#filter-status", "4xx")
        page.fill("#filter-host", "host2.example.test")
        expect(page.locator("#request-count")).to_have_text("500 requests")  # i % 10 == 2: all 404
        page.fill("#filter-type", "html")  # content type: filtered in the page
        expect(page.locator("#request-count")).to_have_text("0 requests")
        page.fill("#filter-type", "json")
        expect(page.locator("#request-count")).to_have_text("500 requests")
        page.fill("#filter-type", "")
        page.wait_for_selector("#requests-table[aria-busy=false]")

        page.click(f"{ROWS} >> nth=0")
        page.wait_for_selector("#detail:not([hidden])")
        for tab in ("headers", "body", "timing", "cookies"):
            page.click(f"#dtab-{tab}")
            assert no_page_overflow(page), tab
        page.click("#dtab-messages")
        expect(page.locator("#dpane-messages")).to_contain_text(
            "not a WebSocket exchange")
        page.click("#dtab-headers")
        page.keyboard.press("ArrowDown")
        expect(page.locator(f"{ROWS}.selected")).to_have_attribute("data-index", "1")
        page.keyboard.press("Escape")
        expect(page.locator("#detail")).to_be_hidden()
        page.keyboard.press("Enter")
        page.wait_for_selector("#detail:not([hidden])")
        page.keyboard.press("/")
        assert page.evaluate("() => document.activeElement.id") == "search"
        page.keyboard.press("Escape")
        layout = page.evaluate(
            """() => { const t = document.querySelector('#table-scroll').getBoundingClientRect();
                       const d = document.querySelector('#detail').getBoundingClientRect();
                       return {side: d.left >= t.right - 1, below: d.top >= t.bottom - 1, detail: d.width}; }"""
        )
        if width >= 1000:
            assert layout["side"] and layout["detail"] > 400
            # Columns and the split are resized by dragging.
            grip = page.locator("#requests-table th[data-key=host] .grip").bounding_box()
            before = page.locator("#requests-table th[data-key=host]").bounding_box()["width"]
            page.mouse.move(grip["x"] + 3, grip["y"] + 5)
            page.mouse.down()
            page.mouse.move(grip["x"] + 63, grip["y"] + 5, steps=3)
            page.mouse.up()
            after = page.locator("#requests-table th[data-key=host]").bounding_box()["width"]
            assert after == pytest.approx(before + 60, abs=2)
            bar = page.locator("#splitter").bounding_box()
            page.mouse.move(bar["x"] + 3, bar["y"] + 100)
            page.mouse.down()
            page.mouse.move(bar["x"] - 197, bar["y"] + 100, steps=3)
            page.mouse.up()
            wider = page.locator("#detail").bounding_box()["width"]
            assert wider == pytest.approx(layout["detail"] + 200, abs=4)
            page.evaluate("() => localStorage.removeItem('postcap.columns')")
        else:
            assert layout["below"] and layout["detail"] > 700
        assert no_page_overflow(page)
        shot = artifact_dir(tmp_path) / f"web-seeded-{width}-{scheme}.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        assert problems == []
    finally:
        context.close()


def test_edit_and_replay_then_compare(
    server: PostcapProcess, origin: Origin, page: Any, tmp_path: Path
) -> None:
    sign_in(page, server)
    page.fill("#start-name", "edit and replay")
    page.click("#start-button")
    page.wait_for_selector("#view-live:not([hidden])")
    expect(page.locator("body")).to_have_attribute("data-events", "connected")
    server.curl("-H", "Content-Type: application/json", "--data", '{"n": 1}', origin.url("/echo?a=1"))
    expect(page.locator(ROWS)).to_have_count(1)
    page.click(f"{ROWS}:has-text('a=1')")
    page.click("#compare-mark")
    page.click("#edit-replay")
    page.fill("#edit-method", "PUT")
    page.fill("#edit-url", origin.url("/echo?a=2"))
    headers = page.input_value("#edit-headers")
    page.fill("#edit-headers", headers + "\nX-Edited: yes")
    page.fill("#edit-body", '{"n": 2}')
    page.click("#edit-send")
    expect(page.locator(ROWS)).to_have_count(2)  # the replay lands in the session
    expect(page.locator(ROWS).first).to_contain_text("a=2")
    expect(page.locator("#detail .request-line")).to_have_text("PUT " + origin.url("/echo?a=2"))
    newest = server.rpc("request.list", order="desc", limit=1)["items"][0]
    detail = server.rpc("request.get", id=newest["id"])
    assert detail["method"] == "PUT" and ["X-Edited", "yes"] in detail["request"]["headers"]

    page.click("#compare-button")
    result = page.inner_text("#compare-result")
    assert "request headers X-Edited added: - → yes" in result
    assert "method: POST → PUT" in result
    assert no_page_overflow(page)
    page.screenshot(path=str(artifact_dir(tmp_path) / "web-compare.png"))

    page.click("#copy-python")
    expect(page.locator("#export-output")).to_contain_text("http.client")
    for row in (f"{ROWS}:has-text('a=1')", f"{ROWS}:has-text('a=2')"):
        page.click(row)
        page.click("#collect-button")
        page.fill("#collection-name", "picked")
        page.click("#collect-send")
        page.wait_for_selector("#collect-form", state="detached")  # gone once added
        expect(page.locator("#message")).to_contain_text('Added to the collection "picked"')
    picked = [c for c in server.rpc("collection.list")["items"] if c["name"] == "picked"]
    assert len(picked) == 1 and picked[0]["request_count"] == 2  # one collection, reused

    page.click("#delete-request")
    page.click("#delete-request")  # confirm
    expect(page.locator(ROWS)).to_have_count(1)
    assert server.rpc("request.list", order="desc")["total"] == 1
    assert page.problems == []


def test_image_preview_hex_and_long_bodies_in_pieces(
    server: PostcapProcess, origin: Origin, page: Any, tmp_path: Path
) -> None:
    png = tmp_path / "dot.png"
    png.write_bytes(bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5e6d5"
        "f70000000049454e44ae426082"))
    long_text = tmp_path / "long.txt"
    long_text.write_text("0123456789abcdef" * 20_000)  # 320,000 characters
    sign_in(page, server)
    page.fill("#start-name", "bodies")
    page.click("#start-button")
    page.wait_for_selector("#view-live:not([hidden])")
    expect(page.locator("body")).to_have_attribute("data-events", "connected")
    server.curl("-H", "Content-Type: image/png", "--data-binary", f"@{png}", origin.url("/echo?png"))
    server.curl("-H", "Content-Type: text/plain", "--data-binary", f"@{long_text}", origin.url("/echo?long"))
    expect(page.locator(ROWS)).to_have_count(2)

    page.click(f"{ROWS}:has-text('?png')")
    page.wait_for_selector("#detail:not([hidden])")
    page.click("#dtab-body")
    image = page.locator("#detail img")
    expect(image).to_have_count(1)
    assert image.get_attribute("src").startswith("blob:")  # the CSP allows blob: images
    page.wait_for_function("() => document.querySelector('#detail img').naturalWidth === 1")
    page.click("#detail .body-part >> nth=0 >> button[data-mode=hex]")
    expect(page.locator("#detail .body-part >> nth=0 >> pre")).to_contain_text(
        "00000000  89 50 4e 47 0d 0a 1a 0a")

    page.click(f"{ROWS}:has-text('?long')")
    expect(page.locator("#detail .request-line")).to_contain_text("?long")
    request_body = page.locator("#detail .body-part >> nth=0")
    shown = lambda: len(request_body.locator("pre").inner_text())  # noqa: E731
    assert shown() == 256 * 1024
    more = request_body.locator("button.more")
    expect(more).to_be_visible()
    more.click()
    page.wait_for_function(
        "() => document.querySelector('#detail .body-part pre').textContent.length === 320000")
    expect(more).to_be_hidden()
    assert no_page_overflow(page)
    assert page.problems == []


def test_live_burst_follow_and_stable_view(server: PostcapProcess, origin: Origin, page: Any) -> None:
    page.set_viewport_size({"width": 1400, "height": 700})
    sign_in(page, server)
    page.fill("#start-name", "burst")
    page.click("#start-button")
    page.wait_for_selector("#view-live:not([hidden])")
    expect(page.locator("body")).to_have_attribute("data-events", "connected")
    server.curl(*[origin.url(f"/hello?i={i}") for i in range(60)], "-o", "/dev/null")
    expect(page.locator("#request-count")).to_have_text("60 requests")
    expect(page.locator(ROWS).first).to_contain_text("i=59")  # follow: the newest in view
    ids = page.eval_on_selector_all(ROWS, "rows => rows.map(r => r.dataset.id)")
    assert len(ids) == len(set(ids))

    # Scrolled away from the newest, follow turns off and the rows in view stay put.
    page.evaluate("() => { document.querySelector('#table-scroll').scrollTop = 10 * 24; }")
    expect(page.locator("#follow")).not_to_be_checked()
    top = page.evaluate(
        """() => { const box = document.querySelector('#table-scroll').getBoundingClientRect();
                   return document.elementFromPoint(box.left + 40, box.top + 26 + 5).closest('tr').dataset.id; }""")
    server.curl(origin.url("/hello?i=60"), "-o", "/dev/null")
    expect(page.locator("#request-count")).to_have_text("61 requests")
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    after = page.evaluate(
        """() => { const box = document.querySelector('#table-scroll').getBoundingClientRect();
                   return document.elementFromPoint(box.left + 40, box.top + 26 + 5).closest('tr').dataset.id; }""")
    assert after == top
    page.check("#follow")
    expect(page.locator(ROWS).first).to_contain_text("i=60")
    assert page.problems == []
