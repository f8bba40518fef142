"""Attachments end to end: a linked reply's files and inline image reach the record byte for byte, an
unrelated message's never do."""

from __future__ import annotations

import pytest

from tests.e2e.mail import MEGAN, VENDOR, queue_idle, thread, wait_for_thread
from tests.e2e.waiting import wait_for
from tests.tables import everything_stored, table

pytestmark = pytest.mark.both_engines

PDF = b"%PDF-1.4\n% signed W-9 " + bytes(range(256)) * 40 + b"\n%%EOF\n"
LOGO = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


def test_a_replys_pdf_and_inline_image_are_on_the_record_as_the_mailbox_has_them(service, api, megan, connected):
    service.emulator.deliver_email(
        megan, subject="RE: Onboarding documents", sender=VENDOR, to=[MEGAN],
        body={"contentType": "html", "content": '<p>Signed W-9 attached.</p><img src="cid:logo@acme">'},
        in_reply_to="<first.1@acme.example>", references=["<first.1@acme.example>"],
        internet_message_id="<reply.att@acme.example>",
        attachments=[{"name": "W-9 signed.pdf", "content_type": "application/pdf", "content": PDF},
                     {"name": "logo.png", "content_type": "image/png", "content": LOGO, "inline": True,
                      "content_id": "logo@acme"}])
    record_id = connected["record"]["id"]
    wait_for(lambda: len(wait_for_thread(api, record_id, 2)[1]["attachments"]) == 2, message="attachments")
    listed = {a["name"]: a for a in thread(api, record_id)[1]["attachments"]}
    assert (listed["W-9 signed.pdf"]["inline"], listed["logo.png"]["inline"]) == (False, True)
    assert listed["logo.png"]["content_id"] == "logo@acme"
    for name, content in (("W-9 signed.pdf", PDF), ("logo.png", LOGO)):
        rv = api.get(f"/api/records/{record_id}/attachments/{listed[name]['id']}")
        assert rv.status_code == 200 and rv.content == content


def test_an_unrelated_messages_attachment_is_never_stored(service, api, megan, connected):
    db = connected["db"]
    secret = b"PAYROLL-2026-ssn-0000-zq9"
    before = table(db, "jobs").count
    service.emulator.deliver_email(megan, subject="Payroll", body="Internal only", to=[MEGAN],
                                   sender={"address": "hr@contoso.example"}, new_conversation=True,
                                   attachments=[{"name": "payroll.csv", "content_type": "text/csv", "content": secret}])
    wait_for(lambda: table(db, "jobs").count > before and queue_idle(db), message="the notification processed")
    assert table(db, "attachments").count == 0
    assert secret not in everything_stored(db, service.app.config) and b"payroll.csv" not in everything_stored(
        db, service.app.config)
