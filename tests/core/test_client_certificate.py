"""Reading AZURE_CLIENT_CERTIFICATE_PATH: a certificate with its own key is a credential; anything else is
refused at start-up in one sentence that names the variable and never shows the key."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.core.client_certificate import load_client_certificate
from app.core.config import ConfigError, load_settings
from tests.certificates import make_certificate
from tests.core.test_config import PRODUCTION

WITH_CERTIFICATE = {key: value for key, value in PRODUCTION.items() if key != "AZURE_CLIENT_SECRET"}


@pytest.fixture(scope="module")
def certificate():
    return make_certificate(days=90)


def test_a_certificate_with_its_key_is_the_credential(tmp_path, certificate):
    path = certificate.write(tmp_path / "app.pem")

    settings = load_settings({**WITH_CERTIFICATE, "AZURE_CLIENT_CERTIFICATE_PATH": path})

    loaded = settings["AZURE_CLIENT_CERTIFICATE_PATH"]
    assert loaded.sha1_thumbprint == certificate.certificate.fingerprint(hashes.SHA1()).hex().upper()
    assert loaded.not_after == certificate.certificate.not_valid_after_utc
    assert serialization.load_pem_private_key(loaded.private_key_pem.encode(), None).public_key() == \
        certificate.key.public_key()
    assert "PRIVATE KEY" not in repr(loaded)


def test_the_key_may_come_first_and_the_chain_may_follow(tmp_path, certificate):
    issuer = make_certificate()
    (tmp_path / "app.pem").write_bytes(certificate.key_pem + certificate.certificate_pem + issuer.certificate_pem)

    loaded = load_client_certificate(str(tmp_path / "app.pem"))

    assert loaded.certificate_pem.encode() == certificate.certificate_pem  # the key's own, alone, goes to msal


def test_a_key_of_another_certificate_is_refused(tmp_path, certificate):
    (tmp_path / "app.pem").write_bytes(certificate.certificate_pem + make_certificate().key_pem)

    with pytest.raises(ConfigError) as refused:
        load_settings({**WITH_CERTIFICATE, "AZURE_CLIENT_CERTIFICATE_PATH": str(tmp_path / "app.pem")})

    assert str(refused.value) == (f"AZURE_CLIENT_CERTIFICATE_PATH: the private key in {tmp_path / 'app.pem'} "
                                  "does not belong to its certificate")


@pytest.mark.parametrize(("contents", "problem"), [
    (None, "cannot read {path}: No such file or directory"),
    (lambda c: c.certificate_pem, "{path} holds no PEM private key"),
    (lambda c: c.key_pem, "{path} holds no PEM certificate"),
    (lambda c: b"not a certificate at all", "{path} holds no PEM certificate"),
    (lambda c: c.certificate_pem + c.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")), "the private key in {path} is encrypted"),
], ids=["missing", "no-key", "no-certificate", "not-pem", "encrypted-key"])
def test_an_unusable_file_stops_start_up_naming_the_variable(tmp_path, certificate, contents, problem):
    path = tmp_path / "app.pem"
    if contents is not None:
        path.write_bytes(contents(certificate))

    with pytest.raises(ConfigError) as refused:
        load_settings({**WITH_CERTIFICATE, "AZURE_CLIENT_CERTIFICATE_PATH": str(path)})

    message = str(refused.value)
    assert message.startswith("AZURE_CLIENT_CERTIFICATE_PATH: " + problem.format(path=path))
    assert not any(line in message for line in certificate.key_pem.decode().splitlines()[1:-1])  # none of the key


def test_a_key_that_is_not_rsa_is_refused(tmp_path):
    path = make_certificate(key=ec.generate_private_key(ec.SECP256R1())).write(tmp_path / "app.pem")

    with pytest.raises(ValueError, match="is not an RSA key"):
        load_client_certificate(path)


def test_a_secret_and_a_certificate_together_are_refused(tmp_path, certificate):
    environ = {**PRODUCTION, "AZURE_CLIENT_CERTIFICATE_PATH": certificate.write(tmp_path / "app.pem")}

    with pytest.raises(ConfigError, match="^AZURE_CLIENT_SECRET and AZURE_CLIENT_CERTIFICATE_PATH are both set"):
        load_settings(environ)


def test_a_client_id_needs_a_secret_or_a_certificate():
    with pytest.raises(ConfigError, match="^AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH is required"):
        load_settings(WITH_CERTIFICATE)
