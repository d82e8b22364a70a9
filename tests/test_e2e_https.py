"""End to end over TLS: interception with postcap's CA, verified upstream TLS,
--insecure-upstream, --ignore-hosts, the certificate page, the CA across restarts."""

from __future__ import annotations

import os
import stat
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.certs import OriginPKI
from tests.harness import Origin, requires_curl, start_origin
from tests.postcap_process import PostcapProcess, RPCError

pytestmark = requires_curl



@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki: OriginPKI) -> Iterator[PostcapProcess]:
    data_dir = tmp_path_factory.mktemp("postcap-tls")
    with PostcapProcess(
        data_dir, "--ignore-hosts", r"^pinned\.", "--ignore-hosts", "^localhost$",
        env={"SSL_CERT_FILE": pki.ca_cert},
    ) as running:
        yield running


@pytest.fixture
def session(server: PostcapProcess) -> Iterator[dict[str, Any]]:
    started = server.rpc("session.start", name="tls")
    yield started
    try:
        server.rpc("session.stop")
    except RPCError:
        pass


def https(origin: Origin, path: str) -> str:
    """An https URL by IP (intercepted; ``localhost`` is in --ignore-hosts here)."""
    return f"https://127.0.0.1:{origin.port}{path}"


def test_intercepted_https_is_captured(
    server: PostcapProcess, tls_origin: Origin, session: dict[str, Any]
) -> None:
    result = server.curl("--cacert", server.ca_path, https(tls_origin, "/hello"))
    assert result.stdout == b"hello from origin\n"
    (item,) = server.requests(session["id"])
    assert item["url"] == https(tls_origin, "/hello")
    assert item["status"] == 200
    detail = server.rpc("request.get", id=item["id"])
    assert detail["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert detail["tls"]["cipher"]
    assert detail["response"]["body"]["text"] == "hello from origin\n"
    timings = detail["timings"]
    assert timings["tls_ms"] >= 0
    # Phases do not overlap: the TLS handshake is not counted again in send or wait.
    phases = sum(value for value in timings.values() if value > 0)
    assert phases <= detail["duration_ms"] + 1.0, timings


def test_post_bodies_and_keep_alive_over_tls(
    server: PostcapProcess, tls_origin: Origin, session: dict[str, Any]
) -> None:
    result = server.curl(
        "-v", "--cacert", server.ca_path, "-d", "field=1", https(tls_origin, "/echo"), https(tls_origin, "/echo"),
    )
    assert result.stdout.count(b'"body": "field=1"') == 2
    assert result.stderr.count(b"> CONNECT 127.0.0.1") == 1, "the TLS tunnel was reused"
    items = server.requests(session["id"])
    assert [i["method"] for i in items] == ["POST", "POST"]
    assert [i["request_bytes"] for i in items] == [7, 7]
    detail = server.rpc("request.get", id=items[1]["id"])
    assert detail["request"]["body"]["text"] == "field=1"


def test_sni_decides_the_leaf_certificate(server: PostcapProcess, tls_origin: Origin) -> None:
    result = server.curl(
        "--cacert", server.ca_path, "-v", "--connect-to", f"sni.test:{tls_origin.port}:127.0.0.1:{tls_origin.port}",
        f"https://sni.test:{tls_origin.port}/hello",
    )
    # curl sent CONNECT 127.0.0.1:PORT with SNI sni.test: postcap presented a certificate
    # for sni.test (curl verified it against postcap's CA) and forwarded to the CONNECT target.
    assert b"> CONNECT 127.0.0.1" in result.stderr
    assert b"subject: CN=sni.test" in result.stderr
    assert result.stdout == b"hello from origin\n"


def test_untrusted_upstream_is_502_and_insecure_passes(
    tmp_path: Any, pki: OriginPKI
) -> None:
    cases = {
        "expired": (pki.expired, "has expired"),
        "self-signed": (pki.self_signed, "self-signed"),
        "untrusted": (pki.untrusted, "untrusted"),
        "wrong-host": (pki.wrong_host, "host name mismatch"),
    }
    origins = {name: start_origin(tls=(pair.cert, pair.key)) for name, (pair, _) in cases.items()}
    try:
        with PostcapProcess(tmp_path / "strict", env={"SSL_CERT_FILE": pki.ca_cert}) as strict:
            strict.rpc("session.start")
            for name, (_, words) in cases.items():
                result = strict.curl("-i", "--cacert", strict.ca_path, https(origins[name], "/hello"), check=False)
                # curl chooses HTTP/2 inside the intercepted tunnel (ALPN h2).
                assert b"\r\n\r\nHTTP/2 502 \r\n" in result.stdout, name
                assert b"could not be verified" in result.stdout, name
                assert b"x-postcap-error: tls\r\n" in result.stdout, name
                assert words.encode() in result.stdout, (name, result.stdout)
            errors = [item["error"] for item in strict.requests()]
            assert len(errors) == 4 and all("could not be verified" in e for e in errors)
        with PostcapProcess(tmp_path / "insecure", "--insecure-upstream") as insecure:
            for name in cases:
                result = insecure.curl("--cacert", insecure.ca_path, https(origins[name], "/hello"))
                assert result.stdout == b"hello from origin\n", name
    finally:
        for running in origins.values():
            running.stop()


def test_ignore_hosts_tunnels_blind(
    server: PostcapProcess, tls_origin: Origin, pki: OriginPKI, session: dict[str, Any]
) -> None:
    # curl trusts only the origin's own CA: this works only if postcap does not intercept.
    result = server.curl("--cacert", pki.ca_cert, f"https://localhost:{tls_origin.port}/hello")
    assert result.stdout == b"hello from origin\n"
    (item,) = server.requests(session["id"])
    assert item["method"] == "CONNECT"
    assert item["url"] == f"localhost:{tls_origin.port}"
    assert item["request_bytes"] > 0 and item["response_bytes"] > 0
    detail = server.rpc("request.get", id=item["id"])
    assert detail["kind"] == "tunnel"


def test_certificate_page_is_served_not_forwarded(server: PostcapProcess, session: dict[str, Any]) -> None:
    page = server.curl("http://postcap.cert/").stdout.decode()
    for platform in ("iOS", "Android", "macOS", "Windows", "Linux", "Firefox", "SSL_CERT_FILE", "certutil"):
        assert platform in page
    pem = server.curl("http://postcap.cert/cert/pem").stdout
    with open(server.ca_path, "rb") as ca_file:
        assert pem == ca_file.read()
    der = server.curl("http://postcap.cert/cert/cer").stdout
    assert x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex() == server.rpc("ca.get")["sha256"]
    assert server.curl("-o", "/dev/null", "-w", "%{http_code}", "http://postcap.cert/cert/p12").stdout == b"200"
    assert server.requests(session["id"]) == []


def test_ca_files_and_control_endpoints(server: PostcapProcess) -> None:
    key_path = os.path.join(server.data_dir, "ca", "postcap-ca-key.pem")
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    status, headers, body = server.http("/ca.pem", token=None)
    assert status == 200
    with open(server.ca_path, "rb") as ca_file:
        assert body == ca_file.read()
    got = server.rpc("ca.get")
    assert got["pem"].encode() == body
    assert got["sha256"] == server.rpc("proxy.status")["ca_sha256"]
    certificate = x509.load_pem_x509_certificate(body)
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    assert "postcap" in certificate.subject.rfc4514_string()


def test_ca_survives_restart(tmp_path: Any) -> None:
    with PostcapProcess(tmp_path / "data") as first:
        fingerprint = first.rpc("ca.get")["sha256"]
    with PostcapProcess(tmp_path / "data") as second:
        assert second.rpc("ca.get")["sha256"] == fingerprint
