"""Anonymous sign-in starts cannot grow the database: the flow travels encrypted in the browser's
session cookie, lasts 15 minutes, and starts are rate-limited per client address."""

from __future__ import annotations

import json
import time

from cryptography.fernet import Fernet

from app.core.db import store_location, thread_db
from tests.e2e.conftest import api, browser, service  # noqa: F401  (the service and the emulator on loopback)
from tests.forms import sign_in_operator


def database_pages(service) -> int:
    """The database's size in pages as its connections see it (the write-ahead log included)."""
    return thread_db(store_location(service.app.config)).execute("PRAGMA page_count").fetchone()[0]


def session_of(service, browser) -> dict:
    serializer = service.app.session_interface.get_signing_serializer(service.app)
    return serializer.loads(browser.http.cookies["session"])


def test_3000_anonymous_sign_in_starts_do_not_grow_the_database_and_are_rate_limited(service):
    client = service.app.test_client()
    before = database_pages(service)
    answers = [client.get("/login?next=/records/1") for _ in range(3000)]
    assert database_pages(service) == before
    statuses = [rv.status_code for rv in answers]
    started = statuses.count(302)
    assert 10 <= started <= 100 and statuses == [302] * started + [429] * (3000 - started)
    limited = answers[-1]
    assert 0 < int(limited.headers["Retry-After"]) <= 3600
    assert "Too many sign-ins" in limited.text
    # Another client address is not affected.
    assert client.get("/login", environ_base={"REMOTE_ADDR": "192.0.2.8"}).status_code == 302


def test_the_flow_travels_encrypted_in_a_small_session_cookie(service, browser, api):
    record = api.create_record()
    sign_in_operator(browser)
    browser.get("/admin/consent")
    browser.start_connect(record["id"], "megan")
    cookie = browser.http.cookies["session"]
    assert len(cookie) < 3500
    session = session_of(service, browser)
    flow = json.loads(service.services.cipher.decrypt_text(session["sign_in_flow"]))
    assert flow["code_verifier"] and flow["record_id"] == record["id"] and "auth_uri" not in flow
    assert flow["code_verifier"] not in json.dumps(session)  # only its ciphertext is in the cookie


def test_a_flow_older_than_15_minutes_is_refused(service, browser, api):
    record = api.create_record()
    auth_uri = browser.start_connect(record["id"], "megan")
    session = session_of(service, browser)
    flow = service.services.cipher.decrypt(session["sign_in_flow"])
    key = service.app.config["TOKEN_ENCRYPTION_KEYS"][0]
    session["sign_in_flow"] = Fernet(key).encrypt_at_time(flow, int(time.time()) - 16 * 60).decode()
    serializer = service.app.session_interface.get_signing_serializer(service.app)
    browser.http.cookies.clear()
    browser.http.cookies.set("session", serializer.dumps(session))

    rv = browser.get(service.emulator.authorize(auth_uri, service.demo["users"]["megan"]))
    assert rv.status_code == 400 and "Sign-in expired" in rv.text
    assert api.get("/api/connections").json()["connections"] == []
