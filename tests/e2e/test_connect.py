"""Connect Outlook end to end: msal against the emulator over real HTTPS, the service over real HTTP."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from app import build_services
from app.core.db import store_location, thread_db
from app.microsoft.failures import IdentityConfigError, ReconnectRequired
from subscriptions.renewal import renew_one
from tests.e2e.harness import Browser, ServiceServer
from tests.e2e.waiting import wait_for
from tests.forms import sign_in_operator
from tests.tables import everything_stored

pytestmark = pytest.mark.both_engines


def db_of(service):
    return thread_db(store_location(service.app.config))


def connections(service):
    return list(db_of(service).query("SELECT * FROM connections ORDER BY id"))


def active_subscription(service, connection_id):
    return wait_for(lambda: list(db_of(service).query(
        "SELECT * FROM subscriptions WHERE connection_id = ? AND status = 'active'", [connection_id])),
        message="an active subscription")


def test_a_user_connects_and_gets_a_subscription(service, browser, api):
    record = api.create_record()
    rv = browser.connect(record["id"], "megan")
    assert rv.status_code == 302
    assert rv.headers["Location"].startswith(f"/records/{record['id']}")
    page = browser.get(rv.headers["Location"])
    assert page.text.count("Outlook is connected") == 1
    assert "Outlook is connected" not in browser.get(rv.headers["Location"]).text, "the banner shows once"
    [connection] = connections(service)
    assert connection["status"] == "active" and connection["email"] == "megan@contoso.example"
    [subscription] = active_subscription(service, connection["id"])
    assert subscription["resource"] == f"/users/{connection['user_id']}/messages"
    [graph_side] = service.emulator.subscription_list()
    assert graph_side["id"] == subscription["id"]
    assert graph_side["notificationUrl"] == f"{service.base_url}/webhooks/graph"
    assert graph_side["lifecycleNotificationUrl"] == f"{service.base_url}/webhooks/graph/lifecycle"
    assert len(graph_side["clientState"]) >= 32
    assert api.get("/api/connections").json()["connections"][0]["status"] == "active"
    assert "Connected" in browser.get(f"/records/{record['id']}").text


def test_tokens_never_sit_in_the_database_or_logs_in_clear(service, browser, api, caplog):
    caplog.set_level(logging.DEBUG)
    record = api.create_record()
    browser.connect(record["id"], "megan")
    [connection] = connections(service)
    token = service.services.identity.access_token(connection["id"], force_refresh=True)
    cache = service.services.cipher.decrypt_text(connection["token_cache"])
    refresh_token = next(iter(json.loads(cache)["RefreshToken"].values()))["secret"]
    raw = everything_stored(db_of(service), service.app.config)
    for secret in (token, refresh_token, service.demo["client_secret"]):
        assert secret.encode() not in raw
        assert secret not in caplog.text


def test_admin_consents_for_the_organization_then_a_second_user_needs_no_admin(service, browser, api):
    record = api.create_record()
    browser.connect(record["id"], "contoso_admin", on_behalf_of_org=True)
    second = Browser(service)
    # accept=False: had the consent page been shown, declining would fail the sign-in.
    answer = second.connect(record["id"], "megan", accept=False)
    assert answer.status_code == 302, answer.text[:600]
    contoso = service.demo["tenants"]["contoso"]
    assert tenant_states(api)[contoso] == "consented_by_admin", "the ID token's wids named a Global Administrator"
    assert [c["email"] for c in connections(service)] == ["admin@contoso.example", "megan@contoso.example"]


def test_admin_consent_endpoint_success_is_recorded(service, browser, api):
    sign_in_operator(browser)
    rv = browser.get("/admin/consent")
    assert rv.status_code == 302
    url = rv.headers["Location"]
    assert "/organizations/v2.0/adminconsent" in url
    callback = service.emulator.admin_consent(url, service.demo["users"]["fabrikam_admin"])
    page = browser.get(callback)
    assert page.status_code == 200 and "Admin consent recorded" in page.text
    tenants = api.get("/api/tenants").json()["tenants"]
    assert [t["consent_state"] for t in tenants] == ["admin_consented"]
    assert tenants[0]["id"] == service.demo["tenants"]["fabrikam"]


def test_admin_consent_cancel_is_shown_and_nothing_recorded(service, browser, api):
    sign_in_operator(browser)
    url = browser.get("/admin/consent").headers["Location"]
    callback = service.emulator.admin_consent(url, service.demo["users"]["fabrikam_admin"], accept=False)
    page = browser.get(callback)
    assert page.status_code == 400 and "Admin consent was not granted" in page.text
    assert api.get("/api/tenants").json()["tenants"] == []


def test_admin_consent_with_a_forged_state_is_refused(service, browser, api):
    sign_in_operator(browser)
    url = browser.get("/admin/consent").headers["Location"]
    callback = service.emulator.admin_consent(url, service.demo["users"]["fabrikam_admin"])
    forged = callback.replace("state=", "state=x")
    assert browser.get(forged).status_code == 400
    assert api.get("/api/tenants").json()["tenants"] == []


def test_approval_required_explains_what_to_do_and_the_record_remembers(service, browser, api):
    record = api.create_record()
    rv = browser.connect(record["id"], "alex", request_approval=True)
    assert rv.status_code == 403
    assert "Waiting for admin approval" in rv.text and "/admin/consent" in rv.text
    colleague = Browser(service)
    colleague.sign_in("megan")
    assert "Awaiting admin approval" in colleague.get(f"/records/{record['id']}").text
    assert connections(service) == []


def test_approval_required_answers_json_to_api_clients(service, browser, api):
    record = api.create_record()
    auth_uri = browser.get(f"/connect/outlook?record_id={record['id']}").headers["Location"]
    auth_uri = browser.get(auth_uri).headers["Location"]  # the sign-in the page asks for first
    callback = service.emulator.authorize(auth_uri, service.demo["users"]["alex"], request_approval=True)
    rv = browser.get(callback, headers={"Accept": "application/json"})
    assert rv.status_code == 403
    assert rv.json()["error"]["code"] == "approval_requested"
    assert "admin" in rv.json()["error"]["what_next"]


def test_declined_consent_says_so(service, browser, api):
    record = api.create_record()
    rv = browser.connect(record["id"], "megan", accept=False)
    assert rv.status_code == 400 and "Consent declined" in rv.text
    assert connections(service) == []


def test_a_replayed_callback_is_refused_and_stores_nothing_new(service, browser, api):
    record = api.create_record()
    auth_uri = browser.start_connect(record["id"], "megan")
    callback = service.emulator.authorize(auth_uri, service.demo["users"]["megan"])
    assert browser.get(callback).status_code == 302
    before = connections(service)
    assert browser.get(callback).status_code == 400
    assert Browser(service).get(callback).status_code == 400
    assert connections(service) == before


def test_a_callback_with_a_mismatched_state_is_refused(service, browser, api):
    record = api.create_record()
    auth_uri = browser.start_connect(record["id"], "megan")
    callback = service.emulator.authorize(auth_uri, service.demo["users"]["megan"])
    query = parse_qs(urlsplit(callback).query)
    forged = f"/auth/callback?code={query['code'][0]}&state=forged"
    assert browser.get(forged).status_code == 400
    assert connections(service) == []


def test_a_tenant_outside_the_allowlist_is_refused(emulator, app_config):
    server = ServiceServer(emulator, {**app_config, "ALLOWED_TENANTS": "00000000-0000-0000-0000-000000000000"})
    server.start()
    try:
        browser = Browser(server)
        record = server.app.test_client().post("/api/records", json={"title": "x"},
                                               headers={"Authorization": "Bearer test-api-token"}).get_json()
        rv = browser.connect(record["id"], "megan")
        assert rv.status_code == 403 and "Organization not allowed" in rv.text
        assert connections(server) == []
    finally:
        server.stop()


def test_refresh_token_rotation_is_persisted(emulator, app_config):
    emulator.directory.revoke_rotated_refresh_tokens = True  # only the newest refresh token works
    server = ServiceServer(emulator, app_config).start()
    try:
        record = server.app.test_client().post("/api/records", json={"title": "x"},
                                               headers={"Authorization": "Bearer test-api-token"}).get_json()
        Browser(server).connect(record["id"], "megan")
        [connection] = connections(server)
        identity = server.services.identity
        for _ in range(3):
            identity.access_token(connection["id"], force_refresh=True)
        identity.forget(connection["id"])
        # A fresh process (a new Identity) must find the newest refresh token in the database.
        assert build_services(server.app.config).identity.access_token(connection["id"], force_refresh=True)
    finally:
        server.stop()


def test_revoked_grant_turns_reconnect_required_then_reconnecting_restores_it(service, browser, api):
    record = api.create_record()
    browser.connect(record["id"], "megan")
    [connection] = connections(service)
    active_subscription(service, connection["id"])
    subscription = active_subscription(service, connection["id"])[0]
    service.emulator.revoke_user(service.demo["users"]["megan"])
    service.services.identity.forget(connection["id"])
    with pytest.raises(ReconnectRequired):
        service.services.identity.access_token(connection["id"], force_refresh=True)
    assert renew_one(service.services, subscription, datetime.now(timezone.utc)) == "reconnect_required"
    [broken] = connections(service)
    assert broken["status"] == "reconnect_required" and "AADSTS50173" in broken["status_reason"]
    assert "Reconnect Outlook" in browser.get(f"/records/{record['id']}").text
    assert api.get("/api/subscriptions").json()["subscriptions"] == []

    browser.connect(record["id"], "megan")
    [restored] = connections(service)
    assert restored["id"] == connection["id"] and restored["status"] == "active"
    active_subscription(service, connection["id"])


def test_disconnect_deletes_subscriptions_wipes_tokens_and_keeps_history(service, browser, api):
    record = api.create_record()
    browser.connect(record["id"], "megan")
    [connection] = connections(service)
    active_subscription(service, connection["id"])
    rv = api.delete(f"/api/connections/{connection['id']}")
    assert rv.status_code == 200 and rv.json()["status"] == "disconnected"
    assert service.emulator.subscription_list() == []
    [gone] = connections(service)
    assert gone["token_cache"] is None
    assert api.get(f"/api/records/{record['id']}").status_code == 200


def test_an_expired_client_secret_is_an_operator_problem_not_a_user_one(service, browser, api):
    record = api.create_record()
    browser.connect(record["id"], "megan")
    [connection] = connections(service)
    active_subscription(service, connection["id"])
    app_record = service.emulator.directory.find_app(service.demo["client_id"])
    valid_until = app_record.secret_expires_at
    service.emulator.directory.expire_client_secret(service.demo["client_id"])
    with pytest.raises(IdentityConfigError):
        service.services.identity.access_token(connection["id"], force_refresh=True)
    ready = browser.get("/readyz").json()
    assert not ready["checks"]["configuration"]["ok"] and "AADSTS7000222" in ready["checks"]["configuration"]["reason"]
    assert connections(service)[0]["status"] == "active"  # the user did nothing wrong

    app_record.secret_expires_at = valid_until  # the operator renews the secret
    assert service.services.identity.access_token(connection["id"], force_refresh=True)
    assert browser.get("/readyz").json()["checks"]["configuration"]["ok"]


def test_a_mailbox_of_another_organization_s_tenant_is_refused_with_a_page_and_nothing_stored(service, browser, api):
    """Isolation rule 1, through the pages: Contoso is its own organization; a record of the default one
    cannot get Megan's (Contoso) mailbox, whether she opens it or a colleague picks her account at Entra."""
    contoso = api.post("/api/organizations", json={"name": "Contoso",
                                                   "tenant_ids": [service.demo["tenants"]["contoso"]]}).json()
    record = api.create_record("Default organization's file")
    rv = browser.connect(record["id"], "megan")
    assert rv.status_code == 403 and "This record belongs to another organization" in rv.text
    admin = Browser(service)  # Fabrikam's admin is of the default organization, so he may open the record
    callback = service.emulator.authorize(admin.start_connect(record["id"], "fabrikam_admin"),
                                          service.demo["users"]["megan"])
    rv = admin.get(callback)
    assert rv.status_code == 403
    assert "another organization" in rv.text and "nothing was stored" in rv.text
    assert connections(service) == [] and list(db_of(service).query("SELECT * FROM record_connections")) == []
    own = api.create_record("Contoso's file", organization_id=contoso["id"])
    assert browser.connect(own["id"], "megan").status_code == 302


