"""The throwaway CA and server certificate: a proper chain that strict verification accepts."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from emulator import Emulator
from emulator.tls import create_certificates


def _load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_is_a_certificate_authority(tmp_path):
    ca = _load(create_certificates(tmp_path).ca_file)

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign


def test_server_certificate_names_loopback_and_serves_tls_clients(tmp_path):
    files = create_certificates(tmp_path)
    leaf, ca = _load(files.cert_file), _load(files.ca_file)

    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_strict_openssl_verification_passes(emulator, host):
    context = ssl.create_default_context(cafile=emulator.ca_file)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    connection = http.client.HTTPSConnection(host, emulator.port, context=context, timeout=5)
    try:
        connection.request("GET", "/organizations/v2.0/.well-known/openid-configuration")
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def test_requests_trusts_the_server_only_with_the_ca_file(emulator):
    url = f"{emulator.base_url}/organizations/v2.0/.well-known/openid-configuration"

    assert requests.get(url, verify=emulator.ca_file, timeout=5).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, verify=True, timeout=5)


def test_stop_deletes_the_certificate_files():
    emu = Emulator().start()
    ca_file = emu.tls.ca_file
    assert ca_file.exists()
    emu.stop()
    assert not ca_file.exists()


def test_a_silent_client_does_not_stall_other_requests(emulator):
    idle = socket.create_connection(("127.0.0.1", emulator.port))  # connects, never starts TLS
    try:
        response = requests.get(f"{emulator.base_url}/_emulator/state", verify=emulator.ca_file, timeout=3)
    finally:
        idle.close()

    assert response.status_code == 200
