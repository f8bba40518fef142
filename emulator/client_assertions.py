"""Certificate credentials: an app proves itself with a JWT it signs (RFC 7523, ``private_key_jwt``).

The token endpoint takes ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``
and ``client_assertion=<JWT>`` in place of ``client_secret``. The assertion's format is Microsoft's
(https://learn.microsoft.com/entra/identity-platform/certificate-credentials): header ``alg`` PS256 with
``x5t#S256`` (the SHA-256 thumbprint of a certificate uploaded to the app registration), or the older RS256
with ``x5t`` (SHA-1); claims ``aud`` = the token endpoint, ``iss`` = ``sub`` = the client id, ``exp``,
optional ``nbf``, and ``jti``. ``x5c`` is ignored: it matters only for Subject Name/Issuer authentication,
so a certificate sent along never stands in for one registered.

Refusals carry the codes Entra answers with, as observed (messages in :mod:`emulator.aadsts`): AADSTS700027
for a thumbprint no registered certificate has and for a signature that does not verify, AADSTS700024
outside ``nbf``..``exp``, AADSTS700023 for another audience, AADSTS700021 when ``iss``/``sub`` are not the
client, AADSTS50027 for a JWT that is not one, AADSTS90014 for a missing claim. The signature is checked
before any claim, so a forged assertion learns nothing about what else was wrong.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .aadsts import AadstsError
from .signing import b64url_decode

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_CHARS = 32 * 1024  # a header with a 4-certificate x5c chain stays well under this
_PART = re.compile(r"[A-Za-z0-9_-]+")
_PADDINGS = {
    "RS256": lambda: padding.PKCS1v15(),
    "PS256": lambda: padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=hashes.SHA256.digest_size),
}  # RFC 7518 §3.3 and §3.5: PSS with MGF1 and a salt as long as the hash


@dataclass(frozen=True)
class KeyCredential:
    """A certificate uploaded to an app registration (Certificates & secrets > Certificates)."""

    certificate: x509.Certificate
    sha1: bytes
    sha256: bytes

    @classmethod
    def from_pem(cls, pem: str | bytes) -> "KeyCredential":
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii") if isinstance(pem, str) else pem)
        return cls(certificate, certificate.fingerprint(hashes.SHA1()), certificate.fingerprint(hashes.SHA256()))

    def matches(self, header: dict[str, Any]) -> bool:
        if "x5t#S256" in header:
            return _digest(header["x5t#S256"]) == self.sha256
        return _digest(header.get("x5t")) == self.sha1


def verify_client_assertion(assertion: str, *, client_id: str, key_credentials: Iterable[KeyCredential],
                            audience: str, now: datetime) -> None:
    """Accept ``assertion`` from ``client_id`` posted to ``audience`` (the token endpoint's URL), or raise
    :class:`~emulator.aadsts.AadstsError` with Entra's code."""
    header, claims, signing_input, signature = _parse(assertion)
    thumbprint = header.get("x5t#S256", header.get("x5t"))
    if not isinstance(thumbprint, str):
        raise AadstsError(50027, reason="No certificate thumbprint specified in token header.")
    credential = next((c for c in key_credentials if c.matches(header)), None)
    shown = _hex(thumbprint)
    if credential is None:
        raise AadstsError(700027, reason="The key was not found.", thumbprint=shown, client_id=client_id)
    if not _signature_verifies(credential, header["alg"], signing_input, signature):
        raise AadstsError(700027, reason="The provided signature value did not match the expected signature value.",
                          thumbprint=shown, client_id=client_id, found=_found_key(credential))
    for name in ("aud", "iss", "sub", "exp", "jti"):
        if claims.get(name) in (None, ""):
            raise AadstsError(90014, field=name)
    if claims["iss"] != client_id or claims["sub"] != client_id:
        raise AadstsError(700021)
    if audience not in (claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]):
        raise AadstsError(700023)
    _check_time_range(claims, now)


def _parse(assertion: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, claims, signing input and signature of a compact JWS, strictly: three base64url parts of a
    capped size whose first two are JSON objects, and an RS256 or PS256 header."""
    parts = assertion.split(".") if len(assertion) <= MAX_ASSERTION_CHARS else []
    if len(parts) != 3 or not all(_PART.fullmatch(part) for part in parts):
        raise AadstsError(50027, reason="Token format is not valid.")
    try:
        header, claims = (json.loads(b64url_decode(part)) for part in parts[:2])
        signature = b64url_decode(parts[2])
    except (ValueError, binascii.Error):
        raise AadstsError(50027, reason="Token format is not valid.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AadstsError(50027, reason="Token format is not valid.")
    if header.get("alg") not in _PADDINGS:
        raise AadstsError(50027, reason=f"The signing algorithm '{str(header.get('alg'))[:20]}' is not supported.")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def _signature_verifies(credential: KeyCredential, algorithm: str, signing_input: bytes, signature: bytes) -> bool:
    key = credential.certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, signing_input, _PADDINGS[algorithm](), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _check_time_range(claims: dict[str, Any], now: datetime) -> None:
    try:
        expires = datetime.fromtimestamp(float(claims["exp"]), timezone.utc)
        valid_from = datetime.fromtimestamp(float(claims.get("nbf", 0)), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        raise AadstsError(50027, reason="Token format is not valid.") from None
    if not valid_from <= now < expires:
        raise AadstsError(700024, now=_entra_time(now), valid_from=_entra_time(valid_from),
                          expires=_entra_time(expires))


def _digest(thumbprint: Any) -> bytes | None:
    """The bytes a header thumbprint stands for: base64url, with or without the padding msal leaves on."""
    text = thumbprint.rstrip("=") if isinstance(thumbprint, str) else ""
    if not _PART.fullmatch(text):
        return None
    try:
        return b64url_decode(text)
    except (ValueError, binascii.Error):
        return None


def _hex(thumbprint: str) -> str:
    """A header thumbprint as Entra prints it (upper-case hex)."""
    digest = _digest(thumbprint)
    return digest.hex().upper() if digest is not None else "(not base64url)"


def _found_key(credential: KeyCredential) -> str:
    def stamp(moment: datetime) -> str:
        return moment.strftime("%m/%d/%Y %H:%M:%S")

    certificate = credential.certificate
    return f", Found key 'Start={stamp(certificate.not_valid_before_utc)}, End={stamp(certificate.not_valid_after_utc)}'"


def _entra_time(moment: datetime) -> str:
    """``2024-10-02T22:05:03.6755165Z``: seven fractional digits, as Entra's messages show."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"
