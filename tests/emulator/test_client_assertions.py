"""Certificate credentials at the token endpoint: msal's client assertions work for an app registered with the
certificate, and every kind of bad assertion is refused with the code Entra answers with."""

from __future__ import annotations

import time
import uuid

import msal
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from emulator.client_assertions import JWT_BEARER, MAX_ASSERTION_CHARS
from emulator.signing import b64url_encode, b64url_json
from tests.certificates import make_certificate
from tests.emulator.test_identity import REDIRECT_URI, SCOPES, connect, post_token, query, refresh


@pytest.fixture(scope="module")
def registered():
    return make_certificate()


@pytest.fixture
def demo(emulator, registered):
    return emulator.seed_demo(REDIRECT_URI, certificate_pem=registered.certificate_pem)


@pytest.fixture
def token_endpoint(emulator):
    return f"{emulator.base_url}/organizations/oauth2/v2.0/token"


def certificate_app(emulator, demo, monkeypatch, credential) -> msal.ConfidentialClientApplication:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_file)
    return msal.ConfidentialClientApplication(demo["client_id"], client_credential=credential,
                                              authority=f"{emulator.authority_host}/organizations",
                                              instance_discovery=False, verify=emulator.ca_file)


def pem_credential(certificate) -> dict[str, str]:
    """As the service hands it to msal: key and certificate, so msal signs PS256 under x5t#S256."""
    return {"private_key": certificate.key_pem.decode(), "public_certificate": certificate.certificate_pem.decode()}


def assertion(certificate, claims: dict, *, alg: str = "PS256", header: dict | None = None, key=None) -> str:
    """A client assertion signed with ``key`` (default: the certificate's own) naming ``certificate``."""
    thumbprint = ({"x5t#S256": b64url_encode(certificate.certificate.fingerprint(hashes.SHA256()))} if alg == "PS256"
                  else {"x5t": b64url_encode(certificate.certificate.fingerprint(hashes.SHA1()))})
    signing_input = f"{b64url_json({'alg': alg, 'typ': 'JWT', **thumbprint, **(header or {})})}.{b64url_json(claims)}"
    scheme = (padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32) if alg == "PS256"
              else padding.PKCS1v15())
    signature = (key or certificate.key).sign(signing_input.encode(), scheme, hashes.SHA256())
    return f"{signing_input}.{b64url_encode(signature)}"


def good_claims(demo, token_endpoint, **changes) -> dict:
    now = time.time()
    claims = {"aud": token_endpoint, "iss": demo["client_id"], "sub": demo["client_id"], "exp": now + 600,
              "nbf": now - 5, "iat": now, "jti": str(uuid.uuid4())}
    return {key: value for key, value in {**claims, **changes}.items() if value is not None}


def post_assertion(emulator, demo, client_assertion: str, **form):
    """A token request (for a made-up refresh token) authenticated by ``client_assertion`` alone."""
    return post_token(emulator, **{"client_id": demo["client_id"], "grant_type": "refresh_token",
                                   "refresh_token": "unknown", "client_assertion_type": JWT_BEARER,
                                   "client_assertion": client_assertion, **form})


def test_msal_signs_in_and_refreshes_with_the_registered_certificate(emulator, demo, registered, monkeypatch):
    app = certificate_app(emulator, demo, monkeypatch, pem_credential(registered))

    signed_in = connect(emulator, app, demo["users"]["megan"])

    assert signed_in["token_source"] == "identity_provider", signed_in.get("error_description")
    assert refresh(app)["token_source"] == "identity_provider"
    for call in emulator.requests("POST", "/organizations/oauth2/v2.0/token"):
        assert b"client_secret" not in call["body"] and b"client_assertion=" in call["body"]


def test_the_older_sha1_thumbprint_and_rs256_work_too(emulator, demo, registered, monkeypatch):
    app = certificate_app(emulator, demo, monkeypatch, {
        "private_key": registered.key_pem.decode(),
        "thumbprint": registered.certificate.fingerprint(hashes.SHA1()).hex()})

    assert connect(emulator, app, demo["users"]["megan"])["token_source"] == "identity_provider"


def test_a_secret_still_works_for_an_app_with_a_certificate(emulator, demo, monkeypatch):
    app = certificate_app(emulator, demo, monkeypatch, demo["client_secret"])

    assert connect(emulator, app, demo["users"]["megan"])["token_source"] == "identity_provider"


def test_a_certificate_not_uploaded_is_refused_as_an_unknown_key(emulator, demo, monkeypatch):
    stranger = make_certificate()
    app = certificate_app(emulator, demo, monkeypatch, pem_credential(stranger))
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)

    result = app.acquire_token_by_auth_code_flow(flow, query(emulator.authorize(flow["auth_uri"],
                                                                                demo["users"]["megan"])))

    assert (result["error"], result["error_codes"]) == ("invalid_client", [700027])
    assert "Reason - The key was not found." in result["error_description"]
    assert stranger.certificate.fingerprint(hashes.SHA256()).hex().upper() in result["error_description"]
    token_call, = emulator.requests("POST", "/organizations/oauth2/v2.0/token")
    assert token_call["status"] == 401


