"""Self-signed certificates with their keys, as an operator makes one for an app registration (openssl req -x509)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certificate:
    key: CertificateIssuerPrivateKeyTypes
    certificate: x509.Certificate

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def write(self, path: Path) -> str:
        """The certificate and its key in one PEM file, as ``AZURE_CLIENT_CERTIFICATE_PATH`` takes it."""
        path.write_bytes(self.certificate_pem + self.key_pem)
        return str(path)


def make_certificate(*, days: float = 365, key: CertificateIssuerPrivateKeyTypes | None = None,
                     name: str = "outlook-integration") -> Certificate:
    """A certificate that expires ``days`` from now (negative: expired that long ago), valid since a day before."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    not_after = datetime.now(timezone.utc) + timedelta(days=days)
    not_before = min(datetime.now(timezone.utc), not_after) - timedelta(days=1)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(not_before)
                   .not_valid_after(not_after).sign(key, hashes.SHA256()))
    return Certificate(key, certificate)
