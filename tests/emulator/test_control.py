"""``/_emulator``: the control API and page, and the request log behind them."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
import requests

REDIRECT_URI = "http://127.0.0.1:8000/auth/callback"


@pytest.fixture
def demo(emulator):
    return emulator.seed_demo(REDIRECT_URI)


@pytest.fixture
def control(emulator):
    """Calls the control API with JSON, as tests and scripts do."""

    def call(method: str, path: str, json: dict | None = None, **kwargs) -> requests.Response:
        return requests.request(method, f"{emulator.base_url}/_emulator{path}", json=json,
                                verify=emulator.ca_file, allow_redirects=False, timeout=5, **kwargs)
    return call


@pytest.fixture
def token(control) -> str:
    """The control page's form token, which every form the page sends carries."""
    return re.search(r'name="csrf_token" value="([^"]+)"', control("GET", "/").text).group(1)


def test_page_shows_the_directory_and_offers_forms(emulator, demo, control):
    page = control("GET", "/")

    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for text in ("Contoso", "Fabrikam", "megan@contoso.example", demo["client_id"], emulator.ca_file,
                 'action="/_emulator/tenants"', 'action="/_emulator/messages"', 'action="/_emulator/faults"',
                 'action="/_emulator/delivery"', 'action="/_emulator/limits"',
                 f'action="/_emulator/users/{demo["users"]["megan"]}/invalidate-sync-state"', "Recent requests"):
        assert text in page.text
    assert "<script" not in page.text


def test_state_lists_tenants_users_apps_and_grants(emulator, demo, control):
    emulator.directory.grant_consent(demo["tenants"]["contoso"], None, demo["client_id"], frozenset({"Mail.Send"}))

    state = control("GET", "/state").json()

    assert {t["name"] for t in state["tenants"]} == {"Contoso", "Fabrikam"}
    assert {u["email"] for u in state["users"]} >= {"admin@contoso.example", "megan@contoso.example"}
    assert state["apps"][0]["redirect_uris"] == [REDIRECT_URI]
    assert state["grants"][0]["scopes"] == ["Mail.Send"] and state["grants"][0]["user_id"] is None
    assert state["subscriptions"] == []
    assert state["delivery"]["drop_rate"] == 0.0 and state["delivery"]["reorder"] is False
    assert state["limits"]["concurrency_limit"] == 4 and state["limits"]["retry_after_penalty"] is True


def test_state_lists_every_live_subscription(emulator, alice, receiver, control):
    expires = (emulator.clock.now() + timedelta(hours=1)).isoformat()
    created = alice.post("/subscriptions", json={"changeType": "created", "notificationUrl": receiver.url,
                                                 "resource": "/me/messages", "expirationDateTime": expires})
    assert created.status_code == 201, created.text

    [listed] = control("GET", "/state").json()["subscriptions"]

    assert listed["id"] == created.json()["id"] and listed["creatorId"] == alice.id


def test_add_a_tenant_user_and_app(emulator, control):
    tenant = control("POST", "/tenants", {"name": "Northwind", "user_consent_allowed": False})
    assert tenant.status_code == 201
    tenant_id = tenant.json()["id"]
    user = control("POST", "/users", {"tenant_id": tenant_id, "email": "ann@northwind.example", "admin": True})
    app = control("POST", "/apps", {"redirect_uris": ["https://svc.example/auth/callback"]})

    assert emulator.directory.tenant(tenant_id).user_consent_allowed is False
    assert emulator.directory.tenant(tenant_id).admin_consent_workflow is True
    assert emulator.directory.user(user.json()["id"]).admin is True
    assert emulator.mail.find_mailbox("ann@northwind.example") is not None
    assert emulator.directory.find_app(app.json()["client_id"]).client_secret == app.json()["client_secret"]


def test_a_form_submission_redirects_back_to_the_page(emulator, control, token):
    response = control("POST", "/tenants", data={"name": "Woodgrove", "admin_consent_workflow": "1",
                                                 "csrf_token": token})

    assert response.status_code == 303 and response.headers["Location"].startswith("/_emulator/?done=")
    tenant, = emulator.directory.tenants()
    assert (tenant.user_consent_allowed, tenant.admin_consent_workflow) == (False, True)


