"""The service authenticating with a certificate (AZURE_CLIENT_CERTIFICATE_PATH) instead of a secret, end to end:
real msal signs client assertions, the emulator checks them as Entra does."""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

import pytest
import requests
from cryptography.hazmat.primitives import hashes

from app.core.db import store_location, thread_db
from emulator.signing import b64url_decode, b64url_encode
from tests.certificates import make_certificate
from tests.conftest import API_TOKEN
from tests.e2e.harness import Browser, ServiceServer
from tests.e2e.waiting import wait_for

TOKEN_PATH = "/organizations/oauth2/v2.0/token"


@pytest.fixture(scope="module")
def uploaded():
    """The certificate uploaded to the demo app registration."""
    return make_certificate()


@pytest.fixture
def serve(emulator, app_config, tmp_path, uploaded):
    """Start the service with ``certificate`` in AZURE_CLIENT_CERTIFICATE_PATH; the app registration has ``uploaded``."""
    started = []

    def start(certificate) -> ServiceServer:
        config = {**app_config, "AZURE_CLIENT_CERTIFICATE_PATH": certificate.write(tmp_path / "outlook.pem")}
        started.append(ServiceServer(emulator, config, registered_certificate=uploaded.certificate_pem).start())
        return started[-1]

    yield start
    for service in started:
        service.stop()


def create_record(service) -> int:
    rv = requests.post(service.url("/api/records"), json={"title": "Acme vendor file"},
                       headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30)
    assert rv.status_code == 201, rv.text
    return rv.json()["id"]


def token_requests(service) -> list[dict[str, list[str]]]:
    return [parse_qs(call["body"].decode()) for call in service.emulator.requests("POST", TOKEN_PATH)]


def db_of(service):
    return thread_db(store_location(service.app.config))


def test_a_person_signs_in_and_connects_outlook_with_the_certificate(serve, uploaded):
    service = serve(uploaded)
    record_id = create_record(service)

    rv = Browser(service).connect(record_id, "megan")  # signs Megan in first, then connects her mailbox

    assert rv.status_code == 302 and rv.headers["Location"].startswith(f"/records/{record_id}"), rv.text
    [connection] = db_of(service).query("SELECT * FROM connections")
    assert connection["status"] == "active" and connection["email"] == "megan@contoso.example"
    wait_for(lambda: list(db_of(service).query("SELECT 1 FROM subscriptions WHERE status = 'active'")),
             message="an active subscription")
    assert service.services.identity.access_token(connection["id"], force_refresh=True)  # the background refresh
    sent = token_requests(service)
    assert [form["grant_type"][0] for form in sent] == ["authorization_code", "authorization_code", "refresh_token"]
    for form in sent:
        assert "client_secret" not in form
        assert form["client_assertion_type"] == ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
        header = json.loads(b64url_decode(form["client_assertion"][0].split(".")[0]))
        assert header["alg"] == "PS256"
        assert header["x5t#S256"].rstrip("=") == b64url_encode(uploaded.certificate.fingerprint(hashes.SHA256()))
    ready = requests.get(service.url("/readyz"), timeout=30).json()["checks"]
    assert ready["certificate"]["ok"] and ready["configuration"]["ok"]


def test_a_certificate_not_uploaded_is_refused_with_a_clear_page_and_nothing_stored(serve, caplog):
    caplog.set_level(logging.DEBUG)  # msal logs its token requests at DEBUG: the assertion must stay masked
    wrong = make_certificate()
    service = serve(wrong)
    record_id = create_record(service)

    rv = Browser(service).connect(record_id, "megan")

    assert rv.status_code == 502
    assert "app registration needs attention" in rv.text and "AADSTS700027" in rv.text
    assert "App registration problem at sign-in: invalid_client (AADSTS700027)" in caplog.text
    assert list(db_of(service).query("SELECT * FROM connections")) == []
    assert list(db_of(service).query("SELECT * FROM login_sessions")) == []  # nobody signed in
    assert list(db_of(service).query("SELECT * FROM tenants")) == []
    ready = requests.get(service.url("/readyz"), timeout=30)
    assert ready.status_code == 503
    assert "AADSTS700027" in ready.json()["checks"]["configuration"]["reason"]
    [form] = token_requests(service)
    assert form["client_assertion"][0] not in caplog.text
    assert not any(line in caplog.text for line in wrong.key_pem.decode().splitlines()[1:-1])
