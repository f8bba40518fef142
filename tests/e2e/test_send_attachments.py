"""Sending files from a record: small ones posted to the draft, large ones uploaded in ranges, each once
across retries, and a message too large for the mailbox failed with Exchange's reason."""

from __future__ import annotations

import base64

import pytest

from tests.e2e.test_send import connection_id, post_send, sent_copies, wait_sent

pytestmark = pytest.mark.both_engines


def test_a_send_carries_its_attachments_small_ones_posted_a_large_one_uploaded_in_ranges(service, api, megan,
                                                                                      connected):
    small, large = b"%PDF-1.4 invoice " * 3000, bytes(range(256)) * (5 * 4096)  # 51 KB and 5 MB
    rv = post_send(service, connected["record"]["id"], {
        "connection_id": connection_id(connected), "to": ["dana@acme.example"], "subject": "Signed contract",
        "body": "Both documents attached.", "attachments": [
            {"name": "invoice.pdf", "content_type": "application/pdf",
             "content_base64": base64.b64encode(small).decode()},
            {"name": "contract scan.tif", "content_type": "image/tiff",
             "content_base64": base64.b64encode(large).decode()}]}, "attach-1")
    assert rv.status_code == 202, rv.text
    outbox = wait_sent(api, rv.json()["id"])
    [sent] = sent_copies(service, megan)
    assert [a["name"] for a in sent["attachments"]] == ["invoice.pdf", "contract scan.tif"]
    [copy] = service.emulator.mail.mailbox(megan).by_internet_id(outbox["internet_message_id"])
    assert [a.content for a in copy.attachments] == [small, large]
    uploads = [r for r in service.emulator.requests(method="PUT") if "AttachmentSessions" in r["path"]]
    assert len(uploads) == 2  # 5 MB in ranges of at most 4 MB
    posted = [r for r in service.emulator.requests(method="POST") if r["path"].endswith("/attachments")]
    assert len(posted) == 1



def test_an_upload_cut_off_between_its_ranges_is_redone_whole_and_the_file_sent_once(service, api, megan,
                                                                                     connected):
    """Graph fails the second range of a 7 MB upload: the retry finds no such attachment on the draft
    (an unfinished upload leaves none), uploads it again in a new session, and sends one message with
    one copy of the file."""
    content = bytes(range(256)) * (7 * 4096)
    service.emulator.faults.add_rule(503, method="PUT", path="AttachmentSessions", nth=2, times=1, retry_after=1)
    rv = post_send(service, connected["record"]["id"], {
        "connection_id": connection_id(connected), "to": ["dana@acme.example"], "subject": "Scan",
        "body": "The scan.", "attachments": [{"name": "scan.tif", "content_type": "image/tiff",
                                              "content_base64": base64.b64encode(content).decode()}]}, "cut-1")
    assert rv.status_code == 202, rv.text
    outbox = wait_sent(api, rv.json()["id"])
    [sent] = sent_copies(service, megan)
    [copy] = service.emulator.mail.mailbox(megan).by_internet_id(outbox["internet_message_id"])
    assert [(a.name, a.content) for a in copy.attachments] == [("scan.tif", content)]
    uploads = [r for r in service.emulator.requests(method="PUT") if "AttachmentSessions" in r["path"]]
    assert [r["status"] for r in uploads] == [200, 503, 200, 201]  # the second session starts again at byte 0


def test_a_message_over_the_mailboxs_size_limit_fails_with_the_reason_and_leaves_no_draft(service, api, megan,
                                                                                          connected):
    service.emulator.set_mail_limits(max_message_bytes=100_000)
    rv = post_send(service, connected["record"]["id"], {
        "connection_id": connection_id(connected), "to": ["dana@acme.example"], "subject": "Too big",
        "body": "Large.", "attachments": [{"name": "big.bin",
                                           "content_base64": base64.b64encode(b"x" * 150_000).decode()}]}, "big-1")
    assert rv.status_code == 202, rv.text
    failed = wait_sent(api, rv.json()["id"], status="failed")
    assert "maximum supported size" in failed["error"]
    mailbox = service.emulator.mail.mailbox(megan)
    kept = {mailbox.folder(name).id: name for name in ("drafts", "sentitems")}
    assert [kept[m.folder_id] for m in mailbox.messages() if m.subject == "Too big" and m.folder_id in kept] == []
    assert not [r for r in service.emulator.requests(method="POST") if r["path"].endswith("/send")]
