"""People and organizations end to end (ARCHITECTURE section 4, "Isolation"): pages serve signed-in people,
a person opens only their organization's records and sends only as themselves, and no mail crosses between
organizations. Contoso is made its own organization here; Fabrikam stays in the default one."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from subscriptions.renewal import renew_one
from tests.e2e.harness import Browser
from tests.e2e.mail import MEGAN, VENDOR, thread, upload, wait_for_thread
from tests.e2e.waiting import wait_for
from tests.forms import hidden

pytestmark = pytest.mark.both_engines


@pytest.fixture
def contoso(service, api) -> dict:
    rv = api.post("/api/organizations", json={"name": "Contoso", "tenant_ids": [service.demo["tenants"]["contoso"]]})
    assert rv.status_code == 201, rv.text
    return rv.json()


def rows(service, sql, *params):
    return list(service.services.db().query(sql, list(params)))


def compose_form(page: str, idempotency_key: str | None = None) -> dict[str, str]:
    """A new message as the record page's compose form posts it (``idempotency_key`` when the page has none)."""
    return {"csrf_token": hidden(page, "csrf_token"), "idempotency_key": idempotency_key or hidden(page, "idempotency_key"),
            "mode": "new", "to": "dana@acme.example", "subject": "Hello", "body": "From the record."}


def active_subscription_of(service, connection_id):
    return wait_for(lambda: next(iter(rows(service, "SELECT * FROM subscriptions WHERE connection_id = ? AND "
                                           "status = 'active'", connection_id)), None), message="a subscription")


def test_an_anonymous_visitor_is_sent_to_sign_in_and_can_send_nothing(service, browser, api):
    record = api.create_record()
    for path in (f"/records/{record['id']}", f"/connect/outlook?record_id={record['id']}"):
        rv = browser.get(path)
        assert rv.status_code == 302 and rv.headers["Location"].startswith("/login?next=/")
    rv = browser.post(f"/records/{record['id']}/compose", data={"to": "x@outside.example", "body": "hi"})
    assert rv.status_code == 302 and rv.headers["Location"] == f"/login?next=/records/{record['id']}"
    rv = browser.post("/connect/outlook", data={"record_id": str(record["id"])})
    assert rv.status_code == 302 and rv.headers["Location"].startswith("/login?next=/connect/outlook")
    assert rows(service, "SELECT * FROM outbox") == [] and rows(service, "SELECT * FROM connections") == []


def test_a_person_opens_only_records_of_their_organization(service, browser, api, contoso):
    theirs = api.create_record("Default organization's file")
    own = api.create_record("Contoso's file", organization_id=contoso["id"])
    browser.sign_in("megan")
    assert browser.get(f"/records/{own['id']}").status_code == 200
    page = browser.get(f"/records/{theirs['id']}", headers={"Accept": "text/html"})
    assert page.status_code == 403 and "another organization" in page.text and "Default organization's" not in page.text
    connect = browser.get(f"/connect/outlook?record_id={theirs['id']}")
    assert connect.status_code == 403 and "This record belongs to another organization" in connect.text
    assert api.get(f"/api/records/{theirs['id']}").status_code == 200, "the platform's backend sees every record"


def test_a_second_person_connects_from_the_page_and_sends_only_as_themselves(service, api):
    record = api.create_record()
    megan = Browser(service)
    assert megan.connect(record["id"], "megan").status_code == 302
    admin = Browser(service)
    admin.sign_in("contoso_admin")
    page = admin.get(f"/records/{record['id']}").text
    assert "Megan Bowen" in page and "Connect your Outlook too" in page
    assert "Write an email" not in page, "nobody composes as Megan but Megan"
    [megans] = rows(service, "SELECT id FROM connections")
    forged = {**compose_form(page, "forged-1"), "connection_id": str(megans["id"])}  # a hand-made form
    rv = admin.post(f"/records/{record['id']}/compose", data=forged)
    assert rv.status_code == 422 and "your own mailbox" in rv.text
    assert rows(service, "SELECT * FROM outbox") == []

    assert admin.connect(record["id"], "contoso_admin").status_code == 302
    page = admin.get(f"/records/{record['id']}").text
    [mine] = rows(service, "SELECT id FROM connections WHERE email = 'admin@contoso.example'")
    assert f'name="connection_id" value="{mine["id"]}"' in page and f'<option value="{megans["id"]}"' not in page
    rv = admin.post(f"/records/{record['id']}/compose", data={**compose_form(page), "connection_id": str(mine["id"])})
    assert rv.status_code == 303
    [send] = rows(service, "SELECT connection_id FROM outbox")
    assert send["connection_id"] == mine["id"]


