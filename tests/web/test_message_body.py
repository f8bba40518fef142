"""HTML mail bodies on the record page: in a sandboxed frame of their own, sanitized, inline images
from the message's attachments, remote images only when asked for, quoted history folded."""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest

from tests.forms import sign_in_person

pytestmark = pytest.mark.both_engines

LOGO = b"\x89PNG\r\n\x1a\n" + b"\x01" * 32
HOSTILE = ('<p id="said">Please find the W-9 attached.</p><img src="cid:logo@vendor" alt="logo">'
           '<img src="https://tracker.example/open.gif?u=42"><script>document.title="pwned"</script>'
           '<img src=x onerror="document.title=\'pwned\'"><a href="javascript:alert(1)">click</a>'
           '<blockquote><p>Earlier: can you send the W-9?</p></blockquote>')


def html_email() -> bytes:
    email = EmailMessage()
    email["From"], email["To"] = "dana@vendor.example", "megan@contoso.example"
    email["Subject"], email["Message-ID"] = "W-9", "<html-1@vendor.example>"
    email.set_content(HOSTILE, subtype="html")
    email.add_related(LOGO, maintype="image", subtype="png", cid="<logo@vendor>")
    return bytes(email)


@pytest.fixture
def entry(api, client):
    record = api.create_record()
    rv = api.post(f"/api/records/{record['id']}/emails", data=html_email(), content_type="message/rfc822")
    assert rv.status_code == 201, rv.get_json()
    sign_in_person(client)
    return record["id"], rv.get_json()


def test_the_page_frames_the_body_sandboxed_and_offers_to_show_remote_images(client, entry):
    record_id, message = entry
    page = client.get(f"/records/{record_id}").get_data(as_text=True)
    frame = re.search(r"<iframe[^>]*>", page).group(0)
    assert f'src="/records/{record_id}/messages/{message["id"]}/body"' in frame
    assert 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in frame  # no allow-scripts
    assert "Show images" in page and "tracker.example" not in page
    assert "frame-src 'self'" in client.get(f"/records/{record_id}").headers["Content-Security-Policy"]


def test_the_body_document_is_sanitized_with_inline_images_resolved_and_history_folded(client, entry):
    record_id, message = entry
    rv = client.get(f"/records/{record_id}/messages/{message['id']}/body")
    body = rv.get_data(as_text=True)
    logo = next(a for a in message["attachments"] if a["content_id"] == "logo@vendor")
    assert f'src="/records/{record_id}/attachments/{logo["id"]}"' in body
    assert "<script" not in body and "onerror" not in body and "javascript:" not in body
    assert "tracker.example" not in body
    assert '<details class="quoted"><summary>Quoted text</summary><blockquote>' in body
    policy = rv.headers["Content-Security-Policy"]
    assert "img-src 'self';" in policy and "script-src" not in policy and "default-src 'none'" in policy
    assert "frame-ancestors 'self'" in policy and rv.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert client.get(f"/records/{record_id}/attachments/{logo['id']}").data == LOGO


def test_remote_images_load_only_when_the_reader_asks(client, entry):
    record_id, message = entry
    rv = client.get(f"/records/{record_id}/messages/{message['id']}/body?images=shown")
    assert 'src="https://tracker.example/open.gif?u=42"' in rv.get_data(as_text=True)
    assert "img-src 'self' https: data:" in rv.headers["Content-Security-Policy"]
    assert "<script" not in rv.get_data(as_text=True)


def test_the_body_is_only_for_people_of_the_records_organization(app, api, client, entry):
    record_id, message = entry
    path = f"/records/{record_id}/messages/{message['id']}/body"
    stranger = app.test_client()
    assert stranger.get(path).status_code == 302  # nobody signed in: to the sign-in page
    fabrikam = "0b4f5e3a-0000-4000-8000-000000000002"
    assert api.post("/api/organizations", json={"name": "Fabrikam", "tenant_ids": [fabrikam]}).status_code == 201
    sign_in_person(stranger, tenant_id=fabrikam, user_id="u9", email="alex@fabrikam.example")
    assert stranger.get(path).status_code == 403
    other = api.create_record("Other")
    assert client.get(f"/records/{other['id']}/messages/{message['id']}/body").status_code == 404
