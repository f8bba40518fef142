"""At LOG_LEVEL=DEBUG msal logs each token request's parameters, and request lines carry ``?code=``:
no authorization code, PKCE verifier, token or client secret reaches any log, whoever's handler
writes it (the service's own, or one a host application such as gunicorn installs)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from app.core.crypto import Cipher
from app.core.db import open_db
from app.core.logs import REDACTED, configure_logging
from tests.drills.harness import ServiceProcess
from tests.e2e.conftest import api, service  # noqa: F401  (the service and the emulator on loopback)
from tests.e2e.harness import Browser
from tests.e2e.waiting import wait_for


def sign_in_secrets(service, record_id: int, *, secret_key: str, cipher: Cipher, database: str) -> list[str]:
    """Connect Outlook as Megan; return every credential the sign-in handled."""
    browser = Browser(service)
    auth_uri = browser.start_connect(record_id, "megan")
    signer = Flask(__name__)
    signer.secret_key = secret_key
    session = SecureCookieSessionInterface().get_signing_serializer(signer).loads(browser.http.cookies["session"])
    verifier = json.loads(cipher.decrypt_text(session["sign_in_flow"]))["code_verifier"]
    callback = service.emulator.authorize(auth_uri, service.demo["users"]["megan"])
    code = parse_qs(urlsplit(callback).query)["code"][0]
    assert browser.get(callback).status_code == 302
    with open_db(database) as db:
        wait_for(lambda: list(db.query("SELECT 1 FROM subscriptions WHERE status = 'active'")),
                 message="the subscription (the worker used the tokens)")
        [row] = list(db.query("SELECT token_cache FROM connections"))
    cache = json.loads(cipher.decrypt_text(row["token_cache"]))
    tokens = [entry["secret"] for kind in ("AccessToken", "RefreshToken", "IdToken")
              for entry in cache[kind].values()]
    return [code, verifier, service.demo["client_secret"], *tokens]


def assert_no_secret_in(text: str, secrets: list[str]) -> None:
    assert len(secrets) == 6 and all(len(secret) >= 16 for secret in secrets)
    leaked = [secret[:12] for secret in secrets if secret in text]
    assert not leaked, f"secrets in the log: {leaked}"


def test_python_m_app_at_debug_logs_no_sign_in_secret(emulator, tmp_path: Path):
    process = ServiceProcess(emulator, tmp_path, LOG_LEVEL="DEBUG").start()
    try:
        record = process.post("/api/records", json={"title": "Acme"}).json()
        secrets = sign_in_secrets(process, record["id"], secret_key=process.env["SECRET_KEY"],
                                  cipher=Cipher([process.env["TOKEN_ENCRYPTION_KEYS"]]), database=process.database)
    finally:
        process.stop()
    output = process.log_path.read_text()
    assert f'"code_verifier": "{REDACTED}"' in output  # msal did log the token request, masked once
    assert_no_secret_in(output, secrets)


def test_a_host_applications_handler_gets_no_sign_in_secret(service, api, caplog):
    caplog.set_level(logging.DEBUG)  # pytest's handler on the root logger, as gunicorn would install its own
    record = api.create_record()
    secrets = sign_in_secrets(service, record["id"], secret_key=service.app.secret_key,
                              cipher=service.services.cipher, database=service.app.config["DATABASE_PATH"])
    assert f'"code": "{REDACTED}"' in caplog.text
    assert_no_secret_in(caplog.text, secrets)


@pytest.fixture
def root_logger():
    """The root logger, put back as it was after the test."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield root
    root.handlers[:], root.level = saved[0], saved[1]


def test_the_services_handler_masks_codes_in_any_loggers_request_lines(root_logger, capsys):
    configure_logging("DEBUG")  # as python -m app does
    logging.getLogger("an.access.log").info('"GET /auth/callback?code=0.AbCdEfGhIjKlMnOp&state=s1 HTTP/1.1" 302')
    logging.getLogger("another.library").debug("token request: {'code_verifier': 'v3r1f13r-v3r1f13r'}")
    output = capsys.readouterr().err
    assert "0.AbCdEfGhIjKlMnOp" not in output and "v3r1f13r" not in output
    assert f"code={REDACTED}&state=s1" in output
