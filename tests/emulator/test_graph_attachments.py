"""Attachments: reading, $expand (also in $batch), writing on drafts, upload sessions, size limits, delivery."""

from __future__ import annotations

import base64
import re
from email.message import EmailMessage

import pytest
import requests

from emulator.demo import W9_ATTACHMENT, W9_PDF
from emulator.mail_limits import MiB

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
METADATA = "id,name,contentType,size,isInline"


@pytest.fixture
def uploader():
    """A session with no Authorization header, as an upload URL wants to be called."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


def deliver(emulator, user, *attachments, **fields):
    fields = {"subject": "Onboarding documents", "body": "Attached are our W-9 and banking details.",
              "sender": "dana@acme.example", "to": [user.email], **fields}
    return emulator.deliver_email(user.id, attachments=list(attachments), **fields)


def draft_to(user, recipient, **fields):
    rv = user.post("/me/messages", json={"subject": "Contract", "toRecipients": [
        {"emailAddress": {"address": recipient}}], **fields})
    assert rv.status_code == 201, rv.text
    return rv.json()


def b64(content):
    return base64.b64encode(content).decode()


def file_json(name, content, **fields):
    return {"@odata.type": "#microsoft.graph.fileAttachment", "name": name, "contentBytes": b64(content), **fields}


def error_of(rv):
    return rv.status_code, rv.json()["error"]["code"]


def upload_session(user, message_id, size, **item):
    rv = user.post(f"/me/messages/{message_id}/attachments/createUploadSession",
                   json={"attachmentItem": {"attachmentType": "file", "name": "scan.bin", "size": size, **item}})
    assert rv.status_code == 201, rv.text
    return rv.json()


def put_range(uploader, emulator, url, data, first, total):
    return uploader.put(url, data=data, verify=emulator.ca_file, headers={
        "Content-Type": "application/octet-stream", "Content-Range": f"bytes {first}-{first + len(data) - 1}/{total}"})


def test_list_get_and_value_give_the_attached_bytes(emulator, alice):
    message = deliver(emulator, alice, W9_ATTACHMENT)
    [summary] = message["attachments"]
    assert summary["@odata.type"] == "#microsoft.graph.fileAttachment" and "contentBytes" not in summary

    [listed] = alice.get(f"/me/messages/{message['id']}/attachments").json()["value"]
    one = alice.get(f"/me/messages/{message['id']}/attachments/{listed['id']}").json()
    raw = alice.get(f"/me/messages/{message['id']}/attachments/{listed['id']}/$value")
    in_folder = alice.get(f"/me/mailFolders/inbox/messages/{message['id']}/attachments/{listed['id']}/$value")

    assert base64.b64decode(listed["contentBytes"]) == base64.b64decode(one["contentBytes"]) == W9_PDF
    assert one["@odata.context"].endswith("/attachments/$entity")
    assert (one["name"], one["contentType"], one["size"], one["isInline"]) == ("W-9.pdf", "application/pdf",
                                                                              len(W9_PDF), False)
    assert re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", one["id"]) and one["id"] != message["id"]
    assert raw.content == in_folder.content == W9_PDF and raw.headers["Content-Type"] == "application/pdf"
    assert raw.content.startswith(b"%PDF-1.4") and raw.content.rstrip().endswith(b"%%EOF")
    xref = int(W9_PDF.rsplit(b"startxref\n", 1)[1].split()[0])
    assert W9_PDF[xref:].startswith(b"xref\n0 6\n")


def test_select_on_attachments(emulator, alice):
    message = deliver(emulator, alice, {"name": "logo.png", "content": PNG, "inline": True, "content_id": "logo"})
    path = f"/me/messages/{message['id']}/attachments"

    [picked] = alice.get(path, params={"$select": "name,microsoft.graph.fileAttachment/contentId"}).json()["value"]
    bytes_only = alice.get(path, params={"$select": "microsoft.graph.fileAttachment/contentBytes"}).json()["value"]

    assert set(picked) == {"@odata.type", "id", "name", "contentId"} and picked["contentId"] == "logo"
    assert base64.b64decode(bytes_only[0]["contentBytes"]) == PNG
    assert error_of(alice.get(path, params={"$select": "contentBytes"})) == (400, "RequestBroker--ParseUri")


def test_has_attachments_ignores_inline_ones(emulator, alice):
    inline_only = deliver(emulator, alice, {"name": "logo.png", "content": PNG, "inline": True, "content_id": "logo"},
                          body={"contentType": "html", "content": '<p>Hi</p><img src="cid:logo">'})
    with_file = deliver(emulator, alice, {"name": "logo.png", "content": PNG, "inline": True, "content_id": "logo"},
                        W9_ATTACHMENT)
    plain = deliver(emulator, alice)

    has = {m["id"]: m["hasAttachments"] for m in alice.get("/me/messages", params={"$select": "hasAttachments"}
                                                              ).json()["value"]}
    [inline] = alice.get(f"/me/messages/{inline_only['id']}/attachments").json()["value"]

    assert has == {inline_only["id"]: False, with_file["id"]: True, plain["id"]: False}
    assert (inline["isInline"], inline["contentId"], inline["contentType"]) == (True, "logo", "image/png")


def test_expand_attachments_with_select_in_a_batch(emulator, alice):
    message = deliver(emulator, alice, W9_ATTACHMENT)
    url = f"/me/messages/{message['id']}?$select=subject,hasAttachments&$expand=attachments($select={METADATA})"

    rv = alice.post("/$batch", json={"requests": [{"id": "1", "method": "GET", "url": url,
                                                   "headers": {"Prefer": 'IdType="ImmutableId"'}}]})

    [response] = rv.json()["responses"]
    assert response["status"] == 200, response
    body = response["body"]
    assert body["id"] == message["@emulator.immutableId"] and body["hasAttachments"] is True
    [attachment] = body["attachments"]
    assert attachment == {"@odata.type": "#microsoft.graph.fileAttachment", "id": message["attachments"][0]["id"],
                          "name": "W-9.pdf", "contentType": "application/pdf", "size": len(W9_PDF), "isInline": False}


def test_expand_attachments_on_lists_and_its_errors(emulator, world, alice):
    deliver(emulator, alice, W9_ATTACHMENT)

    [listed] = alice.get("/me/mailFolders/inbox/messages", params={"$expand": "attachments"}).json()["value"]
    not_expanded = alice.get("/me/messages").json()["value"][0]
    unknown = alice.get("/me/messages", params={"$expand": "attachments($select=name,contentBytes)"})
    reader = world.user("reader", scopes=frozenset({"Mail.ReadBasic"}))
    deliver(emulator, reader)

    assert base64.b64decode(listed["attachments"][0]["contentBytes"]) == W9_PDF
    assert "attachments" not in not_expanded
    assert error_of(unknown) == (400, "RequestBroker--ParseUri") and "contentBytes" in unknown.text
    assert error_of(alice.get("/me/messages", params={"$expand": "extensions"})) == (400, "RequestBroker--ParseUri")
    assert reader.get("/me/messages").status_code == 200
    assert error_of(reader.get("/me/messages", params={"$expand": "attachments"})) == (403, "ErrorAccessDenied")
    message_id = reader.get("/me/messages").json()["value"][0]["id"]
    assert reader.get(f"/me/messages/{message_id}/attachments").status_code == 403


def test_item_and_reference_attachments(emulator, alice):
    message = deliver(emulator, alice,
                      {"name": "Original order", "item": {"subject": "Order 1234", "body": {
                          "contentType": "text", "content": "Two pallets."}, "from": "buyer@acme.example"}},
                      {"name": "Budget.xlsx", "source_url": "https://acme.sharepoint.com/budget.xlsx"})
    path = f"/me/messages/{message['id']}/attachments"
    item, reference = alice.get(path).json()["value"]

    expanded = alice.get(f"{path}/{item['id']}", params={"$expand": "microsoft.graph.itemAttachment/item"}).json()
    mime = alice.get(f"{path}/{item['id']}/$value")

    assert item["@odata.type"] == "#microsoft.graph.itemAttachment" and item["contentType"] is None
    assert "contentBytes" not in item and "item" not in item and item["size"] == len(mime.content)
    assert expanded["item"]["@odata.type"] == "#microsoft.graph.message" and expanded["item"]["id"] == ""
    assert expanded["item"]["subject"] == "Order 1234"
    assert expanded["item"]["from"]["emailAddress"]["address"] == "buyer@acme.example"
    assert mime.headers["Content-Type"] == "message/rfc822"
    assert b"Subject: Order 1234" in mime.content and b"Two pallets." in mime.content
    assert reference["@odata.type"] == "#microsoft.graph.referenceAttachment"
    assert set(reference) == {"@odata.type", "id", "lastModifiedDateTime", "name", "contentType", "size", "isInline"}
    assert alice.get(f"{path}/{reference['id']}/$value").status_code == 405
    assert error_of(alice.get(f"{path}/{item['id']}", params={"$expand": "item"})) == (400, "RequestBroker--ParseUri")


def test_post_and_delete_an_attachment_on_a_draft(emulator, alice):
    draft = draft_to(alice, "dana@acme.example")
    path = f"/me/messages/{draft['id']}/attachments"

    added = alice.post(path, json=file_json("W-9.pdf", W9_PDF))
    assert added.status_code == 201, added.text
    attachment = added.json()
    changed = alice.get(f"/me/messages/{draft['id']}", params={"$select": "hasAttachments,changeKey"}).json()
    deleted = alice.delete(f"{path}/{attachment['id']}")

    assert attachment["contentType"] == "application/pdf" and attachment["size"] == len(W9_PDF)
    assert base64.b64decode(attachment["contentBytes"]) == W9_PDF
    assert changed["hasAttachments"] is True and changed["changeKey"] != draft["changeKey"]
    assert deleted.status_code == 204 and deleted.content == b""
    assert alice.get(path).json()["value"] == []
    assert alice.delete(f"{path}/{attachment['id']}").status_code == 404
    assert error_of(alice.post(path, json={"name": "x"})) == (400, "UnableToDeserializePostBody")


def test_only_drafts_take_new_attachments(emulator, alice):
    received = deliver(emulator, alice)

    posted = alice.post(f"/me/messages/{received['id']}/attachments", json=file_json("a.txt", b"a"))
    session = alice.post(f"/me/messages/{received['id']}/attachments/createUploadSession",
                         json={"AttachmentItem": {"attachmentType": "file", "name": "a.bin", "size": 4 * MiB}})

    assert error_of(posted) == error_of(session) == (400, "ErrorInvalidPropertyUpdateSentMessage")


def test_a_post_over_graphs_request_limit_is_413(emulator, alice):
    draft = draft_to(alice, "dana@acme.example")
    path = f"/me/messages/{draft['id']}/attachments"

    too_big = alice.post(path, json=file_json("scan.pdf", bytes(3 * MiB)))
    just_under = alice.post(path, json=file_json("scan.pdf", bytes(3 * MiB - 4096)))

    assert error_of(too_big) == (413, "ErrorRequestEntityTooLarge")
    assert too_big.json()["error"]["message"] == "The maximum request length supported is 4MB."
    assert just_under.status_code == 201


def test_an_upload_session_attaches_a_large_file(emulator, alice, uploader):
    draft = draft_to(alice, "dana@acme.example")
    content = bytes(range(256)) * (10 * MiB // 256)
    session = upload_session(alice, draft["id"], len(content), contentType="application/pdf")
    url = session["uploadUrl"]

    answers = [put_range(uploader, emulator, url, content[first:first + 4 * MiB], first, len(content))
               for first in range(0, len(content), 4 * MiB)]

    tenant_id = emulator.directory.user(alice.id).tenant_id
    assert url.startswith(f"{emulator.base_url}/api/v2.0/Users('{alice.id}@{tenant_id}')/Messages('{draft['id']}')")
    assert session["nextExpectedRanges"] == ["0-"]
    assert session["@odata.context"].endswith("$metadata#microsoft.graph.uploadSession")
    assert [a.status_code for a in answers] == [200, 200, 201]
    assert answers[0].json()["nextExpectedRanges"] == [str(4 * MiB)]
    assert answers[1].json()["ExpirationDateTime"] == session["expirationDateTime"]
    location = answers[2].headers["Location"]
    assert answers[2].content == b"" and f"/Messages('{draft['id']}')/Attachments('" in location
    attachment_id = re.search(r"Attachments\('([^']+)'\)$", location).group(1)
    raw = alice.get(f"/me/messages/{draft['id']}/attachments/{attachment_id}/$value")
    assert raw.content == content and raw.headers["Content-Type"] == "application/pdf"
    assert alice.get(f"/me/messages/{draft['id']}", params={"$select": "hasAttachments"}).json()["hasAttachments"]
    assert put_range(uploader, emulator, url, b"x", 0, len(content)).status_code == 404


def test_upload_session_errors(emulator, alice, uploader):
    draft = draft_to(alice, "dana@acme.example")
    size = 9 * MiB
    url = upload_session(alice, draft["id"], size)["uploadUrl"]

    out_of_order = put_range(uploader, emulator, url, bytes(1024), 1024, size)
    with_token = alice.session.put(url, data=bytes(1024), headers={"Content-Range": f"bytes 0-1023/{size}"})
    too_big = put_range(uploader, emulator, url, bytes(4 * MiB + 1), 0, size)
    no_range = uploader.put(url, data=b"x", verify=emulator.ca_file)
    first = put_range(uploader, emulator, url, bytes(1024), 0, size)
    again = put_range(uploader, emulator, url, bytes(1024), 0, size)
    wrong_token = put_range(uploader, emulator, url.replace("authtoken=", "authtoken=x"), bytes(1024), 1024, size)

    assert error_of(out_of_order) == (416, "invalidRange")
    assert error_of(with_token) == (401, "InvalidAudienceForResource")
    assert error_of(too_big) == (413, "ErrorRequestEntityTooLarge")
    assert error_of(no_range) == (400, "ErrorInvalidRequest")
    assert first.status_code == 200 and first.json()["nextExpectedRanges"] == ["1024"]
    assert error_of(again) == (416, "invalidRange") and "starts at 1024" in again.text
    assert error_of(wrong_token) == (401, "InvalidAuthenticationToken")


def test_upload_session_sizes_cancel_and_expiry(emulator, world, alice, uploader):
    draft = draft_to(alice, "dana@acme.example")
    create = f"/me/messages/{draft['id']}/attachments/createUploadSession"

    small = alice.post(create, json={"AttachmentItem": {"attachmentType": "file", "name": "a", "size": 3 * MiB - 1}})
    huge = alice.post(create, json={"AttachmentItem": {"attachmentType": "file", "name": "a", "size": 150 * MiB + 1}})
    cancelled = upload_session(alice, draft["id"], 3 * MiB)["uploadUrl"]
    expiring = upload_session(alice, draft["id"], 3 * MiB)["uploadUrl"]

    assert error_of(small) == (400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize")
    assert error_of(huge) == (413, "ErrorMessageSizeExceeded")
    assert uploader.delete(cancelled, verify=emulator.ca_file).status_code == 204
    assert error_of(put_range(uploader, emulator, cancelled, b"x", 0, 3 * MiB)) == (404, "ErrorItemNotFound")
    emulator.advance_clock(2 * 3600)
    assert error_of(put_range(uploader, emulator, expiring, b"x", 0, 3 * MiB)) == (401, "InvalidAuthenticationToken")
    world.refresh(alice)
    assert alice.get(f"/me/messages/{draft['id']}/attachments").json()["value"] == []


def test_a_message_over_the_size_limit_is_not_sent(emulator, alice, bob):
    draft = draft_to(alice, bob.email)
    added = alice.post(f"/me/messages/{draft['id']}/attachments", json=file_json("a.bin", bytes(60_000)))
    assert added.status_code == 201
    emulator.set_mail_limits(max_message_bytes=50_000)

    sent = alice.post(f"/me/messages/{draft['id']}/send")
    send_mail = alice.post("/me/sendMail", json={"message": {
        "subject": "Big", "toRecipients": [{"emailAddress": {"address": bob.email}}],
        "attachments": [file_json("b.bin", bytes(40_000))]}})
    attach_more = alice.post(f"/me/messages/{draft['id']}/attachments", json=file_json("c.bin", bytes(10)))

    assert error_of(sent) == error_of(send_mail) == error_of(attach_more) == (413, "ErrorMessageSizeExceeded")
    assert sent.json()["error"]["message"] == "The message exceeds the maximum supported size."
    assert emulator.mail.messages(bob.id) == [] and emulator.mail.outbound == []
    assert emulator.mail.messages(alice.id, "sentitems") == []
    assert [m["id"] for m in emulator.mail.messages(alice.id, "drafts")] == [draft["id"]]


def test_a_reply_over_the_size_limit_leaves_no_draft(emulator, alice):
    original = deliver(emulator, alice)
    emulator.set_mail_limits(max_message_bytes=10_000)

    rv = alice.post(f"/me/messages/{original['id']}/reply", json={"message": {
        "attachments": [file_json("big.bin", bytes(20_000))]}})

    assert error_of(rv) == (413, "ErrorMessageSizeExceeded")
    assert emulator.mail.messages(alice.id, "drafts") == [] and emulator.mail.outbound == []


def test_a_sent_draft_keeps_its_attachments_in_every_copy(emulator, alice, bob):
    draft = draft_to(alice, bob.email)
    [attachment] = [alice.post(f"/me/messages/{draft['id']}/attachments", json=file_json("W-9.pdf", W9_PDF)).json()]

    assert alice.post(f"/me/messages/{draft['id']}/send").status_code == 202

    [received] = bob.get("/me/mailFolders/inbox/messages", params={"$expand": "attachments"}).json()["value"]
    [sent] = alice.get("/me/mailFolders/sentitems/messages", params={"$expand": "attachments"}).json()["value"]
    assert received["hasAttachments"] and sent["hasAttachments"]
    assert base64.b64decode(received["attachments"][0]["contentBytes"]) == W9_PDF
    assert sent["attachments"][0]["id"] == attachment["id"]
    assert received["attachments"][0]["id"] != attachment["id"]
    assert base64.b64decode(sent["attachments"][0]["contentBytes"]) == W9_PDF


def test_send_mail_create_reply_and_mime_carry_attachments(emulator, alice, bob):
    inline = file_json("logo.png", PNG, isInline=True, contentId="logo")
    assert alice.post("/me/sendMail", json={"message": {
        "subject": "Logo", "body": {"contentType": "html", "content": '<img src="cid:logo">'},
        "toRecipients": [{"emailAddress": {"address": bob.email}}],
        "attachments": [inline, file_json("W-9.pdf", W9_PDF)]}}).status_code == 202
    [received] = emulator.mail.messages(bob.id)
    draft = bob.post(f"/me/messages/{received['id']}/createReply", json={"message": {
        "attachments": [file_json("signed.pdf", W9_PDF)]}}).json()
    mime = EmailMessage()
    mime["To"], mime["Subject"] = bob.email, "MIME"
    mime.set_content("See attached.")
    mime.add_attachment(W9_PDF, maintype="application", subtype="pdf", filename="W-9.pdf")
    assert alice.post("/me/sendMail", data=base64.b64encode(bytes(mime)), headers={"Content-Type": "text/plain"}
                      ).status_code == 202

    assert [(a["name"], a["isInline"], a["contentId"]) for a in received["attachments"]] == [
        ("logo.png", True, "logo"), ("W-9.pdf", False, None)]
    assert received["hasAttachments"] is True
    assert [a["name"] for a in bob.get(f"/me/messages/{draft['id']}/attachments").json()["value"]] == ["signed.pdf"]
    by_mime = next(m for m in emulator.mail.messages(bob.id) if m["subject"] == "MIME")
    raw = bob.get(f"/me/messages/{by_mime['id']}/attachments/{by_mime['attachments'][0]['id']}/$value")
    assert raw.content == W9_PDF


def test_the_control_api_delivers_attachments(emulator, alice):
    rv = requests.post(f"{emulator.base_url}/_emulator/messages", verify=emulator.ca_file, timeout=5, json={
        "user_id": alice.id, "from": "dana@acme.example", "to": [alice.email], "subject": "Onboarding documents",
        "body": "See attached.", "attachments": [
            {"name": "W-9.pdf", "content_type": "application/pdf", "content_base64": b64(W9_PDF)},
            {"name": "logo.png", "content_base64": b64(PNG), "inline": True, "content_id": "logo"},
            {"name": "Order", "item": {"subject": "Order 1234"}},
            {"name": "Budget.xlsx", "source_url": "https://acme.sharepoint.com/budget.xlsx"}]})
    bad = requests.post(f"{emulator.base_url}/_emulator/messages", verify=emulator.ca_file, timeout=5, json={
        "user_id": alice.id, "from": "dana@acme.example", "attachments": [{"name": "x", "content_base64": "%%"}]})

    assert rv.status_code == 201, rv.text
    listed = alice.get(f"/me/messages/{rv.json()['id']}/attachments").json()["value"]
    assert [a["@odata.type"].rpartition(".")[2] for a in listed] == [
        "fileAttachment", "fileAttachment", "itemAttachment", "referenceAttachment"]
    assert base64.b64decode(listed[0]["contentBytes"]) == W9_PDF and listed[1]["contentId"] == "logo"
    assert bad.status_code == 400 and "content_base64" in bad.json()["error"]["message"]


def test_mail_limits_are_settings(emulator):
    state = requests.get(f"{emulator.base_url}/_emulator/state", verify=emulator.ca_file, timeout=5).json()
    changed = requests.post(f"{emulator.base_url}/_emulator/mail-limits", json={"max_message_bytes": 1000},
                            verify=emulator.ca_file, timeout=5)
    unknown = requests.post(f"{emulator.base_url}/_emulator/mail-limits", json={"max_size": 1},
                            verify=emulator.ca_file, timeout=5)

    assert state["mail_limits"]["max_message_bytes"] == 35 * MiB == 36_700_160
    assert state["mail_limits"]["max_chunk_bytes"] == state["mail_limits"]["max_request_bytes"] == 4 * MiB
    assert changed.status_code == 200 and changed.json()["max_message_bytes"] == 1000
    assert emulator.mail.limits.max_message_bytes == 1000
    assert unknown.status_code == 400
    with pytest.raises(ValueError):
        emulator.set_mail_limits(max_chunk_bytes=0)