def test_bad_input_and_unknown_ids(control):
    missing = control("POST", "/users", {"tenant_id": "x"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "badRequest"
    assert control("POST", "/users/no-such-user/revoke", {"code": 50173}).status_code == 404
    assert control("POST", "/users", {"tenant_id": "no-such-tenant", "email": "a@b.example"}).status_code == 404
    assert control("POST", "/faults", {"kind": "earthquake"}).status_code == 400


def test_a_failed_form_submission_is_reported_on_the_page(control, token):
    response = control("POST", "/users", data={"email": "a@b.example", "csrf_token": token})

    assert response.status_code == 303 and "failed=" in response.headers["Location"]


def test_revoke_remove_app_and_approve(emulator, demo, control):
    megan, contoso = demo["users"]["megan"], demo["tenants"]["contoso"]
    request = emulator.directory.request_approval(demo["tenants"]["fabrikam"], demo["users"]["alex"],
                                                  demo["client_id"], frozenset({"Mail.Send"}), "please")

    assert control("POST", f"/users/{megan}/revoke", {"code": 50057}).status_code == 200
    assert control("POST", f"/tenants/{contoso}/remove-app").status_code == 200
    assert control("POST", f"/approvals/{request.id}/approve").status_code == 200

    assert emulator.directory.user(megan).disabled
    assert demo["client_id"] in emulator.directory.tenant(contoso).removed_clients
    assert request.status == "approved"


def test_deliver_and_move_an_email(emulator, demo, control):
    megan = demo["users"]["megan"]
    delivered = control("POST", "/messages", {
        "user_id": megan, "from": "vendor@example.com", "to": ["megan@contoso.example"], "subject": "Invoice 7",
        "body": "Please find attached.", "in_reply_to": "<a1@example.com>", "references": ["<a1@example.com>"]})
    assert delivered.status_code == 201
    message = delivered.json()
    assert message["subject"] == "Invoice 7"

    moved = control("POST", "/messages/move", {"user_id": megan, "message_id": message["id"], "folder": "archive"})

    assert moved.status_code == 200 and moved.json()["parentFolderId"] != message["parentFolderId"]
    malformed = control("POST", "/messages/move", {"user_id": megan, "message_id": "nope", "folder": "archive"})
    assert malformed.status_code == 400 and malformed.json()["error"]["message"] == "Id is malformed."


def test_lifecycle_events_are_delegated(emulator, control, monkeypatch):
    sent = []
    monkeypatch.setattr(emulator.subscriptions, "send_lifecycle", lambda *args: sent.append(args))

    response = control("POST", "/lifecycle", {"subscription_id": "sub-1", "event": "missed"})

    assert response.status_code == 202 and sent == [("sub-1", "missed")]


def test_lifecycle_for_an_unknown_subscription_is_404(control):
    assert control("POST", "/lifecycle", {"subscription_id": "nope", "event": "missed"}).status_code == 404


def test_faults_are_set_and_cleared(emulator, demo, control):
    token_url = f"{emulator.base_url}/organizations/oauth2/v2.0/token"
    assert control("POST", "/faults", {"kind": "token_endpoint", "status": 503, "count": 2}).status_code == 201
    graph_fault = {"kind": "graph", "status": 429, "path": "/messages", "nth": 2}
    assert control("POST", "/faults", graph_fault).status_code == 201
    assert control("POST", "/faults", {"kind": "latency", "ms": 5}).status_code == 201
    assert control("POST", "/faults", {"kind": "refresh", "code": 50173}).status_code == 201

    assert requests.post(token_url, verify=emulator.ca_file).status_code == 503
    rule, = emulator.faults.rules
    assert (rule.status, rule.path, rule.nth) == (429, "/messages", 2)
    assert emulator.faults.latency == (5.0, 5.0)

    assert control("DELETE", "/faults").status_code == 200
    assert requests.post(token_url, verify=emulator.ca_file).status_code == 400
    assert emulator.faults.rules == [] and emulator.directory.injected.take_refresh_failure("any") is None


def test_clock_advances(emulator, control):
    before = emulator.clock.now()

    response = control("POST", "/clock/advance", {"seconds": 7200})

    assert emulator.clock.now() - before >= timedelta(hours=2)
    assert datetime.fromisoformat(response.json()["now"]) - before >= timedelta(hours=2)


def test_invalidating_sync_state_makes_the_next_delta_call_410(alice, control):
    first = alice.get("/me/mailFolders('inbox')/messages/delta")
    delta_link = first.json()["@odata.deltaLink"]

    response = control("POST", f"/users/{alice.id}/invalidate-sync-state")

    assert response.status_code == 200
    gone = alice.session.get(delta_link)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "syncStateNotFound"
    assert control("POST", "/users/no-such-user/invalidate-sync-state").status_code == 404


def test_delivery_knobs(emulator, control):
    knobs = {"replay_rate": 0.5, "replay_count": 2, "reorder": True, "drop_rate": 0.1, "delay_rate": 0.2, "delay": 1}

    response = control("POST", "/delivery", knobs)

    assert response.status_code == 200 and response.json() | knobs == response.json()
    config = emulator.subscriptions.delivery.config
    assert (config.replay_rate, config.replay_count, config.reorder, config.drop_rate, config.delay) == (
        0.5, 2, True, 0.1, 1.0)
    assert config.created_then_updated is True  # JSON changes only what it names


@pytest.mark.parametrize("knobs", [{"drop_rate": 2}, {"delay": -1}, {"replay_count": "many"}, {"reorder": "maybe"},
                                   {"workers": 3}, {"nope": 1}])
def test_bad_delivery_knobs_are_400_and_change_nothing(emulator, control, knobs):
    before = emulator.configure_delivery()

    response = control("POST", "/delivery", {"reorder": True, **knobs})

    assert response.status_code == 400 and response.json()["error"]["code"] == "badRequest"
    assert emulator.configure_delivery() == before


def test_the_delivery_form_sets_every_knob_it_shows(emulator, control, token):
    response = control("POST", "/delivery", data={"drop_rate": "0.25", "reorder": "1", "delay": "",
                                                  "csrf_token": token})

    assert response.status_code == 303
    config = emulator.subscriptions.delivery.config
    assert (config.drop_rate, config.reorder, config.delay) == (0.25, True, 0.2)
    assert config.created_then_updated is False  # an unchecked box


def test_throttling_limits(emulator, alice, control):
    response = control("POST", "/limits", {"concurrency_limit": 0, "rate_window": 60, "retry_after_penalty": False})

    assert response.status_code == 200
    assert response.json() == {"concurrency_limit": 0, "rate_limit": 10_000, "rate_window": 60.0,
                               "concurrency_retry_after": 1, "retry_after_penalty": False}
    throttled = alice.get("/me/messages")
    assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "ApplicationThrottled"
    assert control("POST", "/limits", {"rate_limit": -1}).status_code == 400
    assert control("POST", "/limits", {"burst": 5}).status_code == 400
    assert emulator.faults.rate_limit == 10_000


def test_request_log_records_every_request(emulator, control):
    big = b"x" * (70 * 1024)
    requests.post(f"{emulator.base_url}/nowhere?a=1&b=two", data=big, verify=emulator.ca_file,
                  headers={"X-Test": "yes", "Content-Type": "application/octet-stream"})
    control("GET", "/state")

    first, second = emulator.requests()
    assert (first["method"], first["path"], first["query"], first["status"]) == ("POST", "/nowhere",
                                                                                {"a": "1", "b": "two"}, 404)
    assert first["headers"]["x-test"] == first["headers"]["X-Test"] == "yes"
    assert first["body"] == big[:64 * 1024]
    assert first["time"] <= emulator.clock.now()
    assert (second["path"], second["status"]) == ("/_emulator/state", 200)
    assert emulator.requests(method="get") == [second]
    assert emulator.requests(path_prefix="/_emulator") == [second]


def test_request_log_api(emulator, control):
    requests.post(f"{emulator.base_url}/organizations/oauth2/v2.0/token", data={"grant_type": "refresh_token"},
                  verify=emulator.ca_file)

    listed = control("GET", "/requests", params={"path_prefix": "/organizations", "limit": 5}).json()

    assert [(r["method"], r["status"], r["body"]) for r in listed] == [("POST", 400, "grant_type=refresh_token")]
    assert control("DELETE", "/requests").status_code == 200
    assert [r["method"] for r in emulator.requests()] == ["DELETE"]  # the clearing call itself is recorded
