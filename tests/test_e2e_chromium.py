"""Headless Chromium through postcap: an intercepted HTTPS page with its image,
script and stylesheet, every one captured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haralyzer import HarParser

from tests import browser
from tests.schemas import assert_valid
from tests.certs import make_test_pki
from tests.harness import start_origin
from tests.postcap_process import PostcapProcess

pytestmark = pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))


def test_chromium_https_page_is_captured(tmp_path: Path) -> None:
    pki = make_test_pki(str(tmp_path / "pki"))
    with start_origin(tls=(pki.good.cert, pki.good.key)) as origin, PostcapProcess(
        tmp_path / "data", env={"SSL_CERT_FILE": pki.ca_cert}
    ) as server:
        session = server.rpc("session.start", name="chromium")
        home = browser.trusting_home(tmp_path / "home", server.ca_path)
        page = f"https://127.0.0.1:{origin.port}/page.html"
        result = browser.dump_dom(page, server.proxy_url, home)
        assert "postcap test page" in result.stdout, result.stderr[-2000:]
        # the script ran: it sets the title
        assert "<title>postcap origin</title>" in result.stdout
        captured = {item["url"]: item for item in server.requests(session["id"], limit=1000)}
        for path in ("/page.html", "/style.css", "/script.js", "/image.png"):
            url = f"https://127.0.0.1:{origin.port}{path}"
            assert url in captured, (url, sorted(captured))
            assert captured[url]["status"] == 200
            assert captured[url]["error"] is None
        detail = server.rpc("request.get", id=captured[page]["id"])
        assert detail["tls"]["sni"] is None  # Chromium sends no SNI for an IP address
        assert detail["tls"]["version"] == "TLSv1.3"
        assert "postcap test page" in detail["response"]["body"]["text"]
        # The page load as HAR: valid, and a HAR library sees every entry.
        server.rpc("session.stop")
        har = server.rpc("session.export", id=session["id"], format="har")
        assert_valid("har", har)
        har_path = tmp_path / "page.har"
        har_path.write_text(json.dumps(har))
        with open(har_path) as handle:
            parsed = HarParser(json.load(handle))
        urls = {entry.url for entry in _har_entries(parsed)}
        assert urls == set(captured)


def _har_entries(parser: "HarParser") -> list:  # type: ignore[type-arg]
    """Every entry haralyzer reads from a pages-less HAR."""
    from haralyzer import HarEntry

    return [HarEntry(raw) for raw in parser.har_data["entries"]]


def test_chromium_through_reverse_mode_with_tls(tmp_path: Path) -> None:
    """postcap in front of a plain-HTTP origin, serving TLS with a leaf from its CA:
    Chromium loads the page from postcap's port as if it were the site."""
    with start_origin() as origin, PostcapProcess(
        tmp_path / "data", "--mode", f"reverse:{origin.url('/')}", "--reverse-tls"
    ) as server:
        session = server.rpc("session.start", name="reverse chromium")
        home = browser.trusting_home(tmp_path / "home", server.ca_path)
        result = browser.dump_dom(f"https://127.0.0.1:{server.port}/page.html", None, home)
        assert "<title>postcap origin</title>" in result.stdout, result.stderr[-2000:]
        captured = {item["url"]: item for item in server.requests(session["id"], limit=1000)}
        for path in ("/page.html", "/style.css", "/script.js", "/image.png"):
            assert origin.url(path) in captured, (path, sorted(captured))
            assert captured[origin.url(path)]["status"] == 200
        detail = server.rpc("request.get", id=captured[origin.url("/page.html")]["id"])
        assert detail["tls"]["version"] == "TLSv1.3"
        assert "postcap test page" in detail["response"]["body"]["text"]
