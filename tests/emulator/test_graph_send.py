"""Writing and sending: drafts, createReply, reply, send, sendMail (JSON and MIME), custom headers."""

from __future__ import annotations

import base64

IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def headers_of(user, message_id):
    rv = user.get(f"/me/messages/{message_id}", params={"$select": "internetMessageHeaders"})
    return {h["name"]: h["value"] for h in rv.json()["internetMessageHeaders"]}


def test_create_reply_threads_the_draft(emulator, alice):
    original = emulator.mail.deliver(alice.id, subject="RE: Invoice 12", body="See attached",
                                     sender="carol@customer.example", to=[alice.email],
                                     references=["<root@customer.example>"])
    rv = alice.post(f"/me/messages/{original['id']}/createReply", json={"comment": "Thanks!"})
    assert rv.status_code == 201
    draft = rv.json()
    assert draft["isDraft"] is True and draft["subject"] == "RE: Invoice 12"
    assert draft["conversationId"] == original["conversationId"]
    assert draft["toRecipients"][0]["emailAddress"]["address"] == "carol@customer.example"
    assert base64.b64decode(draft["conversationIndex"]).startswith(base64.b64decode(original["conversationIndex"]))
    headers = headers_of(alice, draft["id"])
    assert headers["In-Reply-To"] == original["internetMessageId"]
    assert headers["References"] == f"<root@customer.example> {original['internetMessageId']}"


def test_send_moves_draft_to_sent_items_keeping_the_immutable_id(emulator, alice):
    original = emulator.mail.deliver(alice.id, subject="Hello", body="Hi", sender="carol@customer.example",
                                     to=[alice.email])
    draft = alice.post(f"/me/messages/{original['id']}/createReply", headers=IMMUTABLE).json()
    rest_id = alice.get(f"/me/messages/{draft['id']}").json()["id"]
    assert rest_id != draft["id"]
    assert alice.patch(f"/me/messages/{draft['id']}", json={"body": {"contentType": "text", "content": "Yes"}}
                       ).status_code == 200
    rv = alice.post(f"/me/messages/{draft['id']}/send")
    assert rv.status_code == 202 and rv.content == b""
    sent = alice.get(f"/me/messages/{draft['id']}", headers=IMMUTABLE).json()
    assert sent["id"] == draft["id"] and sent["isDraft"] is False
    assert sent["parentFolderId"] == alice.get("/me/mailFolders('SentItems')").json()["id"]
    assert sent["internetMessageId"] == draft["internetMessageId"]
    assert alice.get(f"/me/messages/{rest_id}").status_code == 404
    assert emulator.mail.outbound[-1]["internetMessageId"] == draft["internetMessageId"]


def test_send_mail_json_delivers_a_copy_to_another_emulator_user(emulator, alice, bob):
    rv = alice.post("/me/sendMail", json={"message": {
        "subject": "Contract", "body": {"contentType": "html", "content": "<p>Draft attached</p>"},
        "toRecipients": [{"emailAddress": {"address": bob.email}}],
        "internetMessageHeaders": [{"name": "x-record-id", "value": "R-1"}],
    }})
    assert rv.status_code == 202 and rv.content == b""
    [received] = emulator.mail.messages(bob.id, "inbox")
    [sent] = emulator.mail.messages(alice.id, "sentitems")
    assert received["internetMessageId"] == sent["internetMessageId"]
    assert received["bodyPreview"] == "Draft attached"
    assert {"name": "x-record-id", "value": "R-1"} in received["internetMessageHeaders"]
    assert all(h["name"] != "x-record-id" for h in sent["internetMessageHeaders"])

    draft = bob.post(f"/me/messages/{received['id']}/createReply", json={"comment": "Signed"}).json()
    assert bob.post(f"/me/messages/{draft['id']}/send").status_code == 202
    [answer] = emulator.mail.messages(alice.id, "inbox")
    assert answer["subject"] == "RE: Contract"
    assert answer["conversationId"] == sent["conversationId"]
    assert {"name": "In-Reply-To", "value": sent["internetMessageId"]} in answer["internetMessageHeaders"]


def test_send_mail_without_saving_to_sent_items(emulator, alice, bob):
    rv = alice.post("/me/sendMail", json={"saveToSentItems": False, "message": {
        "subject": "No copy", "toRecipients": [{"emailAddress": {"address": bob.email}}]}})
    assert rv.status_code == 202
    assert emulator.mail.messages(alice.id, "sentitems") == []
    assert len(emulator.mail.messages(bob.id, "inbox")) == 1


