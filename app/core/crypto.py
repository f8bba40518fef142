"""Encryption at rest for tokens and other secrets, with rotatable keys.

Built on :class:`cryptography.fernet.MultiFernet`: the first key of ``TOKEN_ENCRYPTION_KEYS``
encrypts, every key decrypts, so rotation is "add a new key in front, re-encrypt, later drop
the old key".
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class DecryptionError(Exception):
    """Stored ciphertext cannot be decrypted with any configured key (wrong or missing key)."""


class Cipher:
    """Encrypts with the newest key, decrypts with any configured key."""

    def __init__(self, keys: Iterable[str | bytes]) -> None:
        fernets = [Fernet(key) for key in keys]
        if not fernets:
            raise ValueError("at least one encryption key is required")
        self._fernet = MultiFernet(fernets)

    def encrypt(self, plaintext: str | bytes) -> bytes:
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        return self._fernet.encrypt(data)

    def decrypt(self, ciphertext: bytes | str, *, ttl: int | None = None) -> bytes:
        """The plaintext; with ``ttl``, only if it was encrypted at most ``ttl`` seconds ago."""
        try:
            return self._fernet.decrypt(ciphertext, ttl=ttl)
        except InvalidToken:
            raise DecryptionError(
                "stored secret cannot be decrypted with any key in TOKEN_ENCRYPTION_KEYS"
                + (f", or is more than {ttl} s old" if ttl is not None else "")
            ) from None

    def decrypt_text(self, ciphertext: bytes | str, *, ttl: int | None = None) -> str:
        return self.decrypt(ciphertext, ttl=ttl).decode()

    def rotate(self, ciphertext: bytes) -> bytes:
        """Re-encrypt ``ciphertext`` with the newest key (raises :class:`DecryptionError`)."""
        try:
            return self._fernet.rotate(ciphertext)
        except InvalidToken:
            raise DecryptionError(
                "stored secret cannot be decrypted with any key in TOKEN_ENCRYPTION_KEYS"
            ) from None
