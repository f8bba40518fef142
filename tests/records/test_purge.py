"""Purging a record (:mod:`app.records.purge`): its mail, keys, attachments and sends go in one transaction,
through the modules that own them; its mailboxes and other records stay; a send on its way out blocks it."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage

import pytest

from app.core.errors import Conflict, NotFound
from app.records import consent, outbox, threads
from app.records.linking import link_graph_message, load_connection
from app.records.purge import purge_record
from app.records.records import create_record
from tests.fake_graph import FIRST_ID, MAILBOX, NOW, VENDOR, connection, graph, graph_message, record, services  # noqa: F401  (fixtures)
from tests.tables import table

pytestmark = pytest.mark.both_engines

SECRET_FILE = b"%PDF-1.7 banking details 0042-7781"


def upload_with_file(db, record_id: int) -> None:
    email = EmailMessage()
    email["Message-ID"] = "<w9-4712@acme.example>"
    email["From"] = f"Dana <{VENDOR}>"
    email["To"] = MAILBOX
    email["Subject"] = "Our W-9"
    email.set_content("The W-9 is attached.")
    email.add_attachment(SECRET_FILE, maintype="application", subtype="pdf", filename="w9.pdf")
    threads.store_upload(db, record_id, bytes(email))


def queue(services, record_id: int, connection_id: int, key: str) -> int:
    request = {"connection_id": connection_id, "to": [VENDOR], "cc": [], "subject": "Banking details",
               "body": "Please confirm.", "body_type": "text", "reply": False, "automated": False,
               "attachments": [{"name": "form.pdf", "content_type": "application/pdf", "content": b"form bytes"}]}
    return outbox.queue_send(services.db(), services.queue, record_id, request, key)["id"]


def rows_of(db, record_id: int) -> dict[str, int]:
    """How many rows of each table belong to the record."""
    counts = {
        "records": "SELECT count(*) FROM records WHERE id = ?",
        "messages": "SELECT count(*) FROM messages WHERE record_id = ?",
        "message_copies": "SELECT count(*) FROM message_copies c JOIN messages m ON m.id = c.message_id"
                          " WHERE m.record_id = ?",
        "attachments": "SELECT count(*) FROM attachments a JOIN messages m ON m.id = a.message_id WHERE m.record_id = ?",
        "thread_message_ids": "SELECT count(*) FROM thread_message_ids WHERE record_id = ?",
        "thread_conversations": "SELECT count(*) FROM thread_conversations WHERE record_id = ?",
        "outbox": "SELECT count(*) FROM outbox WHERE record_id = ?",
        "record_connections": "SELECT count(*) FROM record_connections WHERE record_id = ?",
        "consent_requests": "SELECT count(*) FROM consent_requests WHERE record_id = ?",
    }
    return {name: db.execute(sql, [record_id]).fetchone()[0] for name, sql in counts.items()}


@pytest.fixture
def full(services, record, connection):
    """The record with an upload carrying a file, a linked reply from the mailbox, a queued send with a
    file and a remembered consent attempt; and another record the same reply is linked to."""
    db = services.db()
    upload_with_file(db, record)
    reply = graph_message("AAMk-reply", "<re-4711@acme.example>", received=NOW - timedelta(hours=1),
                          in_reply_to=FIRST_ID, subject="RE: Onboarding")
    mailbox = load_connection(db, connection)
    assert link_graph_message(db, mailbox, reply) == [record]
    other = create_record(db, "Acme contract")["id"]
    threads.link_message(db, other, connection, reply, mailbox_address=MAILBOX, reason="test")
    consent.record_consent_problem(db, record, "access_denied", "AADSTS65004: declined")
    queued = queue(services, record, connection, "key-1")
    return {"other": other, "queued": queued}


def test_everything_of_the_record_goes_and_its_mailbox_and_other_records_stay(services, record, connection, full):
    db = services.db()
    before = rows_of(db, record)
    assert all(before.values()), before
    other_before = rows_of(db, full["other"])

    purge_record(db, record)

    assert set(rows_of(db, record).values()) == {0}
    assert table(db, "attachment_content").count == 0 and table(db, "outbox_attachments").count == 0
    assert rows_of(db, full["other"]) == other_before
    assert [m["internet_message_id"] for m in threads.thread(db, full["other"])] == ["<re-4711@acme.example>"]
    assert table(db, "connections").get(connection)["status"] == "active"
    with pytest.raises(NotFound):
        purge_record(db, record)


def test_a_queued_send_is_dropped_and_a_worker_that_read_it_just_before_cannot_start_it(services, record, full):
    db = services.db()
    read_by_worker = outbox.pending(db, full["queued"])
    purge_record(db, record)
    assert outbox.pending(db, full["queued"]) is None  # its job finds nothing to send
    assert outbox.start_sending(db, read_by_worker, "<rec1.late@service.example>") is False
    assert rows_of(db, record)["thread_message_ids"] == 0  # the Message-ID it would have minted is no key


def test_a_send_on_its_way_out_refuses_the_purge_and_nothing_is_deleted(services, record, full):
    db = services.db()
    assert outbox.start_sending(db, outbox.pending(db, full["queued"]), "<rec1.sending@service.example>")
    before = rows_of(db, record)
    with pytest.raises(Conflict) as refused:
        purge_record(db, record)
    assert refused.value.code == "send_in_flight"
    assert rows_of(db, record) == before and table(db, "attachment_content").count == 1
    outbox.fail(db, full["queued"], "gave up")  # once it is sent or failed, the record can go
    purge_record(db, record)
    assert set(rows_of(db, record).values()) == {0}


def test_an_unknown_record_is_not_found(services):
    with pytest.raises(NotFound):
        purge_record(services.db(), 404)
