import pytest
from cryptography.fernet import Fernet

from app.core.crypto import Cipher, DecryptionError


def test_round_trip_and_ciphertext_hides_plaintext():
    cipher = Cipher([Fernet.generate_key()])
    token = cipher.encrypt("refresh-token-value")
    assert b"refresh-token-value" not in token
    assert cipher.decrypt_text(token) == "refresh-token-value"


def test_rotation_keeps_old_ciphertexts_readable_and_rewrites_them_with_the_new_key():
    old, new = Fernet.generate_key(), Fernet.generate_key()
    stored = Cipher([old]).encrypt("secret")
    rotated_cipher = Cipher([new, old])
    assert rotated_cipher.decrypt_text(stored) == "secret"
    rewritten = rotated_cipher.rotate(stored)
    assert Cipher([new]).decrypt_text(rewritten) == "secret"
    with pytest.raises(DecryptionError):
        Cipher([old]).decrypt(rewritten)


def test_wrong_key_fails_loudly():
    stored = Cipher([Fernet.generate_key()]).encrypt("secret")
    with pytest.raises(DecryptionError, match="TOKEN_ENCRYPTION_KEYS"):
        Cipher([Fernet.generate_key()]).decrypt(stored)


def test_no_keys_is_an_error():
    with pytest.raises(ValueError):
        Cipher([])
