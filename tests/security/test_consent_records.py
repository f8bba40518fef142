"""Consent records cannot be forged: admin consent starts only for a signed-in operator, every
callback path checks ``state`` (the error path too), and a tenant id must be a GUID."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from app.core.db import store_location, thread_db
from tests.e2e.conftest import api, browser, service  # noqa: F401  (the service and the emulator on loopback)
from tests.e2e.harness import Browser
from tests.forms import sign_in_operator

APPROVAL_REQUIRED = {"error": "access_denied",
                     "error_description": "AADSTS90094: Admin consent is required for the permissions requested."}


def rows(service, table):
    return list(thread_db(store_location(service.app.config)).query(f"SELECT * FROM {table}"))


def state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


def record_page(service, record_id: int) -> str:
    """The record's page as a colleague who signed in sees it."""
    colleague = Browser(service)
    colleague.sign_in("megan")
    page = colleague.get(f"/records/{record_id}")
    assert page.status_code == 200
    return page.text


def test_starting_admin_consent_needs_a_signed_in_person_or_the_operator(service, browser):
    rv = browser.get("/admin/consent")
    assert rv.status_code == 302 and rv.headers["Location"] == "/login?next=/admin/consent", "never anonymously"

    person = Browser(service)
    assert person.sign_in("fabrikam_admin", "/admin/consent").headers["Location"] == "/admin/consent"
    assert person.get("/admin/consent").headers["Location"].startswith(
        f"{service.emulator.authority_host}/organizations/v2.0/adminconsent?")

    rv = sign_in_operator(browser, next_path="/admin/consent")
    assert rv.status_code == 302 and rv.headers["Location"] == "/admin/consent"
    authority = browser.get(rv.headers["Location"]).headers["Location"]
    assert authority.startswith(f"{service.emulator.authority_host}/organizations/v2.0/adminconsent?")


@pytest.mark.parametrize("tenant", ["x" * 4000, "<script>alert(1)</script>", "organizations",
                                    "{72f988bf-86f1-41af-91ab-2d7cd011db47}", "72f988bf86f141af91ab2d7cd011db47"])
def test_a_tenant_that_is_not_a_guid_is_refused(service, browser, tenant):
    sign_in_operator(browser)
    state = state_of(browser.get("/admin/consent").headers["Location"])
    rv = browser.get("/admin/consent/callback?" + urlencode({"admin_consent": "True", "tenant": tenant,
                                                             "state": state}))
    assert rv.status_code == 400 and "no valid tenant id" in rv.text
    assert "<script>" not in rv.text
    assert rows(service, "tenants") == []


def test_anonymous_visitors_cannot_mark_a_tenant_consented(service, browser):
    guid = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    start = browser.get("/admin/consent").headers["Location"]
    state = parse_qs(urlsplit(start).query).get("state", ["guessed"])[0]
    rv = browser.get("/admin/consent/callback?" + urlencode({"admin_consent": "True", "tenant": guid,
                                                             "state": state}))
    assert rv.status_code == 400
    assert rows(service, "tenants") == []


@pytest.mark.parametrize("state", [None, "", "forged-state"])
def test_an_error_redirect_without_the_flows_state_writes_nothing(service, api, state):
    record = api.create_record()
    visitor = Browser(service)
    visitor.get(f"/login?next=/records/{record['id']}")  # anyone may start a sign-in, and so holds a flow
    forged = APPROVAL_REQUIRED if state is None else {**APPROVAL_REQUIRED, "state": state}
    rv = visitor.get("/auth/callback?" + urlencode(forged))
    assert rv.status_code == 400 and "Sign-in expired" in rv.text
    assert rows(service, "consent_requests") == []
    assert "Awaiting admin approval" not in record_page(service, record["id"])


def test_an_error_redirect_with_the_flows_state_is_remembered_once_per_record(service, api):
    record = api.create_record()
    user = Browser(service)
    state = state_of(user.start_connect(record["id"], "megan"))
    cookie = user.http.cookies["session"]
    for _ in range(20):  # the same redirect replayed with the same cookie
        user.http.cookies.clear()
        user.http.cookies.set("session", cookie)
        user.get("/auth/callback?" + urlencode({**APPROVAL_REQUIRED, "state": state}))
    assert [row["outcome"] for row in rows(service, "consent_requests")] == ["approval_required"]
    assert "Awaiting admin approval" in record_page(service, record["id"])
