"""DELETE /api/records/{id} end to end: the record's mail, files and sends leave no byte in the store, and
a reply to the old conversation arriving afterwards is linked to nothing."""

from __future__ import annotations

import pytest

from tests.e2e.mail import MEGAN, VENDOR, queue_idle, thread, wait_for_thread
from tests.e2e.waiting import wait_for
from tests.tables import everything_stored, table

pytestmark = pytest.mark.both_engines

REPLY_TEXT = "Our routing number is 021000089-zq7"
LETTER = b"%PDF-1.4 bank letter " + bytes(range(256)) * 20 + b"k4w-end"
SENT_TEXT = "Please confirm the IBAN ending 7781-p2x"
LATE_TEXT = "One more thing about the W-9 (late-r8m)"


def test_a_purged_record_leaves_no_mail_behind_and_later_replies_find_nothing(service, api, megan, connected):
    db, record_id = connected["db"], connected["record"]["id"]
    service.emulator.deliver_email(megan, subject="RE: Onboarding documents", body=REPLY_TEXT, sender=VENDOR,
                                   to=[MEGAN], in_reply_to="<first.1@acme.example>",
                                   references=["<first.1@acme.example>"], internet_message_id="<reply.p@acme.example>",
                                   attachments=[{"name": "bank-letter.pdf", "content_type": "application/pdf",
                                                 "content": LETTER}])
    wait_for(lambda: len(wait_for_thread(api, record_id, 2)[1]["attachments"]) == 1, message="the reply's file")
    connection_id = api.get("/api/connections").json()["connections"][0]["id"]
    sent = api.post(f"/api/records/{record_id}/messages", headers={"Idempotency-Key": "purge-1"},
                    json={"connection_id": connection_id, "to": [VENDOR["address"]], "subject": "Banking details",
                          "body": SENT_TEXT, "reply": False})
    assert sent.status_code == 202, sent.text
    wait_for(lambda: api.get(f"/api/outbox/{sent.json()['id']}").json()["status"] == "sent", message="sent")
    wait_for(lambda: len(thread(api, record_id)) == 3 and queue_idle(db), message="the sent copy linked")
    pieces = [LETTER[at:at + 64] for at in range(0, len(LETTER), 500)]  # the file spans pages: look for pieces
    stored = everything_stored(db, service.app.config)
    assert REPLY_TEXT.encode() in stored and all(piece in stored for piece in pieces)  # the search does find them

    rv = api.delete(f"/api/records/{record_id}")
    assert rv.status_code == 204, rv.text
    assert api.get(f"/api/records/{record_id}/thread").status_code == 404
    assert api.delete(f"/api/records/{record_id}").status_code == 404
    assert api.get(f"/api/connections/{connection_id}").json()["status"] == "active"  # the mailbox stays

    before = table(db, "jobs").count
    service.emulator.deliver_email(megan, subject="RE: Onboarding documents", body=LATE_TEXT, sender=VENDOR,
                                   to=[MEGAN], in_reply_to="<first.1@acme.example>",
                                   references=["<first.1@acme.example>"], conversation_of=connected["first"]["id"],
                                   internet_message_id="<late.p@acme.example>")
    wait_for(lambda: table(db, "jobs").count > before and queue_idle(db), message="the late reply processed")
    for name in ("messages", "message_copies", "thread_message_ids", "thread_conversations", "attachments",
                 "attachment_content", "outbox", "outbox_attachments"):
        assert table(db, name).count == 0, name
    stored = everything_stored(db, service.app.config)
    for secret in (REPLY_TEXT.encode(), *pieces, SENT_TEXT.encode(), LATE_TEXT.encode(),
                   b"Attached are our W-9", b"<first.1@acme.example>", b"bank-letter.pdf"):
        assert secret not in stored, secret[:40]