def test_a_certificate_sent_as_x5c_does_not_stand_in_for_a_registered_one(emulator, demo, token_endpoint):
    stranger = make_certificate()
    x5c = [stranger.certificate_pem.decode().split("-----")[2].replace("\n", "")]

    rv = post_assertion(emulator, demo, assertion(stranger, good_claims(demo, token_endpoint), header={"x5c": x5c}))

    assert (rv.status_code, rv.json()["error_codes"]) == (401, [700027])


@pytest.mark.parametrize(("make", "code", "text"), [
    # signed by another key under the registered certificate's thumbprint
    (lambda c, claims: assertion(c, claims, key=make_certificate().key), 700027,
     "The provided signature value did not match the expected signature value."),
    (lambda c, claims: assertion(c, claims, alg="RS256", key=make_certificate().key), 700027,
     "The provided signature value did not match the expected signature value."),
    (lambda c, claims: assertion(c, {**claims, "exp": time.time() - 60}), 700024,
     "Client assertion is not within its valid time range."),
    (lambda c, claims: assertion(c, {**claims, "nbf": time.time() + 600, "exp": time.time() + 1200}), 700024,
     "Client assertion is not within its valid time range."),
    (lambda c, claims: assertion(c, {**claims, "aud": "https://login.microsoftonline.com/common/oauth2/v2.0/token"}),
     700023, "Client assertion audience claim does not match Realm issuer."),
    (lambda c, claims: assertion(c, {**claims, "iss": str(uuid.uuid4())}), 700021,
     "Client assertion application identifier doesn't match 'client_id' parameter."),
    (lambda c, claims: assertion(c, {**claims, "sub": str(uuid.uuid4())}), 700021,
     "Client assertion application identifier doesn't match 'client_id' parameter."),
    (lambda c, claims: assertion(c, {k: v for k, v in claims.items() if k != "jti"}), 90014,
     "The required field 'jti' is missing from the credential."),
    (lambda c, claims: assertion(c, {k: v for k, v in claims.items() if k != "exp"}), 90014,
     "The required field 'exp' is missing from the credential."),
    (lambda c, claims: assertion(c, claims, header={"x5t#S256": None, "x5t": None}), 50027,
     "No certificate thumbprint specified in token header."),
    (lambda c, claims: assertion(c, claims, header={"alg": "none"}).rsplit(".", 1)[0] + ".", 50027,
     "Token format is not valid."),
    (lambda c, claims: assertion(c, claims, header={"alg": "HS256"}), 50027,
     "The signing algorithm 'HS256' is not supported."),
    (lambda c, claims: "a.b", 50027, "Token format is not valid."),
    (lambda c, claims: "e30.e30.=", 50027, "Token format is not valid."),
    (lambda c, claims: "W10.e30.AAAA", 50027, "Token format is not valid."),  # a JSON array is not a header
    (lambda c, claims: assertion(c, claims, header={"pad": "x" * MAX_ASSERTION_CHARS}), 50027,
     "Token format is not valid."),
], ids=["other-key-ps256", "other-key-rs256", "expired", "not-yet-valid", "other-audience", "other-issuer",
        "other-subject", "no-jti", "no-exp", "no-thumbprint", "unsigned", "hmac", "two-parts", "bad-base64",
        "array-header", "oversize"])
def test_a_bad_assertion_is_refused_with_entras_code(emulator, demo, registered, token_endpoint, make, code, text):
    rv = post_assertion(emulator, demo, make(registered, good_claims(demo, token_endpoint)))

    body = rv.json()
    assert (body["error_codes"], rv.status_code) == ([code], 400 if code == 90014 else 401)
    assert body["error"] == ("invalid_request" if code == 90014 else "invalid_client")
    assert body["error_description"].startswith(f"AADSTS{code}: ") and text in body["error_description"]


def test_a_valid_assertion_gets_past_client_authentication(emulator, demo, registered, token_endpoint):
    rv = post_assertion(emulator, demo, assertion(registered, good_claims(demo, token_endpoint)))

    assert rv.json()["error_codes"] == [9002313]  # the app is authenticated; the made-up refresh token is not valid


def test_an_assertion_needs_the_jwt_bearer_type(emulator, demo, registered, token_endpoint):
    rv = post_assertion(emulator, demo, assertion(registered, good_claims(demo, token_endpoint)),
                        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer")

    assert rv.json()["error_codes"] == [900144] and "client_assertion_type" in rv.json()["error_description"]


def test_an_app_without_a_certificate_knows_no_key(emulator, registered, token_endpoint):
    client_id, _ = emulator.register_app(redirect_uris=[REDIRECT_URI])

    rv = post_assertion(emulator, {"client_id": client_id},
                        assertion(registered, good_claims({"client_id": client_id}, token_endpoint)))

    assert rv.json()["error_codes"] == [700027] and "The key was not found." in rv.json()["error_description"]
