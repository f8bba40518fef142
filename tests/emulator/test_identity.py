"""The identity platform, driven by real msal 1.39 wherever the service would use msal."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

import msal
import pytest
import requests

from emulator.directory import InvalidToken
from emulator.entities import Principal
from emulator.flow import AuthorizeError
from emulator.signing import b64url_decode

SCOPES = ["User.Read", "Mail.ReadWrite", "Mail.Send"]
REDIRECT_URI = "http://127.0.0.1:8000/auth/callback"


@pytest.fixture
def demo(emulator):
    return emulator.seed_demo(REDIRECT_URI)


@pytest.fixture
def make_app(emulator, demo, monkeypatch):
    # requests lets REQUESTS_CA_BUNDLE override a session's verify=, so set both, as the service must.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_file)

    def make(secret: str | None = None) -> msal.ConfidentialClientApplication:
        return msal.ConfidentialClientApplication(
            demo["client_id"], client_credential=secret or demo["client_secret"],
            authority=f"{emulator.authority_host}/organizations", instance_discovery=False, verify=emulator.ca_file)
    return make


@pytest.fixture
def msal_app(make_app):
    return make_app()


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def connect(emulator, app, user_id: str, **options) -> dict:
    """Connect Outlook as the service does: msal flow, the user at the pages, msal redeems."""
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    return app.acquire_token_by_auth_code_flow(flow, query(emulator.authorize(flow["auth_uri"], user_id, **options)))


def refresh(app) -> dict:
    account, = app.get_accounts()
    return app.acquire_token_silent_with_error(SCOPES, account, force_refresh=True)


def post_token(emulator, **form) -> requests.Response:
    return requests.post(f"{emulator.base_url}/organizations/oauth2/v2.0/token", data=form,
                         verify=emulator.ca_file, timeout=5)


def claims(token: str) -> dict:
    return json.loads(b64url_decode(token.split(".")[1]))


def admin_consent_url(emulator, demo, tenant: str = "organizations") -> str:
    params = {"client_id": demo["client_id"], "scope": "https://graph.microsoft.com/.default",
              "redirect_uri": REDIRECT_URI, "state": "st-1"}
    return f"{emulator.base_url}/{tenant}/v2.0/adminconsent?{urlencode(params)}"


# -- discovery ---------------------------------------------------------------------------------------

def test_discovery_for_organizations(emulator):
    base = emulator.base_url
    doc = requests.get(f"{base}/organizations/v2.0/.well-known/openid-configuration", verify=emulator.ca_file).json()

    assert doc["authorization_endpoint"] == f"{base}/organizations/oauth2/v2.0/authorize"
    assert doc["token_endpoint"] == f"{base}/organizations/oauth2/v2.0/token"
    assert doc["end_session_endpoint"] == f"{base}/organizations/oauth2/v2.0/logout"
    assert doc["issuer"] == f"{base}/{{tenantid}}/v2.0"
    key, = requests.get(doc["jwks_uri"], verify=emulator.ca_file).json()["keys"]
    assert (key["kty"], key["alg"]) == ("RSA", "RS256")


def test_discovery_for_a_tenant_and_an_unknown_one(emulator, demo):
    base, tid = emulator.base_url, demo["tenants"]["contoso"]
    doc = requests.get(f"{base}/{tid}/v2.0/.well-known/openid-configuration", verify=emulator.ca_file).json()
    assert doc["issuer"] == f"{base}/{tid}/v2.0"
    assert doc["token_endpoint"] == f"{base}/{tid}/oauth2/v2.0/token"

    unknown = requests.get(f"{base}/00000000-0000-0000-0000-000000000001/v2.0/.well-known/openid-configuration",
                           verify=emulator.ca_file)
    assert unknown.status_code == 400
    assert (unknown.json()["error"], unknown.json()["error_codes"]) == ("invalid_tenant", [90002])


# -- auth code flow and refresh -----------------------------------------------------------------------

def test_msal_auth_code_flow_with_pkce_and_nonce(emulator, demo, msal_app):
    tid, oid = demo["tenants"]["contoso"], demo["users"]["megan"]
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    redirect = emulator.authorize(flow["auth_uri"], oid)
    assert redirect.startswith(REDIRECT_URI + "?") and query(redirect)["state"] == flow["state"]

    result = msal_app.acquire_token_by_auth_code_flow(flow, query(redirect))

    assert "error" not in result, result
    assert result["scope"] == "Mail.ReadWrite Mail.Send User.Read openid profile offline_access"
    assert (result["token_type"], result["expires_in"]) == ("Bearer", 3600)
    id_claims = result["id_token_claims"]
    assert (id_claims["tid"], id_claims["oid"], id_claims["aud"]) == (tid, oid, demo["client_id"])
    assert id_claims["nonce"] == query(flow["auth_uri"])["nonce"]
    assert id_claims["iss"] == f"{emulator.base_url}/{tid}/v2.0"
    assert id_claims["preferred_username"] == "megan@contoso.example"
    assert id_claims["sub"] != oid
    assert json.loads(b64url_decode(result["client_info"])) == {"uid": oid, "utid": tid}
    account, = msal_app.get_accounts()
    assert account["home_account_id"] == f"{oid}.{tid}"
    principal = emulator.directory.authenticate("Bearer " + result["access_token"])
    assert principal == Principal(tid, oid, demo["client_id"], frozenset(SCOPES))


@pytest.mark.parametrize("user, roles", [("megan", ["b79fbf4d-3ef9-4689-8143-76b194e85509"]),
                                         ("contoso_admin", ["62e90394-69f5-4237-9190-012177145e10",
                                                            "b79fbf4d-3ef9-4689-8143-76b194e85509"])])
def test_the_id_token_names_directory_roles_when_the_registration_asks_for_them(emulator, demo, msal_app, user, roles):
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    redirect = emulator.authorize(flow["auth_uri"], demo["users"][user], on_behalf_of_org=user == "contoso_admin")
    assert msal_app.acquire_token_by_auth_code_flow(flow, query(redirect))["id_token_claims"]["wids"] == roles
    emulator.directory.find_app(demo["client_id"]).directory_role_claims = False  # Entra's default
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    redirect = emulator.authorize(flow["auth_uri"], demo["users"][user])
    assert "wids" not in msal_app.acquire_token_by_auth_code_flow(flow, query(redirect))["id_token_claims"]


def test_token_request_carries_the_verifier_and_secret_in_the_body(emulator, demo, msal_app):
    connect(emulator, msal_app, demo["users"]["megan"])

    token_call, = emulator.requests("POST", "/organizations/oauth2/v2.0/token")
    form = dict(parse_qsl(token_call["body"].decode()))
    assert form["grant_type"] == "authorization_code"
    assert form["client_secret"] == demo["client_secret"]
    assert len(form["code_verifier"]) == 43
    assert token_call["status"] == 200 and "client-request-id" in token_call["headers"]


def test_refresh_rotates_the_refresh_token_and_the_old_one_stays_valid(emulator, demo, msal_app):
    first = connect(emulator, msal_app, demo["users"]["megan"])

    second = refresh(msal_app)

    assert second["token_source"] == "identity_provider"
    assert second["refresh_token"] != first["refresh_token"]
    old = post_token(emulator, grant_type="refresh_token", refresh_token=first["refresh_token"],
                     client_id=demo["client_id"], client_secret=demo["client_secret"], scope="User.Read offline_access")
    assert old.status_code == 200 and old.json()["refresh_token"] not in (first["refresh_token"],
                                                                         second["refresh_token"])


def test_client_secret_basic_is_accepted(emulator, demo, msal_app):
    first = connect(emulator, msal_app, demo["users"]["megan"])

    response = requests.post(f"{emulator.base_url}/organizations/oauth2/v2.0/token", verify=emulator.ca_file,
                             auth=(demo["client_id"], demo["client_secret"]),
                             data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})

    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store, no-cache"


def test_old_refresh_tokens_can_be_made_invalid(emulator, demo, msal_app):
    emulator.directory.revoke_rotated_refresh_tokens = True
    first = connect(emulator, msal_app, demo["users"]["megan"])
    refresh(msal_app)

    old = post_token(emulator, grant_type="refresh_token", refresh_token=first["refresh_token"],
                     client_id=demo["client_id"], client_secret=demo["client_secret"])

    assert old.status_code == 400
    assert (old.json()["error"], old.json()["error_codes"]) == ("invalid_grant", [70000])


def test_wrong_code_verifier_is_refused(emulator, demo, msal_app):
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    redirect = emulator.authorize(flow["auth_uri"], demo["users"]["megan"])
    flow["code_verifier"] = "x" * 43

    result = msal_app.acquire_token_by_auth_code_flow(flow, query(redirect))

    assert (result["error"], result["error_codes"]) == ("invalid_grant", [501481])


def test_a_code_is_redeemed_once(emulator, demo, msal_app):
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    redirect = emulator.authorize(flow["auth_uri"], demo["users"]["megan"])
    assert "access_token" in msal_app.acquire_token_by_auth_code_flow(dict(flow), query(redirect))

    replay = post_token(emulator, grant_type="authorization_code", code=query(redirect)["code"],
                        redirect_uri=REDIRECT_URI, code_verifier=flow["code_verifier"], client_id=demo["client_id"],
                        client_secret=demo["client_secret"], scope="User.Read openid offline_access")

    body = replay.json()
    assert replay.status_code == 400
    assert (body["error"], body["error_codes"]) == ("invalid_grant", [54005])
    assert body["error_description"].startswith("AADSTS54005: ")
    assert f"\r\nTrace ID: {body['trace_id']}\r\nCorrelation ID: {body['correlation_id']}" in body["error_description"]
    assert body["timestamp"] in body["error_description"]


def test_a_code_expires_after_ten_minutes(emulator, demo, msal_app):
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    redirect = emulator.authorize(flow["auth_uri"], demo["users"]["megan"])
    emulator.clock.advance(timedelta(minutes=10, seconds=1))

    result = msal_app.acquire_token_by_auth_code_flow(flow, query(redirect))

    assert (result["error"], result["error_codes"]) == ("invalid_grant", [70008])


# -- when background access dies ----------------------------------------------------------------------

@pytest.mark.parametrize("code, suberror, classification", [
    (50173, "bad_token", ""),
    (700082, "bad_token", ""),
    (65001, "consent_required", "consent_required"),
    (50057, None, None),
])
def test_revoked_access_fails_the_refresh_through_msal(emulator, demo, msal_app, code, suberror, classification):
    connect(emulator, msal_app, demo["users"]["megan"])

    emulator.revoke_user(demo["users"]["megan"], code)
    result = refresh(msal_app)

    assert (result["error"], result["error_codes"]) == ("invalid_grant", [code])
    assert result.get("suberror") == suberror
    assert result.get("classification") == classification


def test_a_refresh_token_unused_for_90_days_is_inactive(emulator, demo, msal_app):
    connect(emulator, msal_app, demo["users"]["megan"])
    emulator.clock.advance(timedelta(days=90, seconds=1))

    result = refresh(msal_app)

    assert result["error_codes"] == [700082]
    assert "inactive for 90.00:00:00" in result["error_description"]


def test_removing_the_app_ends_every_users_access(emulator, demo, make_app):
    admin_app, megan_app = make_app(), make_app()
    connect(emulator, admin_app, demo["users"]["contoso_admin"], on_behalf_of_org=True)
    connect(emulator, megan_app, demo["users"]["megan"])

    emulator.remove_app(demo["tenants"]["contoso"])

    for app in (admin_app, megan_app):
        result = refresh(app)
        assert (result["error"], result["error_codes"], result["suberror"]) == (
            "invalid_grant", [65001], "consent_required")
    assert not emulator.directory.has_access(demo["tenants"]["contoso"], demo["users"]["megan"], demo["client_id"])


def test_removed_app_can_answer_unauthorized_client_instead(emulator, demo, msal_app):
    emulator.directory.removed_app_code = 700016
    connect(emulator, msal_app, demo["users"]["megan"])
    emulator.remove_app(demo["tenants"]["contoso"])

    assert (refresh(msal_app)["error"], refresh(msal_app)["error_codes"]) == ("unauthorized_client", [700016])


@pytest.mark.parametrize("break_secret, code", [
    (lambda emulator, demo: "not-the-secret", 7000215),
    (lambda emulator, demo: emulator.directory.expire_client_secret(demo["client_id"]), 7000222),
])
def test_bad_client_secret_is_invalid_client(emulator, demo, make_app, break_secret, code):
    app = make_app(break_secret(emulator, demo))
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)

    result = app.acquire_token_by_auth_code_flow(flow, query(emulator.authorize(flow["auth_uri"],
                                                                                demo["users"]["megan"])))

    assert (result["error"], result["error_codes"]) == ("invalid_client", [code])
    token_call, = emulator.requests("POST", "/organizations/oauth2/v2.0/token")
    assert token_call["status"] == 401


def test_next_refresh_can_fail_for_one_user(emulator, demo, make_app):
    megan_app, admin_app = make_app(), make_app()
    connect(emulator, megan_app, demo["users"]["megan"])
    connect(emulator, admin_app, demo["users"]["contoso_admin"])

    emulator.fail_next_refresh(53003, user_id=demo["users"]["megan"])

    assert refresh(admin_app)["token_source"] == "identity_provider"
    assert (refresh(megan_app)["error"], refresh(megan_app)["error_codes"]) == ("invalid_grant", [53003])


@pytest.mark.parametrize("code, named", [(700082, "was issued on 20"), (65001, "with ID '{client_id}'")])
def test_injected_refresh_failures_fill_their_placeholders(emulator, demo, msal_app, code, named):
    connect(emulator, msal_app, demo["users"]["megan"])
    emulator.fail_next_refresh(code)

    description = refresh(msal_app)["error_description"]

    assert named.format(client_id=demo["client_id"]) in description and "''" not in description


def test_token_endpoint_transient_faults(emulator, demo, msal_app):
    connect(emulator, msal_app, demo["users"]["megan"])
    emulator.fail_token_endpoint(429, retry_after=7)

    throttled = post_token(emulator, grant_type="refresh_token")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"] == "temporarily_unavailable"

    emulator.fail_token_endpoint(503)
    with pytest.raises(msal.exceptions.MsalServiceError):
        refresh(msal_app)
    assert [r["status"] for r in emulator.requests("POST")] == [200, 429, 503]


# -- access tokens as Graph sees them ---------------------------------------------------------------

def test_access_token_expiry_follows_the_clock(emulator, demo, msal_app):
    header = "Bearer " + connect(emulator, msal_app, demo["users"]["megan"])["access_token"]
    emulator.clock.advance(3599)
    emulator.directory.authenticate(header)

    emulator.clock.advance(1)

    with pytest.raises(InvalidToken) as e:
        emulator.directory.authenticate(header)
    assert (e.value.reason, e.value.message) == ("expired", "Lifetime validation failed, the token is expired.")


def test_access_token_lifetime_is_configurable(emulator, demo, msal_app):
    emulator.directory.access_token_lifetime = 120

    result = connect(emulator, msal_app, demo["users"]["megan"])

    assert result["expires_in"] == 120
    assert claims(result["access_token"])["exp"] - claims(result["access_token"])["iat"] == 120


def test_authenticate_refuses_what_is_not_a_live_access_token(emulator, demo, msal_app):
    result = connect(emulator, msal_app, demo["users"]["megan"])
    header, payload, signature = result["access_token"].split(".")
    forged = f"{header}.{payload[:-4]}AAAA.{signature}"
    cases = [(None, "missing"), ("Basic abc", "missing"), ("Bearer not-a-jwt", "malformed"),
             (f"Bearer {forged}", "malformed"), (f"Bearer {result['id_token']}", "malformed")]

    for value, reason in cases:
        with pytest.raises(InvalidToken) as e:
            emulator.directory.authenticate(value)
        assert e.value.reason == reason, value


@pytest.mark.parametrize("revoke, reason", [
    (lambda emu, demo: emu.revoke_user(demo["users"]["megan"]), "revoked"),
    (lambda emu, demo: emu.revoke_user(demo["users"]["megan"], 50057), "user_disabled"),
    (lambda emu, demo: emu.remove_app(demo["tenants"]["contoso"]), "no_grant"),
])
def test_revocation_invalidates_access_tokens_already_issued(emulator, demo, msal_app, revoke, reason):
    header = "Bearer " + connect(emulator, msal_app, demo["users"]["megan"])["access_token"]

    revoke(emulator, demo)

    with pytest.raises(InvalidToken) as e:
        emulator.directory.authenticate(header)
    assert e.value.reason == reason


def test_access_tokens_can_outlive_revocation_as_non_cae_tokens_do(emulator, demo, msal_app):
    emulator.directory.revocation_kills_access_tokens = False
    header = "Bearer " + connect(emulator, msal_app, demo["users"]["megan"])["access_token"]

    emulator.revoke_user(demo["users"]["megan"])

    assert emulator.directory.authenticate(header).user_id == demo["users"]["megan"]


# -- consent ---------------------------------------------------------------------------------------------

def test_cancel_on_the_consent_page(emulator, demo, msal_app):
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)

    redirect = query(emulator.authorize(flow["auth_uri"], demo["users"]["megan"], accept=False))

    assert redirect["error"] == "access_denied"
    assert redirect["error_description"].startswith("AADSTS65004: User declined to consent to access the app.")
    assert redirect["error_uri"] == f"{emulator.base_url}/error?code=65004"
    assert redirect["state"] == flow["state"]
    assert msal_app.acquire_token_by_auth_code_flow(flow, redirect)["error"] == "access_denied"


def test_consent_is_asked_once_unless_prompt_is_consent(emulator, demo, msal_app):
    megan = demo["users"]["megan"]
    connect(emulator, msal_app, megan)

    again = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    assert "code" in query(emulator.authorize(again["auth_uri"], megan, accept=False))
    forced = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI, prompt="consent")
    assert query(emulator.authorize(forced["auth_uri"], megan, accept=False))["error"] == "access_denied"


def test_admin_consent_for_the_organization_lets_users_skip_consent(emulator, demo, make_app):
    connect(emulator, make_app(), demo["users"]["contoso_admin"], on_behalf_of_org=True)
    grant, = emulator.directory.grants(demo["tenants"]["contoso"])
    assert grant.user_id is None and grant.scopes == frozenset(SCOPES)

    megan_app = make_app()
    flow = megan_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    redirect = emulator.authorize(flow["auth_uri"], demo["users"]["megan"], accept=False)

    assert "access_token" in megan_app.acquire_token_by_auth_code_flow(flow, query(redirect))


def test_only_a_global_administrator_consents_for_the_organization(emulator, demo, msal_app):
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)

    with pytest.raises(ValueError):
        emulator.authorize(flow["auth_uri"], demo["users"]["megan"], on_behalf_of_org=True)


def test_user_of_a_tenant_without_user_consent_requests_approval(emulator, demo, msal_app):
    alex, fabrikam = demo["users"]["alex"], demo["tenants"]["fabrikam"]
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)

    redirect = query(emulator.authorize(flow["auth_uri"], alex, request_approval=True, justification="Case files"))

    assert redirect["error"] == "access_denied" and redirect["error_description"].startswith("AADSTS90095:")
    assert redirect["state"] == flow["state"]
    request, = emulator.directory.approval_requests(fabrikam)
    assert (request.user_id, request.status, request.justification) == (alex, "pending", "Case files")
    assert request.scopes == frozenset(SCOPES)
    assert msal_app.acquire_token_by_auth_code_flow(flow, redirect)["error"] == "access_denied"

    emulator.approve_request(request.id)
    later = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    assert "code" in query(emulator.authorize(later["auth_uri"], alex, accept=False))


def test_leaving_the_approval_page_records_no_request(emulator, demo, msal_app):
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)

    redirect = query(emulator.authorize(flow["auth_uri"], demo["users"]["alex"]))

    assert redirect["error_description"].startswith("AADSTS90095:")
    assert emulator.directory.approval_requests() == []


def test_tenant_without_the_workflow_needs_admin_approval(emulator, msal_app):
    tenant = emulator.add_tenant("Tailspin", user_consent_allowed=False, admin_consent_workflow=False)
    user = emulator.add_user(tenant, "pat@tailspin.example")
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)

    redirect = query(emulator.authorize(flow["auth_uri"], user, request_approval=True))

    assert redirect["error"] == "access_denied" and redirect["error_description"].startswith("AADSTS90094:")
    assert redirect["error_uri"].endswith("/error?code=90094")


def test_admin_of_a_tenant_without_user_consent_can_consent(emulator, demo, msal_app):
    assert "access_token" in connect(emulator, msal_app, demo["users"]["fabrikam_admin"])


def test_unknown_apps_and_unregistered_redirect_uris_are_never_redirected(emulator, demo, msal_app):
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri="https://attacker.example/cb")
    with pytest.raises(AuthorizeError) as e:
        emulator.authorize(flow["auth_uri"], demo["users"]["megan"])
    assert e.value.error.code == 50011

    unknown = flow["auth_uri"].replace(demo["client_id"], "11111111-2222-3333-4444-555555555555")
    with pytest.raises(AuthorizeError) as e:
        emulator.authorize(unknown, demo["users"]["megan"])
    assert e.value.error.code == 700016


@pytest.mark.parametrize("change, error, code", [
    ({"code_challenge_method": "plain"}, "invalid_request", 9002325),
    ({"response_mode": "fragment"}, "invalid_request", 70007),
    ({"prompt": "admin_consent"}, "invalid_request", 901001),
    ({"prompt": "none"}, "login_required", 50058),
    ({"scope": "Mail.Everything"}, "invalid_client", 650053),
    ({"response_type": "token"}, "unsupported_response_type", 700051),
])
def test_protocol_errors_go_back_to_the_app(emulator, demo, msal_app, change, error, code):
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    parts = urlsplit(flow["auth_uri"])
    auth_uri = parts._replace(query=urlencode({**dict(parse_qsl(parts.query)), **change})).geturl()

    redirect = query(emulator.authorize(auth_uri, demo["users"]["megan"]))

    assert redirect["error"] == error and redirect["error_description"].startswith(f"AADSTS{code}:")
    assert redirect["state"] == flow["state"]


def test_a_confidential_client_may_leave_out_pkce(emulator, demo, msal_app):
    """Entra demands PKCE of single-page apps only
    (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow#request-an-authorization-code)."""
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    parts = urlsplit(flow["auth_uri"])
    params = {k: v for k, v in parse_qsl(parts.query) if not k.startswith("code_challenge")}
    redirect = query(emulator.authorize(parts._replace(query=urlencode(params)).geturl(), demo["users"]["megan"]))

    result = msal_app.acquire_token_by_auth_code_flow(flow, redirect)  # msal still sends its code_verifier

    assert "access_token" in result, result


def test_a_pkce_challenge_that_was_sent_is_verified(emulator, demo, msal_app):
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    redirect = query(emulator.authorize(flow["auth_uri"], demo["users"]["megan"]))

    result = msal_app.acquire_token_by_auth_code_flow({**flow, "code_verifier": "x" * 43}, redirect)

    assert result["error"] == "invalid_grant" and "AADSTS501481" in result["error_description"]


# -- the admin consent endpoint ----------------------------------------------------------------------

def test_admin_consent_grants_the_whole_tenant(emulator, demo, msal_app):
    redirect = query(emulator.admin_consent(admin_consent_url(emulator, demo), demo["users"]["contoso_admin"]))

    assert redirect == {"admin_consent": "True", "tenant": demo["tenants"]["contoso"],
                        "scope": "https://graph.microsoft.com/.default", "state": "st-1"}
    grant, = emulator.directory.grants()
    assert grant.user_id is None and grant.scopes == frozenset(SCOPES)
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    assert "code" in query(emulator.authorize(flow["auth_uri"], demo["users"]["megan"], accept=False))


def test_admin_consent_cancel(emulator, demo):
    redirect = query(emulator.admin_consent(admin_consent_url(emulator, demo), demo["users"]["contoso_admin"],
                                            accept=False))

    assert redirect["error"] == "access_denied" and redirect["error_description"].startswith("AADSTS65004:")
    assert (redirect["admin_consent"], redirect["state"]) == ("True", "st-1")
    assert "tenant" not in redirect and emulator.directory.grants() == []


def test_admin_consent_by_a_non_admin(emulator, demo):
    redirect = query(emulator.admin_consent(admin_consent_url(emulator, demo), demo["users"]["megan"]))

    assert redirect["error"] == "access_denied" and redirect["error_description"].startswith("AADSTS90093:")
    assert (redirect["admin_consent"], redirect["state"]) == ("True", "st-1")


def test_admin_consent_refuses_the_common_endpoint(emulator, demo):
    redirect = query(emulator.admin_consent(admin_consent_url(emulator, demo, "common"),
                                            demo["users"]["contoso_admin"]))

    assert redirect["error"] == "invalid_request" and redirect["error_description"].startswith("AADSTS90130:")