def test_the_api_refuses_a_send_from_another_organization_s_mailbox(service, browser, api, contoso):
    own = api.create_record("Contoso's file", organization_id=contoso["id"])
    other = api.create_record("Default organization's file")
    assert browser.connect(own["id"], "megan").status_code == 302
    [connection] = rows(service, "SELECT id FROM connections")
    send = {"connection_id": connection["id"], "to": ["x@outside.example"], "body": "hello"}
    rv = api.post(f"/api/records/{other['id']}/messages", json=send, headers={"Idempotency-Key": "cross"})
    assert rv.status_code == 403 and rv.json()["error"]["code"] == "connection_not_allowed"
    assert rows(service, "SELECT * FROM outbox") == []
    rv = api.post(f"/api/records/{own['id']}/messages", json=send, headers={"Idempotency-Key": "own"})
    assert rv.status_code == 202, rv.text


def test_a_message_id_both_organizations_know_links_each_mailbox_only_to_its_own_record(service, api, contoso):
    first = "<shared.1@acme.example>"
    records = {"megan": api.create_record("Contoso's file", organization_id=contoso["id"]),
               "fabrikam_admin": api.create_record("Fabrikam's file")}
    for user, record in records.items():
        upload(api, record["id"], message_id=first)
        assert Browser(service).connect(record["id"], user).status_code == 302
    for [connection] in ([c] for c in rows(service, "SELECT id FROM connections")):
        active_subscription_of(service, connection["id"])
    addresses = {"megan": MEGAN, "fabrikam_admin": "admin@fabrikam.example"}
    for user in records:
        service.emulator.deliver_email(service.demo["users"][user], subject="RE: Onboarding documents",
                                       body=f"Reply to {user}", sender=VENDOR, to=[addresses[user]],
                                       in_reply_to=first, references=[first],
                                       internet_message_id=f"<reply.{user}@acme.example>")
    for user, record in records.items():
        [upload_entry, reply] = wait_for_thread(api, record["id"], 2)
        assert reply["body_preview"] == f"Reply to {user}"
    wait_for(lambda: len(rows(service, "SELECT * FROM message_copies")) >= 2, message="both replies linked")
    for record in records.values():
        assert len(thread(api, record["id"])) == 2, "each record holds only its own mailbox's reply"


def test_a_revoked_mailbox_on_a_record_with_several_is_named_with_reconnect(service, api):
    record = api.create_record()
    megan, admin = Browser(service), Browser(service)
    assert megan.connect(record["id"], "megan").status_code == 302
    assert admin.connect(record["id"], "contoso_admin").status_code == 302
    [megans] = rows(service, "SELECT id FROM connections WHERE email = ?", MEGAN)
    subscription = active_subscription_of(service, megans["id"])
    service.emulator.revoke_user(service.demo["users"]["megan"])
    service.services.identity.forget(megans["id"])
    assert renew_one(service.services, subscription, datetime.now(timezone.utc)) == "reconnect_required"

    page = admin.get(f"/records/{record['id']}").text
    assert f"Reconnect required</span> Megan Bowen &lt;{MEGAN}&gt;: Microsoft no longer accepts its sign-in" in page
    assert "AADSTS" not in page.split("Detail:")[0], "plain words first; the code only on the detail line"
    assert "Connected</span> as Contoso Admin" in page and "Write an email" in page, "the admin still sends"
    page = megan.get(f"/records/{record['id']}").text
    assert "Reconnect Outlook" in page and "Write an email" not in page
    assert megan.connect(record["id"], "megan").status_code == 302
    assert "Reconnect required" not in megan.get(f"/records/{record['id']}").text
