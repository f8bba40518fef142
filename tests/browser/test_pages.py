"""The record and admin pages in a real browser: Chromium, the service and the emulator on loopback.

What a person does: open a record, sign in on the emulator's pages (pick an account, accept), click
Connect Outlook and pick the account again, see the record connected; see a vendor's reply appear; send a reply from
the compose form; sign in to the admin page and find the connection and its subscription.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest
from playwright.sync_api import Page, expect

from app.core.db import store_location, thread_db
from tests.browser.conftest import snapshot
from tests.browser.walks import connect_in_browser, sign_in_in_browser
from tests.conftest import API_TOKEN
from tests.e2e.harness import Browser as HttpBrowser
from tests.e2e.waiting import wait_for
from tests.tables import table

VENDOR = {"name": "Dana Whitfield", "address": "dana@acme.example"}
MEGAN = "megan@contoso.example"
FIRST_ID = "<first.1@acme.example>"


@pytest.fixture
def megan(service):
    return service.demo["users"]["megan"]


@pytest.fixture
def db(service):
    return thread_db(store_location(service.app.config))


@pytest.fixture
def record(service, api, megan):
    """A record holding the vendor's first email, which also sits in Megan's inbox."""
    record = api.create_record("Acme Corp vendor onboarding")
    service.emulator.deliver_email(megan, subject="Onboarding documents", body="Attached are our W-9 and banking "
                                   "details.", sender=VENDOR, to=[MEGAN], internet_message_id=FIRST_ID)
    email = EmailMessage()
    email["Message-ID"] = FIRST_ID
    email["From"] = f"{VENDOR['name']} <{VENDOR['address']}>"
    email["To"] = f"Megan Bowen <{MEGAN}>"
    email["Subject"] = "Onboarding documents"
    email["Date"] = "Tue, 03 Nov 2026 09:00:00 +0000"
    email.set_content("Attached are our W-9 and banking details.")
    rv = api.post(f"/api/records/{record['id']}/emails", data=bytes(email), headers={"Content-Type": "message/rfc822"})
    assert rv.status_code == 201, rv.text
    return record


def wait_until_subscribed(db) -> dict:
    """The connection's subscription is live, so mailbox changes now reach the service."""
    return wait_for(lambda: next(table(db, "subscriptions").rows_where("status = 'active'"), None), message="a subscription")


def reload_until(page: Page, locator, timeout: float = 15.0) -> None:
    """Reload the page until ``locator`` is on it, as a person waiting for mail would."""
    def shown() -> bool:
        page.reload()
        return locator.count() > 0
    wait_for(shown, timeout=timeout, interval=0.3, message=f"{locator} after reloading")


def test_connect_outlook_from_the_record_page(page, service, record, db):
    connect_in_browser(page, record["id"])
    expect(page.get_by_role("status")).to_contain_text("Outlook is connected")
    outlook = page.get_by_role("region", name="Outlook", exact=True)
    expect(outlook).to_contain_text(f"Connected as Megan Bowen <{MEGAN}>")
    expect(page.get_by_role("button", name="Connect Outlook", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Connect another mailbox")).to_be_visible()
    expect(page.get_by_role("region", name="Write an email")).to_be_visible()
    snapshot(page, "record-connected")
    [connection] = list(db.query("SELECT email, status FROM connections"))
    assert connection == {"email": MEGAN, "status": "active"}


def test_the_record_page_is_styled_under_its_content_security_policy(page, service, record):
    sign_in_in_browser(page, record["id"])
    rv = page.reload()
    assert "default-src 'none'" in rv.headers["content-security-policy"]
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(245, 247, 250)"  # app.css loaded: --bg


def test_an_inbound_reply_appears_on_the_record(page, service, record, db, megan):
    connect_in_browser(page, record["id"])
    wait_until_subscribed(db)
    service.emulator.deliver_email(megan, subject="RE: Onboarding documents", body="One more form attached.",
                                   sender=VENDOR, to=[MEGAN], in_reply_to=FIRST_ID, references=[FIRST_ID],
                                   internet_message_id="<reply.2@acme.example>")
    conversation = page.get_by_role("region", name="Conversation")
    reload_until(page, conversation.get_by_role("listitem").filter(has_text="One more form attached."))
    messages = conversation.get_by_role("listitem")
    expect(messages).to_have_count(2)
    expect(messages.nth(0)).to_contain_text("upload")
    expect(messages.nth(1)).to_contain_text("inbound")
    expect(messages.nth(1)).to_contain_text("graph")
    expect(messages.nth(1)).to_contain_text("RE: Onboarding documents")
    snapshot(page, "record-inbound-reply")


def test_a_reply_sent_from_the_compose_form_shows_as_outbound(page, service, record, db):
    connect_in_browser(page, record["id"])
    wait_until_subscribed(db)
    wait_for(lambda: list(db.query("SELECT 1 FROM message_copies")), message="the first email found in the mailbox")
    service.emulator.clear_requests()
    compose = page.get_by_role("region", name="Write an email")
    expect(compose.get_by_label("Reply in this conversation")).to_be_checked()
    compose.get_by_label("Message", exact=True).fill("Thanks Dana, all received. We will set you up this week.")
    snapshot(page, "record-compose-filled")
    compose.get_by_role("button", name="Send").click()

    expect(page).to_have_url(re.compile(rf"/records/{record['id']}#sends$"))
    expect(page.get_by_role("status")).to_contain_text("Your reply is queued")
    sends = page.get_by_role("region", name="Recent sends")
    expect(sends.get_by_role("row")).to_have_count(2)  # the header and our send
    snapshot(page, "record-send-queued")

    reload_until(page, sends.get_by_role("cell", name="sent", exact=True))
    outbound = page.get_by_role("region", name="Conversation").get_by_role("listitem").filter(has_text="outbound")
    expect(outbound).to_have_count(1)
    expect(outbound).to_contain_text("Thanks Dana, all received.")
    expect(outbound).to_contain_text(f"<{MEGAN}>")
    snapshot(page, "record-sent")
    sent = [r for r in service.emulator.requests(method="POST") if r["path"].endswith("/send")]
    assert len(sent) == 1


def test_the_admin_page_lists_the_connection_and_its_subscription(page, service, record, db):
    HttpBrowser(service).connect(record["id"], "megan")
    subscription = wait_until_subscribed(db)
    [connection] = list(db.query("SELECT id FROM connections"))

    page.goto("/admin")
    expect(page.get_by_role("heading", name="Operator sign-in")).to_be_visible()
    page.get_by_label("Admin password or API token").fill("not the token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    page.get_by_label("Admin password or API token").fill(API_TOKEN)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="Operations", level=1)).to_be_visible()
    connections = page.get_by_role("region", name="Connections")
    row = connections.get_by_role("row").filter(has_text=MEGAN)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("active")
    subscriptions = page.get_by_role("region", name="Subscriptions")
    row = subscriptions.get_by_role("row").filter(has_text=subscription["id"])
    expect(row).to_have_count(1)
    expect(row).to_contain_text(MEGAN)
    expect(row).to_contain_text(f"connection {connection['id']}")
    expect(page.get_by_role("region", name="Tenants")).to_contain_text("Mail.Send")
    snapshot(page, "admin")
