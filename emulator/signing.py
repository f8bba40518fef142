"""RS256 JSON Web Tokens, signed with a key the emulator makes at start and publishes as JWKS.

Microsoft signs id_tokens and access tokens with RS256 and publishes the public keys at
``jwks_uri``. msal (1.38+) does not check id_token signatures, but a service that does can
check ours against the emulator's JWKS exactly as it would against Microsoft's.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class MalformedToken(ValueError):
    """The text is not a JWT this emulator signed (bad shape, encoding, algorithm or signature)."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_json(value: Any) -> str:
    """Compact JSON, base64url-encoded without padding (JWT parts, ``client_info``)."""
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode())


@functools.cache
def _process_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Signer:
    """One RSA key pair: signs tokens, verifies them, and describes itself as a JWK.

    Every signer in a process shares one key, made on first use: generating RSA keys costs
    tens of milliseconds per emulator, and Microsoft, too, signs for every tenant with the
    same few keys. A token from one emulator still fails at another, whose directory never
    issued it.
    """

    def __init__(self) -> None:
        self._key = _process_key()
        numbers = self._key.public_key().public_numbers()
        self._n = b64url_encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
        self._e = b64url_encode(numbers.e.to_bytes(3, "big"))
        self.key_id = b64url_encode(hashlib.sha256(self._n.encode()).digest()[:15])

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.key_id}
        signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
        signature = self._key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url_encode(signature)}"

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a token this signer made, or raise :class:`MalformedToken`."""
        parts = token.split(".")
        if len(parts) != 3:
            raise MalformedToken("not three dot-separated parts")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except ValueError as e:
            raise MalformedToken(f"undecodable part: {e}") from None
        if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
            raise MalformedToken("not an RS256 JWT")
        try:
            self._key.public_key().verify(
                signature, f"{parts[0]}.{parts[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            raise MalformedToken("signature does not verify") from None
        return claims

    def jwk(self) -> dict[str, str]:
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.key_id, "n": self._n, "e": self._e}
