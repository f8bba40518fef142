"""The app registration's certificate credential: a PEM file holding the certificate and its private key.

Microsoft recommends a certificate over a client secret for production
(https://learn.microsoft.com/entra/identity-platform/certificate-credentials): the service proves who it is
by signing a short-lived assertion with the private key, so nothing reusable crosses the wire. The file is
read once at start-up; everything that can be wrong with it (unreadable, no certificate, no key, an
encrypted key, a key of another certificate) is a :class:`ValueError` whose message names the problem and
never the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

MAX_FILE_BYTES = 1024 * 1024  # a certificate, its chain and a key are a few KB; anything far larger is not one


@dataclass(frozen=True)
class ClientCertificate:
    """A certificate whose private key matches it, ready for msal (PEM text) and for expiry checks."""

    path: str
    certificate_pem: str
    private_key_pem: str = field(repr=False)
    sha1_thumbprint: str
    """What the Azure portal shows as the certificate's Thumbprint (upper-case hex)."""
    not_after: datetime


def load_client_certificate(path: str) -> ClientCertificate:
    """Read ``path``: a PEM certificate (optionally followed by its chain) and its unencrypted RSA private key.

    Of several certificates, the one the key belongs to is the credential (the leaf, as uploaded to the app
    registration); it alone goes to msal, which sends it as ``x5c``.
    """
    data = _read(Path(path))
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        raise ValueError(f"the private key in {path} is encrypted; store it without a passphrase "
                         "(openssl pkey -in key.pem -out key-plain.pem)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{path} holds no PEM private key (-----BEGIN PRIVATE KEY-----) next to the certificate") \
            from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"the private key in {path} is not an RSA key; Entra signs client assertions with RSA")
    certificate = next((c for c in certificates if c.public_key() == key.public_key()), None)
    if certificate is None:
        raise ValueError(f"the private key in {path} does not belong to its certificate")
    return ClientCertificate(
        path=path,
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        private_key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode("ascii"),
        sha1_thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),
        not_after=certificate.not_valid_after_utc,
    )


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_FILE_BYTES // 1024} KB: not a PEM certificate and key")
    return data
