"""People on the record page in a real browser (issue 16): Option 1 (an admin consents for everyone), a
second person connecting their own mailbox, Option 2 (admin approval required), and access revoked in Azure."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import TIMEOUT_MS, snapshot
from tests.browser.walks import click_connect, sign_in_in_browser

MEGAN = "megan@contoso.example"


@pytest.fixture
def record(api):
    return api.create_record("Acme Corp vendor onboarding")


@pytest.fixture
def second_page(chromium, service, emulator) -> Page:
    """Another person's browser (a context of its own: its own cookies)."""
    context: BrowserContext = chromium.new_context(base_url=service.base_url, ignore_https_errors=True,
                                                   locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def outlook(page: Page):
    return page.get_by_role("region", name="Outlook", exact=True)


def test_option_1_an_admin_consents_for_everyone_then_a_colleague_connects_her_own_mailbox(
        page, second_page, record):
    sign_in_in_browser(page, record["id"], "Contoso Admin", for_organization=True)
    click_connect(page, record["id"], "Contoso Admin")
    expect(outlook(page)).to_contain_text("Connected as Contoso Admin <admin@contoso.example>")

    colleague = second_page
    sign_in_in_browser(colleague, record["id"], "Megan Bowen", consent=False)  # no prompt: the admin consented
    expect(colleague.get_by_role("banner")).to_contain_text("Megan Bowen")
    expect(outlook(colleague)).to_contain_text("Connected as Contoso Admin")
    expect(colleague.get_by_role("region", name="Write an email")).to_have_count(0)  # not as the admin
    snapshot(colleague, "record-colleague-connected")
    click_connect(colleague, record["id"], "Megan Bowen", button="Connect your Outlook too")
    expect(outlook(colleague)).to_contain_text(f"Connected as Megan Bowen <{MEGAN}>")
    compose = colleague.get_by_role("region", name="Write an email")
    expect(compose).to_contain_text(f"From Megan Bowen <{MEGAN}>")
    expect(compose.get_by_label("From")).to_have_count(0)  # nothing to choose: only her own mailbox
    snapshot(colleague, "record-two-mailboxes")


def test_option_2_approval_required_then_approved_then_connected(page, record, emulator):
    page.goto(f"/records/{record['id']}")
    page.get_by_role("button", name=re.compile("Alex Wilber")).click()
    expect(page.get_by_role("heading", name="Approval required")).to_be_visible()
    page.get_by_label("Enter justification for requesting this app").fill("Vendor files need my mailbox.")
    snapshot(page, "emulator-approval-required")
    page.get_by_role("button", name="Request approval").click()
    expect(page.get_by_role("heading", name="Waiting for admin approval")).to_be_visible()
    snapshot(page, "waiting-for-approval")

    page.goto(f"{emulator.base_url}/_emulator/")  # the admin approves, as in Entra's admin consent requests
    approvals = page.get_by_role("table", name="Admin consent requests")
    expect(approvals).to_contain_text("Vendor files need my mailbox.")
    approvals.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("table", name="Admin consent requests")).to_contain_text("approved")

    sign_in_in_browser(page, record["id"], "Alex Wilber", consent=False)
    click_connect(page, record["id"], "Alex Wilber")
    expect(outlook(page)).to_contain_text("Connected as Alex Wilber <alex@fabrikam.example>")


def test_access_revoked_in_azure_shows_reconnect_by_name_and_reconnecting_restores_it(page, service, record):
    sign_in_in_browser(page, record["id"])
    click_connect(page, record["id"])
    service.emulator.revoke_user(service.demo["users"]["megan"])  # Azure: revoke sessions; Graph tells the service

    broken = outlook(page).get_by_text("Reconnect required")
    for _ in range(60):
        page.reload()
        if broken.count():
            break
        page.wait_for_timeout(250)
    expect(outlook(page)).to_contain_text(f"Reconnect required Megan Bowen <{MEGAN}>: Microsoft no longer accepts")
    expect(page.get_by_role("region", name="Write an email")).to_have_count(0)
    snapshot(page, "record-reconnect-required")
    click_connect(page, record["id"], button="Reconnect Outlook")
    expect(outlook(page)).to_contain_text(f"Connected as Megan Bowen <{MEGAN}>")
    expect(outlook(page)).not_to_contain_text("Reconnect required")
