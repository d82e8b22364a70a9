"""postcap's certificate authority: created on first start in ``DATA_DIR/ca/``, reused after.

The key file is written with mode 0600 and never leaves the data dir.  The CA
is RSA-2048 (accepted by every platform's certificate installer), valid for
ten years, backdated a day against clock skew, with critical BasicConstraints
(CA, path length 0) and KeyUsage (certificate and CRL signing).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

CERT_FILE = "postcap-ca.pem"
KEY_FILE = "postcap-ca-key.pem"
CA_VALIDITY = datetime.timedelta(days=3650)
BACKDATE = datetime.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def sha256(self) -> str:
        """The SHA-256 fingerprint of the DER certificate, lower-case hex."""
        return hashlib.sha256(self.der).hexdigest()

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    def pkcs12(self) -> bytes:
        """The CA certificate alone in a PKCS#12 bundle (no key), for platforms that want one."""
        return pkcs12.serialize_key_and_certificates(
            name=b"postcap CA",
            key=None,
            cert=None,
            cas=[self.certificate],
            encryption_algorithm=serialization.NoEncryption(),
        )

    def to_json(self) -> dict[str, str]:
        return {
            "pem": self.pem.decode("ascii"),
            "sha256": self.sha256,
            "not_after": self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def create_ca(now: datetime.datetime | None = None) -> CertificateAuthority:
    """A new CA certificate and key."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    host = socket.gethostname().split(".")[0][:32] or "localhost"
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"postcap CA ({host}, {now:%Y-%m-%d})"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "postcap"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "capture proxy; do not trust elsewhere"),
        ]
    )
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(certificate, key)


def load_or_create_ca(directory: str) -> CertificateAuthority:
    """Load the CA from ``directory``, creating it (key mode 0600) when absent.

    Blocking file I/O: called once at start-up, before the reactor runs.
    """
    cert_path = os.path.join(directory, CERT_FILE)
    key_path = os.path.join(directory, KEY_FILE)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        with open(cert_path, "rb") as cert_file, open(key_path, "rb") as key_file:
            certificate = x509.load_pem_x509_certificate(cert_file.read())
            key = serialization.load_pem_private_key(key_file.read(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{key_path}: expected an RSA key")
        os.chmod(key_path, 0o600)
        return CertificateAuthority(certificate, key)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    ca = create_ca()
    key_bytes = ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(key_bytes)
    os.chmod(key_path, 0o600)
    with open(cert_path, "wb") as cert_file:
        cert_file.write(ca.pem)
    return ca
