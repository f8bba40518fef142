"""Redirect URIs are built from PUBLIC_BASE_URL, never from the request's Host header: opened as
``localhost``, or behind a TLS-terminating proxy, the service still sends Entra the registered URI."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.conftest import API_TOKEN
from tests.e2e.conftest import api, service  # noqa: F401  (the service and the emulator on loopback)
from tests.e2e.harness import emulated_app
from tests.forms import click_connect, sign_in_operator, sign_in_person

PUBLIC = "https://outlook.example.com"


def redirect_uri(authorize_url: str) -> str:
    return parse_qs(urlsplit(authorize_url).query)["redirect_uri"][0]


def test_opened_as_localhost_the_redirect_uris_are_still_public_base_url(service, api):
    record = api.create_record()
    as_localhost = service.base_url.replace("127.0.0.1", "localhost")
    client = service.app.test_client()  # every request says Host: localhost:{port}
    sign_in_person(client, base_url=as_localhost)
    rv = click_connect(client, record["id"], base_url=as_localhost)
    assert redirect_uri(rv.headers["Location"]) == f"{service.base_url}/auth/callback"
    callback = service.emulator.authorize(rv.headers["Location"], service.demo["users"]["megan"])  # no AADSTS50011
    assert callback.startswith(f"{service.base_url}/auth/callback?code=")

    sign_in_operator(client)
    rv = client.get("/admin/consent", base_url=as_localhost)
    assert redirect_uri(rv.headers["Location"]) == f"{service.base_url}/admin/consent/callback"


def test_behind_a_tls_terminating_proxy_the_redirect_uri_stays_https(emulator, app_config):
    app, demo = emulated_app(emulator, app_config, PUBLIC)  # browsers and Entra see PUBLIC; the app, plain HTTP
    client = app.test_client()
    record = client.post("/api/records", json={"title": "Acme"}, headers={"Authorization": f"Bearer {API_TOKEN}"},
                         base_url="http://outlook.example.com").get_json()
    sign_in_person(client, base_url="http://outlook.example.com")
    rv = click_connect(client, record["id"], base_url="http://outlook.example.com",
                       headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "attacker.example"})
    assert redirect_uri(rv.headers["Location"]) == f"{PUBLIC}/auth/callback"

    callback = emulator.authorize(rv.headers["Location"], demo["users"]["megan"])
    rv = client.get(callback.removeprefix(PUBLIC), base_url=PUBLIC)  # the proxy hands the callback on
    assert rv.status_code == 302 and rv.headers["Location"] == f"/records/{record['id']}"
