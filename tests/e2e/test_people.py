"""People sign in with Microsoft (the same flow and callback as Connect Outlook) and sign out for good."""

from __future__ import annotations

import pytest
import requests

from tests.e2e.harness import Browser
from tests.forms import hidden

pytestmark = pytest.mark.both_engines


def test_signing_in_returns_to_the_page_asked_for_and_names_the_person(service, browser, api):
    record = api.create_record()
    rv = browser.sign_in("megan", f"/records/{record['id']}")
    assert rv.status_code == 302 and rv.headers["Location"] == f"/records/{record['id']}"
    page = browser.get(rv.headers["Location"]).text
    assert "Megan Bowen" in page and "Sign out" in page


@pytest.mark.parametrize("elsewhere", ["//evil.example/records/1", "https://evil.example/", "/\\evil.example",
                                       "records/1"])
def test_a_sign_in_never_sends_the_person_elsewhere(service, browser, elsewhere):
    rv = browser.sign_in("megan", elsewhere)
    assert rv.status_code == 302 and rv.headers["Location"] == "/signed-in"
    assert "You are signed in as Megan Bowen" in browser.get("/signed-in").text


def test_connect_outlook_signs_the_person_in_too(service, browser, api):
    record = api.create_record()
    assert browser.connect(record["id"], "megan").status_code == 302
    assert "Megan Bowen" in browser.get("/signed-in").text


def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(service, browser):
    browser.sign_in("megan")
    copy = requests.Session()
    copy.cookies.update(browser.http.cookies)
    page = browser.get("/signed-in").text
    assert browser.post("/logout", data={"csrf_token": "forged"}).status_code == 400
    assert browser.get("/signed-in").status_code == 200, "a forged sign-out changes nothing"
    assert browser.post("/logout", data={"csrf_token": hidden(page, "csrf_token")}).status_code == 200
    assert browser.get("/signed-in").status_code == 302
    assert copy.get(service.url("/signed-in"), allow_redirects=False, timeout=30).status_code == 302
    assert Browser(service).get("/signed-in").headers["Location"].startswith("/login?next=")
