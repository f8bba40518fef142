"""Browser security headers on every answer, and a validation handshake that echoes only a token."""

import re

import pytest

from app import create_app
from tests.forms import sign_in_person

HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy")


@pytest.fixture
def record(api, client) -> dict:
    sign_in_person(client)  # the record page is for signed-in people
    return api.create_record("Acme vendor file")


def _closed(rv):
    rv.close()  # a static file's answer holds the file open until closed
    return rv


def answers(client, api, record) -> dict:
    """One answer of every kind the service gives: pages, API, errors, static files, webhooks."""
    return {
        "record page": client.get(f"/records/{record['id']}"),
        "operator login": client.get("/admin/login"),
        "page 404": client.get("/records/999999", headers={"Accept": "text/html"}),
        "API": api.get(f"/api/records/{record['id']}/thread"),
        "API 401": client.get("/api/connections"),
        "style sheet": _closed(client.get("/static/app.css")),
        "health": client.get("/healthz"),
        "webhook error": client.post("/webhooks/graph", data="not json", content_type="application/json"),
        "handshake": client.post("/webhooks/graph?validationToken=Validation%3A+Testing", data=""),
    }


def test_every_answer_carries_the_security_headers(client, api, record):
    for what, rv in answers(client, api, record).items():
        missing = [name for name in HEADERS if name not in rv.headers]
        assert not missing, f"{what} lacks {missing}"
        policy = rv.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy, what
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, what
        assert rv.headers["X-Content-Type-Options"] == "nosniff", what
        assert rv.headers["Referrer-Policy"] == "no-referrer", what
        assert "Strict-Transport-Security" not in rv.headers, f"{what}: HSTS over plain HTTP"


def test_pages_need_nothing_the_policy_forbids(client, record):
    """No inline script or style: the policy would block it, so the page would break in a browser. Its
    one script is a file of its own."""
    page = client.get(f"/records/{record['id']}").get_data(as_text=True)
    assert re.findall(r"<script\b[^>]*>[^<]*</script>", page) == [
        '<script src="/static/live.js" defer></script>']
    assert "<style" not in page and " style=" not in page
    assert _closed(client.get("/static/live.js")).status_code == 200
    assert 'href="/static/app.css"' in page
    assert _closed(client.get("/static/app.css")).status_code == 200


def test_hsts_when_the_service_is_reached_over_https(app_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = create_app({**app_config, "PUBLIC_BASE_URL": "https://records.example.com"})
    client = app.test_client()
    for rv in (client.get("/healthz"), client.post("/webhooks/graph?validationToken=abc", data="")):
        assert rv.headers["Strict-Transport-Security"].startswith("max-age=")


def test_form_posts_may_go_only_to_the_service_and_the_identity_platform(client):
    policy = client.get("/admin/login").headers["Content-Security-Policy"]
    assert "form-action 'self' https://login.microsoftonline.com" in policy


@pytest.mark.parametrize("token", [
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",  # markup served under the service's origin
    "A" * 5000,                              # megabytes echoed back on demand
    "line%0D%0Abreak",                       # control characters
    "",
])
def test_the_handshake_refuses_tokens_graph_never_sends(client, token):
    rv = client.post(f"/webhooks/graph?validationToken={token}", data="", content_type="text/plain")
    assert rv.status_code == 400
    assert rv.get_json()["error"]["code"] == "invalid_validation_token"
    assert rv.headers["X-Content-Type-Options"] == "nosniff"


def test_the_handshake_echoes_a_graph_token(client):
    token = "Validation: Testing client application reachability for subscription Request-Id: 1f0c+/=="
    rv = client.post("/webhooks/graph", query_string={"validationToken": token}, data="")
    assert rv.status_code == 200 and rv.get_data(as_text=True) == token
    assert rv.headers["X-Content-Type-Options"] == "nosniff"
