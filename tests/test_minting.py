"""Leaf certificates for internationalised and invalid host names, and handshakes in
memory (pyOpenSSL connections over memory BIOs, no sockets)."""

from __future__ import annotations

import tempfile

from cryptography import x509
from OpenSSL import SSL
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from postcap.tls.ca import load_or_create_ca
from postcap.tls.minting import (
    InterceptingServerCreator,
    InvalidHostName,
    LeafMinter,
    a_label_host,
)

_CA_DIR = tempfile.mkdtemp(prefix="postcap-minting-test-")
_MINTER: list[LeafMinter] = []


def minter() -> LeafMinter:
    """One minter (and CA) for the module: minting is what is tested, not CA creation."""
    if not _MINTER:
        _MINTER.append(LeafMinter(load_or_create_ca(_CA_DIR)))
    return _MINTER[0]


def dns_names(certificate: x509.Certificate) -> list[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return san.value.get_values_for_type(x509.DNSName)


def handshake(server_context: SSL.Context, sni: bytes | None) -> tuple[SSL.Connection, Exception | None]:
    """Run a TLS handshake between a client sending ``sni`` and a server starting with
    ``server_context``, in memory; returns the client and the client's error, if any."""
    client_context = SSL.Context(SSL.TLS_METHOD)
    client = SSL.Connection(client_context, None)
    if sni is not None:
        client.set_tlsext_host_name(sni)
    client.set_connect_state()
    server = SSL.Connection(server_context, None)
    server.set_accept_state()
    client_error: Exception | None = None
    for _ in range(20):  # a handshake takes a few round trips; bounded
        for side in (client, server):
            try:
                side.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error as problem:
                if side is client:
                    client_error = problem
        moved = False
        for source, sink in ((client, server), (server, client)):
            try:
                data = source.bio_read(65536)
            except SSL.WantReadError:
                continue
            sink.bio_write(data)
            moved = True
        if not moved or client_error is not None:
            break
    return client, client_error


class HostNameTests(SynchronousTestCase):
    def test_u_labels_become_a_labels(self) -> None:
        self.assertEqual(a_label_host("bücher.example"), "xn--bcher-kva.example")
        self.assertEqual(a_label_host("BÜCHER.example."), "xn--bcher-kva.example")
        self.assertEqual(a_label_host("💩.la"), "xn--ls8h.la")  # IDNA 2003, as browsers allow

    def test_a_labels_and_plain_names_are_kept(self) -> None:
        self.assertEqual(a_label_host("xn--bcher-kva.localhost"), "xn--bcher-kva.localhost")
        self.assertEqual(a_label_host("XN--BCHER-KVA.Example."), "xn--bcher-kva.example")
        self.assertEqual(a_label_host("_dmarc.a-b.example"), "_dmarc.a-b.example")
        self.assertEqual(a_label_host("127.0.0.1"), "127.0.0.1")
        self.assertEqual(a_label_host("[::1]"), "::1")

    def test_names_no_certificate_can_carry(self) -> None:
        for bad in ("bad name.test", "", ".", "a..b", "x" * 64 + ".test", "a/b", "a\x00b",
                    ("a" * 60 + ".") * 5, "bad name.tëst", "\ufffd.test"):
            with self.subTest(name=bad):
                self.assertRaises(InvalidHostName, a_label_host, bad)


class MintingTests(SynchronousTestCase):
    def test_a_label_and_u_label_hosts_get_the_a_label_in_the_san(self) -> None:
        for host in ("xn--bcher-kva.localhost", "bücher.localhost"):
            context = minter().context_for(host)
            client, error = handshake(context, None)
            self.assertIsNone(error)
            presented = client.get_peer_certificate().to_cryptography()
            self.assertEqual(dns_names(presented), ["xn--bcher-kva.localhost"])
        self.assertIs(minter().context_for("bücher.localhost"),
                      minter().context_for("xn--bcher-kva.localhost"))  # one cached context

    def test_sni_in_a_label_form_is_minted(self) -> None:
        creator = InterceptingServerCreator(minter(), "127.0.0.1")
        server_connection = creator.serverConnectionForTLS(None)
        client, error = handshake(server_connection.get_context(), b"xn--bcher-kva.localhost")
        self.assertIsNone(error)
        self.assertEqual(dns_names(client.get_peer_certificate().to_cryptography()),
                         ["xn--bcher-kva.localhost"])

    def test_invalid_sni_is_refused_with_an_alert_and_logged(self) -> None:
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        context = minter().context_for("127.0.0.1")
        _, error = handshake(context, b"bad name.test")
        self.assertIsInstance(error, SSL.Error)
        self.assertIn("alert", str(error))
        refusals = [e for e in events if e.get("host") == "bad name.test"]
        self.assertEqual(len(refusals), 1)
        self.assertEqual(refusals[0]["why"], "server name (SNI)")
        # The next client is served as before.
        _, error = handshake(context, b"good.test")
        self.assertIsNone(error)

    def test_invalid_connect_host_without_sni_is_refused(self) -> None:
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        creator = InterceptingServerCreator(minter(), "not!a!host")
        context = creator.serverConnectionForTLS(None).get_context()
        _, error = handshake(context, None)
        self.assertIn("alert", str(error))
        self.assertEqual([e["why"] for e in events if e.get("host") == "not!a!host"],
                         ["CONNECT host"])
        # With a valid SNI the client still gets its certificate.
        client, error = handshake(context, b"sni.test")
        self.assertIsNone(error)
        self.assertEqual(dns_names(client.get_peer_certificate().to_cryptography()), ["sni.test"])
