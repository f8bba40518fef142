"""The sign-in, consent, approval and admin-consent pages, used as a browser without JavaScript would."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests

from emulator.signing import b64url_encode

REDIRECT_URI = "http://127.0.0.1:8000/auth/callback"
VERIFIER = "v" * 43


@pytest.fixture
def demo(emulator):
    return emulator.seed_demo(REDIRECT_URI)


class Browser:
    """Submits the pages' forms: each POST carries the original query in the hidden ``request`` field."""

    def __init__(self, emulator, path: str, params: dict[str, str]) -> None:
        self.emulator = emulator
        self.url = f"{emulator.base_url}{path}"
        self.query = urlencode(params)

    def open(self) -> requests.Response:
        return requests.get(f"{self.url}?{self.query}", verify=self.emulator.ca_file, allow_redirects=False)

    def press(self, user_id: str, action: str, **fields: str) -> requests.Response:
        form = {"request": self.query, "user": user_id, "action": action, **fields}
        return requests.post(self.url, data=form, verify=self.emulator.ca_file, allow_redirects=False)


def authorize_browser(emulator, demo, **extra: str) -> Browser:
    challenge = b64url_encode(hashlib.sha256(VERIFIER.encode()).digest())
    params = {"client_id": demo["client_id"], "response_type": "code", "redirect_uri": REDIRECT_URI,
              "scope": "User.Read Mail.ReadWrite Mail.Send openid profile offline_access", "state": "s1",
              "nonce": "n1", "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    return Browser(emulator, "/organizations/oauth2/v2.0/authorize", params)


def redirected_to(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    return dict(parse_qsl(urlsplit(location).query))


def test_account_picker_lists_every_user_with_a_button(emulator, demo):
    page = authorize_browser(emulator, demo).open()

    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for user_id in demo["users"].values():
        assert f'name="user" value="{user_id}"' in page.text
    assert "megan@contoso.example" in page.text and "Fabrikam" in page.text
    assert "<script" not in page.text and "http://" not in page.text.split("</style>")[0]


def test_user_consents_and_the_code_redeems(emulator, demo):
    browser = authorize_browser(emulator, demo)
    megan = demo["users"]["megan"]

    consent = browser.press(megan, "sign_in")
    assert consent.status_code == 200 and "Permissions requested" in consent.text
    assert "Read and write access to your mail" in consent.text
    assert "Consent on behalf of your organization" not in consent.text

    params = redirected_to(browser.press(megan, "accept"))
    assert params["state"] == "s1"
    token = requests.post(f"{emulator.base_url}/organizations/oauth2/v2.0/token", verify=emulator.ca_file, data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT_URI,
        "code_verifier": VERIFIER, "client_id": demo["client_id"], "client_secret": demo["client_secret"]})
    assert token.status_code == 200 and token.json()["id_token"]


def test_admin_sees_and_uses_the_organization_checkbox(emulator, demo):
    browser = authorize_browser(emulator, demo)
    admin = demo["users"]["contoso_admin"]

    consent = browser.press(admin, "sign_in")
    assert '<label for="org">Consent on behalf of your organization</label>' in consent.text
    assert 'type="checkbox" id="org"' in consent.text and "checked" not in consent.text

    redirected_to(browser.press(admin, "accept", org="1"))
    grant, = emulator.directory.grants()
    assert grant.user_id is None
    assert "code" in redirected_to(browser.press(demo["users"]["megan"], "sign_in"))


def test_cancel_redirects_with_access_denied(emulator, demo):
    params = redirected_to(authorize_browser(emulator, demo).press(demo["users"]["megan"], "cancel"))

    assert params["error"] == "access_denied" and params["error_description"].startswith("AADSTS65004:")


def test_approval_required_page_submits_a_request(emulator, demo):
    browser = authorize_browser(emulator, demo)
    alex = demo["users"]["alex"]

    page = browser.press(alex, "sign_in")
    assert "Approval required" in page.text
    assert '<label for="justification">' in page.text and 'id="justification"' in page.text

    params = redirected_to(browser.press(alex, "request_approval", justification="For the Acme case"))
    assert params["error_description"].startswith("AADSTS90095:")
    assert emulator.directory.approval_requests()[0].justification == "For the Acme case"


def test_need_admin_approval_page(emulator, demo):
    tenant = emulator.add_tenant("Tailspin", user_consent_allowed=False, admin_consent_workflow=False)
    user = emulator.add_user(tenant, "pat@tailspin.example")
    browser = authorize_browser(emulator, demo)

    page = browser.press(user, "sign_in")
    assert "Need admin approval" in page.text and "Return to the application" in page.text

    assert redirected_to(browser.press(user, "return"))["error_description"].startswith("AADSTS90094:")


def test_a_button_the_page_did_not_offer_is_refused(emulator, demo):
    response = authorize_browser(emulator, demo).press(demo["users"]["megan"], "request_approval")

    assert response.status_code == 400 and "Location" not in response.headers


@pytest.mark.parametrize("change", [{"redirect_uri": "https://attacker.example/cb"},
                                    {"client_id": "11111111-2222-3333-4444-555555555555"}])
def test_errors_about_the_app_itself_stay_on_an_error_page(emulator, demo, change):
    response = authorize_browser(emulator, demo, **change).open()

    assert response.status_code == 400 and "Location" not in response.headers
    assert "AADSTS" in response.text


def test_admin_consent_pages(emulator, demo):
    browser = Browser(emulator, "/organizations/v2.0/adminconsent", {
        "client_id": demo["client_id"], "scope": "https://graph.microsoft.com/.default",
        "redirect_uri": REDIRECT_URI, "state": "s2"})
    admin = demo["users"]["contoso_admin"]

    assert browser.open().status_code == 200
    page = browser.press(admin, "sign_in")
    assert "for all users in your organization" in page.text

    params = redirected_to(browser.press(admin, "accept"))
    assert (params["admin_consent"], params["tenant"], params["state"]) == ("True", demo["tenants"]["contoso"], "s2")


def test_sign_out_returns_only_to_registered_uris(emulator, demo):
    logout = f"{emulator.base_url}/organizations/oauth2/v2.0/logout?post_logout_redirect_uri="

    back = requests.get(logout + REDIRECT_URI, verify=emulator.ca_file, allow_redirects=False)
    elsewhere = requests.get(logout + "https://attacker.example/", verify=emulator.ca_file, allow_redirects=False)

    assert (back.status_code, back.headers["Location"]) == (302, REDIRECT_URI)
    assert elsewhere.status_code == 200 and "signed out" in elsewhere.text


def test_error_lookup_page(emulator):
    page = requests.get(f"{emulator.base_url}/error?code=50173", verify=emulator.ca_file)

    assert page.status_code == 200 and "AADSTS50173" in page.text


def test_form_post_answers_with_a_form_that_posts_code_and_state(emulator, demo):
    """``response_mode=form_post``: a page that POSTs the answer to the redirect URI
    (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow#successful-response)."""
    browser = authorize_browser(emulator, demo, response_mode="form_post")
    megan = demo["users"]["megan"]
    assert browser.press(megan, "sign_in").status_code == 200

    page = browser.press(megan, "accept")

    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert f'<form method="post" action="{REDIRECT_URI}">' in page.text
    assert 'onload="document.forms[0].submit()"' in page.text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    assert fields["state"] == "s1" and set(fields) == {"code", "state", "session_state"}
    token = requests.post(f"{emulator.base_url}/organizations/oauth2/v2.0/token", verify=emulator.ca_file, data={
        "grant_type": "authorization_code", "code": fields["code"], "redirect_uri": REDIRECT_URI,
        "code_verifier": VERIFIER, "client_id": demo["client_id"], "client_secret": demo["client_secret"]})
    assert token.status_code == 200, token.text

    declined = authorize_browser(emulator, demo, response_mode="form_post", prompt="consent")
    declined.press(megan, "sign_in")
    assert 'name="error" value="access_denied"' in declined.press(megan, "cancel").text
