"""Upstream TLS: verified by default (system trust store, ``SSL_CERT_FILE``,
service-identity hostname checks), or not at all with ``--insecure-upstream``.

A verification failure is turned into words a person understands ("certificate
has expired", "self-signed certificate", "hostname mismatch") and the proxy
answers 502 with them.
"""

from __future__ import annotations

from typing import Any, Sequence

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from twisted.python.failure import Failure
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address
from zope.interface import implementer

from postcap.model import is_ip_literal

_log = Logger()

#: ALPN offers: HTTP/1.1 only (replay's client), or HTTP/2 first (the proxy's upstreams).
HTTP11_ONLY = (b"http/1.1",)
H2_AND_HTTP11 = (b"h2", b"http/1.1")

# OpenSSL X509_V_ERR_* codes and what they mean to a person.
VERIFY_ERRORS = {
    2: "the issuer certificate could not be found",
    7: "the certificate signature is invalid",
    9: "the certificate is not yet valid",
    10: "the certificate has expired",
    18: "the certificate is self-signed and not trusted",
    19: "a self-signed certificate in the chain is not trusted",
    20: "the certificate was issued by an unknown or untrusted CA",
    21: "the certificate chain could not be verified",
    23: "the certificate has been revoked",
    24: "an intermediate CA certificate is invalid",
    26: "the certificate is not meant for TLS servers",
    62: "the certificate does not match the host name",
    64: "the certificate does not match the IP address",
}


@implementer(IOpenSSLClientConnectionCreator)
class VerifyingClientCreator:
    """Verify the chain against the platform trust store (``SSL_CERT_FILE`` honoured)
    and the leaf against the host name with service-identity; offer ``alpn`` (by
    default http/1.1 only; the proxy offers h2 too).  Why verification failed is left, in words, on the wrapped protocol's
    ``tls_verify_error`` for the 502 the proxy answers with, and in ``last_error``
    for callers that own the creator (replay)."""

    def __init__(self, hostname: str, alpn: Sequence[bytes] = HTTP11_ONLY) -> None:
        self.hostname = hostname
        self.last_error: str | None = None
        self._is_ip = is_ip_literal(hostname)
        self._alpn = list(alpn)
        options = ssl.CertificateOptions(
            trustRoot=ssl.platformTrust(),
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        )
        self._context = options.getContext()

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        # Per connection: Twisted's CertificateOptions sets ALPN on connections it builds itself.
        connection.set_alpn_protos(self._alpn)
        if not self._is_ip:
            connection.set_tlsext_host_name(self.hostname.encode("idna"))
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)
        connection.set_connect_state()
        return connection

    def _failed(self, connection: SSL.Connection, reason: str) -> None:
        if self.last_error is None:
            self.last_error = reason
        _note_failure(connection, reason)

    def _verify(self, connection: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
        try:
            if not ok:
                reason = VERIFY_ERRORS.get(errno, f"OpenSSL verification error {errno}")
                self._failed(connection, reason if depth == 0 else f"{reason} (certificate {depth} in the chain)")
                return False
            if depth == 0:
                leaf = cert.to_cryptography()
                try:
                    if self._is_ip:
                        verify_certificate_ip_address(leaf, self.hostname)
                    else:
                        verify_certificate_hostname(leaf, self.hostname)
                except (VerificationError, CertificateError):
                    self._failed(connection, f"the certificate is not valid for {self.hostname!r} (host name mismatch)")
                    return False
            return True
        except Exception:  # an exception inside an OpenSSL callback would be lost
            _log.failure("verifying the upstream certificate failed")
            return False


def _note_failure(connection: SSL.Connection, reason: str) -> None:
    """Keep the readable verification failure where the caller can find it: on the
    protocol the TLS layer wraps (the proxy's upstream connection)."""
    protocol = getattr(connection.get_app_data(), "wrappedProtocol", None)
    if protocol is not None and getattr(protocol, "tls_verify_error", None) is None:
        protocol.tls_verify_error = reason


def verified_creator(hostname: str, alpn: Sequence[bytes] = HTTP11_ONLY) -> IOpenSSLClientConnectionCreator:
    return VerifyingClientCreator(hostname, alpn)


@implementer(IOpenSSLClientConnectionCreator)
class InsecureClientCreator:
    """``--insecure-upstream``: TLS with SNI and ALPN, no certificate checks."""

    def __init__(self, hostname: str, alpn: Sequence[bytes] = HTTP11_ONLY) -> None:
        self.hostname = hostname
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_NONE, lambda *args: True)
        context.set_alpn_protos(list(alpn))
        self._context = context

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        if not is_ip_literal(self.hostname):
            connection.set_tlsext_host_name(self.hostname.encode("idna"))
        connection.set_connect_state()
        return connection


def describe_tls_failure(failure: Failure, recorded: str | None) -> str:
    """The 502 text for a TLS connection to upstream that failed before any response."""
    if recorded:
        return f"upstream certificate could not be verified: {recorded}"
    if failure.check(SSL.Error):
        return f"TLS handshake with upstream failed: {failure.getErrorMessage()}"
    return f"TLS connection to upstream failed: {failure.getErrorMessage()}"
