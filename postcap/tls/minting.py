"""Leaf certificates for intercepted hosts, and the server-side TLS contexts that use them.

One EC P-256 key serves every leaf (fast handshakes, minting costs a signature
only).  Each certificate names its host in the SAN (DNS or IP), is backdated a
day and lives 397 days (within Apple's limit).  Contexts are cached per host
in a bounded LRU.  :class:`InterceptingServerCreator` picks the context by the
client's SNI when it sends one, else by the CONNECT host.

Host names are kept in A-label form (``xn--bcher-kva.example``), as SNI carries them
and certificates must name them; a U-label (``bücher.example``) is converted.  A name
that is no host name at all gets no certificate: the handshake is refused with a TLS
alert and the refusal logged, and the server goes on serving everyone else.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections import OrderedDict

import idna

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from postcap.tls.ca import BACKDATE, CertificateAuthority

LEAF_VALIDITY = datetime.timedelta(days=397)
ALPN_HTTP11 = b"http/1.1"
ALPN_H2 = b"h2"


#: One DNS label in A-label form: letters, digits, hyphens (and underscores, seen in
#: real host names), 1 to 63 of them.
_LABEL = re.compile(r"[a-z0-9_-]{1,63}\Z")


class InvalidHostName(ValueError):
    """A name that cannot be put in a certificate."""


def a_label_host(host: str) -> str:
    """``host`` as a certificate names it: lower case, no trailing dot, U-labels turned
    into A-labels; IP addresses as they are.  Raises :class:`InvalidHostName`."""
    name = host.strip("[]") if host.startswith("[") else host
    try:
        ipaddress.ip_address(name)
        return name
    except ValueError:
        pass
    name = name.rstrip(".")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError:
            try:  # IDNA 2003, which browsers still accept for some names (emoji)
                name = name.encode("idna").decode("ascii")
            except UnicodeError:
                raise InvalidHostName(f"not an internationalised host name: {host!r}") from None
    name = name.lower()
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise InvalidHostName(f"not a host name: {host!r}")
    return name


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


class LeafMinter:
    """Mints and caches per-host certificates and TLS server contexts."""

    _log = Logger()

    def __init__(self, ca: CertificateAuthority, cache_size: int = 1024) -> None:
        self.ca = ca
        self.cache_size = cache_size
        self.key = ec.generate_private_key(ec.SECP256R1())
        self._key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._contexts: OrderedDict[str, SSL.Context] = OrderedDict()
        self.minted = 0
        self._refusing: SSL.Context | None = None

    def certificate_for(self, host: str, now: datetime.datetime | None = None) -> x509.Certificate:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        not_after = min(now + LEAF_VALIDITY, self.ca.not_after)
        ca_public = self.ca.key.public_key()
        common_name = host if len(host) <= 64 else host[:64]
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "postcap"),
                    ]
                )
            )
            .issuer_name(self.ca.certificate.subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([_san(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
        )
        self.minted += 1
        return builder.sign(self.ca.key, hashes.SHA256())

    def context_for(self, host: str) -> SSL.Context:
        """The server context presenting ``host``'s certificate (LRU-cached).

        Raises :class:`InvalidHostName` for a name no certificate can carry."""
        context = self._contexts.get(host)
        if context is not None:
            self._contexts.move_to_end(host)
            return context
        host = a_label_host(host)
        context = self._contexts.get(host)
        if context is not None:
            self._contexts.move_to_end(host)
            return context
        context = self._new_context(host)
        self._contexts[host] = context
        if len(self._contexts) > self.cache_size:
            self._contexts.popitem(last=False)
        return context

    def context_or_refusal(self, host: str, why: str) -> SSL.Context:
        """:meth:`context_for` ``host``, or, for a name no certificate can carry, a
        context without a certificate: its handshake ends in a ``handshake_failure``
        alert (logged here, with ``why`` the name was asked for)."""
        try:
            return self.context_for(host)
        except InvalidHostName as problem:
            self._log.error("TLS refused: the {why} {host!r} is not a host name ({problem})",
                            why=why, host=host, problem=str(problem))
            return self.refusing_context()

    def refusing_context(self) -> SSL.Context:
        """A server context with no certificate (the SNI callback may still switch)."""
        if self._refusing is None:
            self._refusing = self._base_context()
        return self._refusing

    def _base_context(self) -> SSL.Context:
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
        context.set_session_id(b"postcap")
        context.set_tlsext_servername_callback(self._servername_selected)
        context.set_alpn_select_callback(_select_alpn)
        return context

    def _new_context(self, host: str) -> SSL.Context:
        certificate = self.certificate_for(host)
        context = self._base_context()
        context.use_certificate(certificate)
        context.add_extra_chain_cert(self.ca.certificate)
        context.use_privatekey(self.key)
        return context

    def _servername_selected(self, connection: SSL.Connection) -> None:
        name = connection.get_servername()
        if not name:
            return
        # SNI is ASCII (A-labels); a client that sends UTF-8 is taken at its word.
        host = name.decode("utf-8", "replace")
        connection.set_context(self.context_or_refusal(host, "server name (SNI)"))


def _select_alpn(connection: SSL.Connection, offered: list[bytes]) -> bytes:
    """HTTP/2 when the client offers it, else HTTP/1.1."""
    if ALPN_H2 in offered:
        return ALPN_H2
    if ALPN_HTTP11 in offered:
        return ALPN_HTTP11
    return SSL.NO_OVERLAPPING_PROTOCOLS


@implementer(IOpenSSLServerConnectionCreator)
class InterceptingServerCreator:
    """Terminates a CONNECT'ed client's TLS as ``default_host`` (or its SNI)."""

    def __init__(self, minter: LeafMinter, default_host: str) -> None:
        self.minter = minter
        self.default_host = default_host

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        context = self.minter.context_or_refusal(self.default_host, "CONNECT host")
        return SSL.Connection(context, None)
