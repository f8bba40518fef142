"""Uploaded emails keep their attachments: listed on the thread, downloadable, and only from their record."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from app.records.rfc822 import parse_email

pytestmark = pytest.mark.both_engines

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def email_with_attachments(message_id: str = "<docs-1@vendor.example>") -> EmailMessage:
    """A vendor's email as Outlook sends it: text and HTML alternatives, an inline logo, two files."""
    email = EmailMessage()
    email["From"], email["To"] = "Dana <dana@vendor.example>", "megan@contoso.example"
    email["Subject"], email["Message-ID"] = "Onboarding documents", message_id
    email.set_content("Attached are our W-9 and banking details.")
    email.add_alternative('<p>Attached are our W-9 and banking details.</p><img src="cid:logo@vendor">',
                          subtype="html")
    email.get_payload()[1].add_related(PNG, maintype="image", subtype="png", cid="<logo@vendor>")
    email.add_attachment(PDF, maintype="application", subtype="pdf", filename="W-9 Formular ü.pdf")
    email.add_attachment(b"IBAN DE00 1234", maintype="text", subtype="plain", filename="banking.txt")
    return email


def test_an_upload_keeps_its_files_and_inline_images_but_not_its_text():
    parsed = parse_email(bytes(email_with_attachments()))
    assert parsed.body == "Attached are our W-9 and banking details.\n"
    found = [(a.name, a.content_type, a.inline, a.content_id, a.content) for a in parsed.attachments]
    assert found == [("attachment-1", "image/png", True, "logo@vendor", PNG),
                     ("W-9 Formular ü.pdf", "application/pdf", False, None, PDF),
                     ("banking.txt", "text/plain", False, None, b"IBAN DE00 1234")]


def test_file_names_are_made_safe_to_show_and_save():
    email = EmailMessage()
    email["From"], email["Message-ID"] = "dana@vendor.example", "<names@vendor.example>"
    email.set_content("names")
    email.add_attachment(b"x", maintype="application", subtype="octet-stream", filename="../../etc/pass\x07wd")
    email.add_attachment(b"y", maintype="application", subtype="zip", filename="=?utf-8?q?R=C3=A9sum=C3=A9?=.zip")
    from app.records.attachments import clean_name

    assert [clean_name(a.name) for a in parse_email(bytes(email)).attachments] == ["etc pass wd", "Résumé.zip"]


def test_the_thread_lists_an_uploads_attachments_and_each_downloads_as_it_came(api):
    record = api.create_record()
    rv = api.post(f"/api/records/{record['id']}/emails", data=bytes(email_with_attachments()),
                  content_type="message/rfc822")
    assert rv.status_code == 201, rv.get_json()
    listed = rv.get_json()["attachments"]
    assert [(a["name"], a["content_type"], a["size"], a["inline"], a["kept"]) for a in listed] == [
        ("attachment-1", "image/png", len(PNG), True, True),
        ("W-9 Formular ü.pdf", "application/pdf", len(PDF), False, True),
        ("banking.txt", "text/plain", 14, False, True)]
    entry = api.get(f"/api/records/{record['id']}/thread").get_json()["messages"][0]
    assert entry["attachments"] == listed
    pdf = api.get(f"/api/records/{record['id']}/attachments/{listed[1]['id']}")
    assert pdf.status_code == 200 and pdf.data == PDF
    assert pdf.mimetype == "application/pdf"
    assert pdf.headers["Content-Disposition"] == (
        "attachment; filename=\"W-9 Formular _.pdf\"; filename*=UTF-8''W-9%20Formular%20%C3%BC.pdf")
    assert pdf.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in pdf.headers["Content-Security-Policy"]


def test_uploading_the_same_email_again_keeps_one_copy_of_each_attachment(api):
    record = api.create_record()
    for _ in range(2):
        rv = api.post(f"/api/records/{record['id']}/emails", data=bytes(email_with_attachments()),
                      content_type="message/rfc822")
    assert len(rv.get_json()["attachments"]) == 3
    assert len(api.get(f"/api/records/{record['id']}/thread").get_json()["messages"][0]["attachments"]) == 3


def test_an_attachment_is_served_only_under_its_own_record(api):
    mine, other = api.create_record("Mine"), api.create_record("Other")
    rv = api.post(f"/api/records/{mine['id']}/emails", data=bytes(email_with_attachments()),
                  content_type="message/rfc822")
    attachment_id = rv.get_json()["attachments"][1]["id"]
    for path in (f"/api/records/{other['id']}/attachments/{attachment_id}",
                 f"/api/records/{mine['id']}/attachments/{attachment_id + 100}"):
        missing = api.get(path)
        assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "attachment_not_found"
    assert api.get(f"/api/records/999/attachments/{attachment_id}").get_json()["error"]["code"] == "record_not_found"


def test_an_attachment_over_the_limit_is_listed_but_not_kept(api, app):
    app.config["ATTACHMENT_MAX_BYTES"] = len(PDF) - 1
    record = api.create_record()
    listed = api.post(f"/api/records/{record['id']}/emails", data=bytes(email_with_attachments()),
                      content_type="message/rfc822").get_json()["attachments"]
    pdf = next(a for a in listed if a["name"].endswith(".pdf"))
    assert (pdf["kept"], pdf["skipped_reason"], pdf["size"]) == (False, "too_large", len(PDF))
    assert api.get(f"/api/records/{record['id']}/attachments/{pdf['id']}").status_code == 404


def test_the_record_page_lists_attachments_and_a_signed_in_person_downloads_them(api, client):
    from tests.forms import sign_in_person

    record = api.create_record()
    listed = api.post(f"/api/records/{record['id']}/emails", data=bytes(email_with_attachments()),
                      content_type="message/rfc822").get_json()["attachments"]
    pdf_path = f"/records/{record['id']}/attachments/{listed[1]['id']}"
    assert client.get(pdf_path).status_code == 302  # nobody signed in: to the sign-in page
    sign_in_person(client)
    page = client.get(f"/records/{record['id']}").get_data(as_text=True)
    assert f'href="{pdf_path}"' in page and "W-9 Formular ü.pdf" in page and "banking.txt" in page
    assert "attachment-1" not in page  # the inline logo belongs to the body, not the list
    download = client.get(pdf_path)
    assert download.status_code == 200 and download.data == PDF
    assert download.headers["Content-Disposition"].startswith("attachment;")


def test_the_records_attachments_list_says_which_are_not_kept_and_why(api, app):
    app.config["ATTACHMENT_MAX_BYTES"] = len(PNG) - 1  # the logo is the largest
    record = api.create_record()
    api.post(f"/api/records/{record['id']}/emails", data=bytes(email_with_attachments()),
             content_type="message/rfc822")
    listed = api.get(f"/api/records/{record['id']}/attachments").get_json()
    assert listed["not_kept"] == 1
    assert [(a["name"], a["kept"], a["skipped_reason"], a["internet_message_id"]) for a in listed["attachments"]] == [
        ("attachment-1", False, "too_large", "<docs-1@vendor.example>"),
        ("W-9 Formular ü.pdf", True, None, "<docs-1@vendor.example>"),
        ("banking.txt", True, None, "<docs-1@vendor.example>")]
    assert api.get("/api/records/999/attachments").status_code == 404
