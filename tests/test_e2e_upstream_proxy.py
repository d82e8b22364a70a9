"""--upstream-proxy end to end: postcap chained through a second postcap.

The second postcap is the "corporate proxy": it tunnels every CONNECT blind
(``--ignore-hosts .*``) and forwards plain HTTP, and its own capture session shows
that the first one really went through it.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from tests.certs import OriginPKI
from tests.harness import Origin, requires_curl
from tests.postcap_process import PostcapProcess

pytestmark = requires_curl


@pytest.fixture(scope="module")
def corporate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("corporate"), "--ignore-hosts", ".*") as running:
        running.rpc("session.start", name="corporate proxy")
        yield running


@pytest.fixture(scope="module")
def chained(
    tmp_path_factory: pytest.TempPathFactory, corporate: PostcapProcess, pki: OriginPKI
) -> Iterator[PostcapProcess]:
    with PostcapProcess(
        tmp_path_factory.mktemp("chained"),
        "--upstream-proxy", corporate.proxy_url,
        env={"SSL_CERT_FILE": pki.ca_cert},
    ) as running:
        running.rpc("session.start", name="chained")
        yield running


def test_plain_http_goes_through_the_upstream_proxy(
    chained: PostcapProcess, corporate: PostcapProcess, origin: Origin
) -> None:
    url = origin.url("/hello?via=chain")
    assert chained.curl(url).stdout == b"hello from origin\n"
    assert url in [item["url"] for item in chained.requests()]
    assert url in [item["url"] for item in corporate.requests()]


def test_intercepted_https_is_tunnelled_through_the_upstream_proxy(
    tmp_path_factory: pytest.TempPathFactory, corporate: PostcapProcess,
    tls_origin: Origin, pki: OriginPKI,
) -> None:
    url = f"https://127.0.0.1:{tls_origin.port}/hello?via=tls-chain"
    with PostcapProcess(
        tmp_path_factory.mktemp("chained-tls"),
        "--upstream-proxy", corporate.proxy_url,
        env={"SSL_CERT_FILE": pki.ca_cert},
    ) as chained_tls:
        chained_tls.rpc("session.start", name="chained tls")
        result = chained_tls.curl("--cacert", chained_tls.ca_path, url)
        assert result.stdout == b"hello from origin\n"
        (captured,) = chained_tls.requests()
        assert captured["url"] == url and captured["status"] == 200
    # Stopped: its pooled upstream connection, a tunnel through ``corporate``, closed.
    assert f"127.0.0.1:{tls_origin.port}" in tunnels_seen_by(corporate, f"127.0.0.1:{tls_origin.port}")


def tunnels_seen_by(proxy: PostcapProcess, expected: str) -> list[str]:
    """CONNECT targets the proxy recorded, waiting up to 10 s for ``expected``
    (a tunnel is recorded when it closes)."""
    deadline = time.monotonic() + 10
    while True:
        urls = [item["url"] for item in proxy.requests() if item["method"] == "CONNECT"]
        if expected in urls or time.monotonic() > deadline:
            return urls
        time.sleep(0.1)


def test_ignored_host_is_tunnelled_blind_through_the_upstream_proxy(
    tmp_path_factory: pytest.TempPathFactory, corporate: PostcapProcess,
    tls_origin: Origin, pki: OriginPKI,
) -> None:
    with PostcapProcess(
        tmp_path_factory.mktemp("chained-blind"),
        "--upstream-proxy", corporate.proxy_url, "--ignore-hosts", "^localhost$",
    ) as blind:
        result = blind.curl("--cacert", pki.ca_cert, f"https://localhost:{tls_origin.port}/hello",
                            timeout=30)
        assert result.stdout == b"hello from origin\n"
    target = f"localhost:{tls_origin.port}"
    assert target in tunnels_seen_by(corporate, target)
