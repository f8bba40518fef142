"""The emulator's control page as a demo tool in a real browser: reply to the record's first email from
Megan's mailbox view, and the reply shows on the record page."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.test_pages import FIRST_ID, db, megan, record, reload_until, wait_until_subscribed  # noqa: F401
from tests.browser.walks import connect_in_browser
from tests.e2e.mail import wait_for_thread


def test_a_reply_sent_from_the_control_page_shows_on_the_record(page, service, api, record, db):
    connect_in_browser(page, record["id"])
    wait_until_subscribed(db)

    page.goto(f"{service.emulator.base_url}/_emulator/")
    page.get_by_role("link", name="Inbox (1)").first.click()  # Contoso Admin's inbox is empty: this is Megan's
    expect(page.get_by_role("heading", level=1)).to_contain_text("Megan Bowen")
    row = page.get_by_role("row").filter(has_text=FIRST_ID)
    row.get_by_role("link", name="Reply to this message").click()
    expect(page.get_by_label("In-Reply-To")).to_have_value(FIRST_ID)
    page.get_by_label("Body").fill("Signed banking form attached.")
    page.get_by_role("button", name="Deliver the reply").click()
    expect(page.get_by_role("status")).to_contain_text("Delivered")
    expect(page.get_by_role("table", name="Messages, newest first")).to_contain_text("RE: Onboarding documents")

    wait_for_thread(api, record["id"], 2)
    page.goto(f"/records/{record['id']}")
    conversation = page.get_by_role("region", name="Conversation")
    reload_until(page, conversation.get_by_role("listitem").filter(has_text="Signed banking form attached."))