def test_send_mail_mime_keeps_threading_headers(emulator, alice):
    original = emulator.mail.deliver(alice.id, subject="Question", body="?", sender="carol@customer.example",
                                     to=[alice.email])
    mime = (f"From: {alice.email}\r\nTo: Carol <carol@customer.example>\r\nSubject: RE: Question\r\n"
            f"Message-ID: <answer-1@contoso.example>\r\nIn-Reply-To: {original['internetMessageId']}\r\n"
            f"References: {original['internetMessageId']}\r\nX-Record: 9\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nAnswer.\r\n")
    rv = alice.post("/me/sendMail", data=base64.b64encode(mime.encode()), headers={"Content-Type": "text/plain"})
    assert rv.status_code == 202 and rv.content == b""
    [sent] = emulator.mail.messages(alice.id, "sentitems")
    assert sent["internetMessageId"] == "<answer-1@contoso.example>"
    assert sent["conversationId"] == original["conversationId"]
    assert {"name": "In-Reply-To", "value": original["internetMessageId"]} in sent["internetMessageHeaders"]
    assert emulator.mail.outbound[-1]["toRecipients"][0]["emailAddress"]["address"] == "carol@customer.example"


def test_send_mail_rejects_bad_base64(alice):
    rv = alice.post("/me/sendMail", data=b"not base64 at all!", headers={"Content-Type": "text/plain"})
    assert rv.status_code == 400
    assert rv.json()["error"]["message"] == "Invalid base64 string for MIME content."


def test_only_x_headers_may_be_set(alice):
    rv = alice.post("/me/messages", json={"subject": "Draft", "internetMessageHeaders": [
        {"name": "In-Reply-To", "value": "<a@b>"}]})
    assert rv.status_code == 400 and rv.json()["error"]["code"] == "InvalidInternetMessageHeader"
    rv = alice.post("/me/messages", json={"subject": "Draft", "internetMessageHeaders": [
        {"name": "X-Custom", "value": "1"}]})
    assert rv.status_code == 201 and rv.json()["isDraft"] is True


def test_drafts_can_change_subject_and_recipients(alice):
    draft = alice.post("/me/messages", json={"subject": "Draft"}).json()
    assert alice.post(f"/me/messages/{draft['id']}/send").status_code == 400
    rv = alice.patch(f"/me/messages/{draft['id']}", json={
        "subject": "Final", "toRecipients": [{"emailAddress": {"address": "dan@partner.example"}}]})
    assert rv.status_code == 200 and rv.json()["subject"] == "Final"
    assert alice.post(f"/me/messages/{draft['id']}/send").status_code == 202
    assert alice.post(f"/me/messages/{draft['id']}/send").status_code in (400, 404)


def test_reply_takes_comment_or_message_but_not_both(emulator, alice):
    original = emulator.mail.deliver(alice.id, subject="Ping", body="ping", sender="carol@customer.example",
                                     to=[alice.email])
    both = {"comment": "pong", "message": {"body": {"contentType": "text", "content": "pong"}}}
    assert alice.post(f"/me/messages/{original['id']}/reply", json=both).status_code == 400
    rv = alice.post(f"/me/messages/{original['id']}/reply", json={"comment": "pong"})
    assert rv.status_code == 202 and rv.content == b""
    [sent] = emulator.mail.messages(alice.id, "sentitems")
    assert sent["subject"] == "RE: Ping" and sent["conversationId"] == original["conversationId"]
    assert emulator.mail.messages(alice.id, "drafts") == []


def test_action_parameters_are_case_insensitive_as_in_graphs_metadata(emulator, alice, bob):
    """The SDK sends ``sendMail(Message, SaveToSentItems)`` and ``createReply(Comment)`` with capitals."""
    rv = alice.post("/me/sendMail", json={"SaveToSentItems": False, "Message": {
        "subject": "Capitals", "toRecipients": [{"emailAddress": {"address": bob.email}}]}})
    assert rv.status_code == 202, rv.text
    assert emulator.mail.messages(alice.id, "sentitems") == []
    [received] = emulator.mail.messages(bob.id, "inbox")

    draft = bob.post(f"/me/messages/{received['id']}/createReply", json={"Comment": "Noted"}).json()
    assert "<div>Noted</div>" in draft["body"]["content"]
    moved = bob.post(f"/me/messages/{received['id']}/move", json={"DestinationId": "archive"})
    assert moved.status_code == 201, moved.text