def test_connect_asks_entra_for_the_account_picker_so_no_silent_sign_on_completes_it(service, browser, api):
    auth_uri = browser.start_connect(api.create_record()["id"], "megan")
    assert parse_qs(urlsplit(auth_uri).query)["prompt"] == ["select_account"]


def tenant_states(api) -> dict[str, str]:
    return {t["id"]: t["consent_state"] for t in api.get("/api/tenants").json()["tenants"]}


def test_an_approved_request_is_told_apart_from_consent_of_unknown_kind(service, browser, api):
    """Verify (Option 2): Alex's tenant needs approval; once an admin approves his request and he connects,
    the tenant shows an approved request. Megan's tenant, where users may consent, shows only that consent
    exists: the service cannot tell whether she or an admin for everyone gave it."""
    record = api.create_record()
    assert browser.connect(record["id"], "alex", request_approval=True).status_code == 403
    [request] = service.emulator.directory.approval_requests(service.demo["tenants"]["fabrikam"])
    service.emulator.approve_request(request.id)
    assert browser.connect(record["id"], "alex").status_code == 302
    assert Browser(service).connect(api.create_record()["id"], "megan").status_code == 302
    states = tenant_states(api)
    assert states[service.demo["tenants"]["fabrikam"]] == "admin_approved"
    assert states[service.demo["tenants"]["contoso"]] == "consented"


def test_a_tenant_whose_app_was_removed_shows_access_removed(service, browser, api):
    record = api.create_record()
    assert browser.connect(record["id"], "megan").status_code == 302
    [connection] = connections(service)
    [subscription] = active_subscription(service, connection["id"])
    service.emulator.remove_app(service.demo["tenants"]["contoso"])  # Enterprise applications > Remove
    assert renew_one(service.services, subscription, datetime.now(timezone.utc)) == "reconnect_required"
    tenant = next(t for t in api.get("/api/tenants").json()["tenants"] if t["id"] == service.demo["tenants"]["contoso"])
    assert tenant["consent_state"] == "access_removed" and "AADSTS65001" in tenant["consent_detail"]
    assert tenant["organization_name"] == "Default organization"
    sign_in_operator(browser)
    assert "access removed" in browser.get("/admin").text
