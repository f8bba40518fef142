"""What a person does in the browser, step by step, on the service's and the emulator's pages."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import snapshot


def sign_in_in_browser(page: Page, record_id: int, account: str = "Megan Bowen", *, consent: bool = True,
                       for_organization: bool = False) -> None:
    """Open the record page: a person who is not signed in goes to Microsoft's pages, picks an account,
    accepts the permissions unless they were given before (``consent`` false; for the whole organization
    too when ``for_organization``: an admin's Option 1 checkbox), and lands back on the record."""
    page.goto(f"/records/{record_id}")
    expect(page.get_by_role("heading", name="Pick an account")).to_be_visible()
    snapshot(page, "emulator-pick-account")
    page.get_by_role("button", name=re.compile(account)).click()
    if not consent:
        expect(page).to_have_url(re.compile(rf"/records/{record_id}$"))
        return
    expect(page.get_by_role("heading", name="Permissions requested")).to_be_visible()
    if for_organization:
        page.get_by_label("Consent on behalf of your organization").check()
    snapshot(page, "emulator-consent")
    page.get_by_role("button", name="Accept").click()
    expect(page).to_have_url(re.compile(rf"/records/{record_id}$"))


def click_connect(page: Page, record_id: int, account: str = "Megan Bowen", button: str = "Connect Outlook") -> None:
    """Click the record page's Connect button and pick ``account`` (Entra asks again: prompt=select_account);
    the permissions were given at sign-in, so Entra comes straight back."""
    snapshot(page, "record-not-connected")
    page.get_by_role("button", name=button, exact=True).click()
    expect(page.get_by_role("heading", name="Pick an account")).to_be_visible()
    page.get_by_role("button", name=re.compile(account)).click()
    expect(page).to_have_url(re.compile(rf"/records/{record_id}$"))
    expect(page.get_by_role("status")).to_contain_text("Outlook is connected")


def connect_in_browser(page: Page, record_id: int, account: str = "Megan Bowen") -> None:
    """Sign in at the record page, then connect the same account's mailbox."""
    sign_in_in_browser(page, record_id, account)
    click_connect(page, record_id, account)
