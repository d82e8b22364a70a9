"""Test certificates, generated at test time with ``cryptography`` (never committed).

:func:`make_test_pki` writes, into a directory, an origin CA and server
certificates for the TLS origin used in end-to-end tests: a good one for
``localhost``/``127.0.0.1``, an expired one, one for the wrong host, a
self-signed one, and one from a CA nobody trusts.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class CertPair:
    cert: str
    key: str


@dataclass(frozen=True)
class OriginPKI:
    ca_cert: str  # the origin CA, to be trusted via SSL_CERT_FILE
    good: CertPair  # localhost + 127.0.0.1, signed by the CA
    expired: CertPair
    wrong_host: CertPair  # for "wrong.example", signed by the CA
    self_signed: CertPair
    untrusted: CertPair  # signed by another CA that nobody trusts


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    names: list[str],
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    not_before: datetime.datetime = NOW - DAY,
    not_after: datetime.datetime = NOW + 30 * DAY,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    issuer_name = _name(names[0]) if issuer is None else issuer[0].subject
    signing_key = key if issuer is None else issuer[1]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    return cert, key


def _write(directory: str, stem: str, pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> CertPair:
    cert, key = pair
    cert_path = os.path.join(directory, f"{stem}.pem")
    key_path = os.path.join(directory, f"{stem}-key.pem")
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return CertPair(cert_path, key_path)


def make_test_pki(directory: str) -> OriginPKI:
    os.makedirs(directory, exist_ok=True)
    ca = _ca("postcap test origin CA")
    other_ca = _ca("untrusted test CA")
    ca_path = os.path.join(directory, "origin-ca.pem")
    with open(ca_path, "wb") as handle:
        handle.write(ca[0].public_bytes(serialization.Encoding.PEM))
    hosts = ["localhost", "127.0.0.1"]
    return OriginPKI(
        ca_cert=ca_path,
        good=_write(directory, "good", _leaf(hosts, ca)),
        expired=_write(directory, "expired", _leaf(hosts, ca, NOW - 10 * DAY, NOW - 2 * DAY)),
        wrong_host=_write(directory, "wrong-host", _leaf(["wrong.example"], ca)),
        self_signed=_write(directory, "self-signed", _leaf(hosts, None)),
        untrusted=_write(directory, "untrusted", _leaf(hosts, other_ca)),
    )
