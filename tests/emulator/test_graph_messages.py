"""Reading mail through /v1.0: auth, addressing, message fields, $select/$filter/paging, ids."""

from __future__ import annotations

import base64
from datetime import timedelta

IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def inbound(emulator, user, **fields):
    fields.setdefault("subject", "Quote request")
    fields.setdefault("body", "Please send a quote.")
    return emulator.mail.deliver(user.id, sender="Carol <carol@customer.example>", to=[user.email], **fields)


def test_me_and_request_ids(alice):
    rv = alice.get("/me", headers={"client-request-id": "abc-123"})
    assert rv.status_code == 200
    assert rv.json()["id"] == alice.id and rv.json()["mail"] == alice.email
    assert rv.headers["client-request-id"] == "abc-123"
    assert rv.headers["request-id"]
    selected = alice.get("/me", params={"$select": "mail,userPrincipalName"}).json()
    assert set(selected) == {"@odata.context", "id", "mail", "userPrincipalName"}
    assert alice.get("/me", params={"$select": "shoeSize"}).status_code == 400


def test_missing_or_expired_token_is_401(emulator, alice):
    rv = alice.session.get(alice.root + "/me/messages", headers={"Authorization": ""})
    assert rv.status_code == 401
    error = rv.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken"
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert error["innerError"]["client-request-id"] == rv.headers["request-id"] == rv.headers["client-request-id"]
    assert alice.get("/me/messages").status_code == 200
    emulator.clock.advance(timedelta(hours=2))
    assert alice.get("/me/messages").json()["error"]["code"] == "InvalidAuthenticationToken"


def test_delegated_token_reaches_only_its_own_mailbox(emulator, alice, bob):
    inbound(emulator, alice)
    assert alice.get(f"/users/{alice.email.upper()}/messages").status_code == 200
    assert alice.get(f"/users/{alice.id}/messages").status_code == 200
    rv = alice.get(f"/users/{bob.id}/messages")
    assert rv.status_code == 403 and rv.json()["error"]["code"] == "ErrorAccessDenied"
    assert alice.get("/users/nobody@nowhere.example/messages").status_code == 404


def test_missing_scope_is_403(world):
    reader = world.user("reader", scopes=frozenset({"User.Read", "Mail.Read"}))
    assert reader.get("/me/messages").status_code == 200
    rv = reader.post("/me/sendMail", json={"message": {"toRecipients": []}})
    assert rv.status_code == 403


def test_message_has_graph_fields_and_headers_only_when_selected(emulator, alice):
    sent = inbound(emulator, alice, headers=[("X-Ticket", "42")])
    message = alice.get(f"/me/messages/{sent['id']}").json()
    for name in ("id", "internetMessageId", "conversationId", "conversationIndex", "changeKey", "isDraft", "isRead",
                 "parentFolderId", "from", "sender", "toRecipients", "ccRecipients", "replyTo", "subject", "body",
                 "bodyPreview", "receivedDateTime", "sentDateTime", "createdDateTime", "lastModifiedDateTime",
                 "hasAttachments"):
        assert name in message, name
    assert "internetMessageHeaders" not in message
    assert message["@odata.etag"] == f'W/"{message["changeKey"]}"'
    assert message["internetMessageId"].startswith("<") and "@" in message["internetMessageId"]
    assert message["from"] == {"emailAddress": {"name": "Carol", "address": "carol@customer.example"}}
    assert len(base64.b64decode(message["conversationIndex"])) == 22

    selected = alice.get(f"/me/messages/{sent['id']}",
                         params={"$select": "subject,internetMessageHeaders"}).json()
    assert set(selected) == {"@odata.context", "@odata.etag", "id", "subject", "internetMessageHeaders"}
    headers = {h["name"]: h["value"] for h in selected["internetMessageHeaders"]}
    assert headers["Message-ID"] == message["internetMessageId"] and headers["X-Ticket"] == "42"


def test_unknown_select_property_is_400(emulator, alice):
    sent = inbound(emulator, alice)
    rv = alice.get(f"/me/messages/{sent['id']}", params={"$select": "subject,nope"})
    assert rv.status_code == 400
    assert "nope" in rv.json()["error"]["message"]


def test_filters(emulator, alice):
    first = inbound(emulator, alice, subject="First")
    reply = inbound(emulator, alice, subject="RE: First", in_reply_to=first["internetMessageId"])
    inbound(emulator, alice, subject="Other")
    by_id = alice.get("/me/messages",
                      params={"$filter": f"internetMessageId eq '{first['internetMessageId']}'"}).json()["value"]
    assert [m["id"] for m in by_id] == [first["id"]]
    thread = alice.get("/me/messages",
                       params={"$filter": f"conversationId eq '{first['conversationId']}'"}).json()["value"]
    assert {m["id"] for m in thread} == {first["id"], reply["id"]}
    recent = alice.get("/me/mailFolders('inbox')/messages", params={
        "$filter": f"receivedDateTime ge {first['receivedDateTime']} and conversationId eq '{first['conversationId']}'",
        "$orderby": "receivedDateTime desc"}).json()["value"]
    assert len(recent) == 2
    for bad in ("subject eq 'First'", "isRead eq false", "internetMessageId eq unquoted", "conversationId ne 'x'"):
        assert alice.get("/me/messages", params={"$filter": bad}).status_code == 400, bad
    rv = alice.get("/me/messages", params={
        "$filter": f"conversationId eq '{first['conversationId']}'", "$orderby": "receivedDateTime desc"})
    assert rv.status_code == 400 and rv.json()["error"]["code"] == "InefficientFilter"


def test_paging_follows_next_link(emulator, alice):
    for n in range(23):
        inbound(emulator, alice, subject=f"Message {n}")
    seen, url, pages = [], f"{alice.root}/me/messages?$select=subject", 0
    while url:
        page = alice.session.get(url).json()
        seen += [m["subject"] for m in page["value"]]
        url, pages = page.get("@odata.nextLink"), pages + 1
    assert pages == 3 and len(seen) == len(set(seen)) == 23
    assert seen[0] == "Message 22"
    assert len(alice.get("/me/messages", params={"$top": 5}).json()["value"]) == 5


def test_unknown_and_malformed_ids(emulator, alice):
    sent = inbound(emulator, alice)
    rv = alice.get(f"/me/messages/{sent['id'][:-5]}AAAA=")
    assert rv.status_code == 404 and rv.json()["error"]["code"] == "ErrorItemNotFound"
    assert alice.get("/me/messages/not*an*id").status_code == 400


def test_rest_id_changes_on_move_but_immutable_id_does_not(emulator, alice):
    sent = inbound(emulator, alice)
    immutable = alice.get(f"/me/messages/{sent['id']}", headers=IMMUTABLE).json()["id"]
    assert immutable == sent["@emulator.immutableId"] != sent["id"]
    moved = emulator.mail.move(alice.id, sent["id"], "archive")
    assert moved["id"] != sent["id"]
    assert alice.get(f"/me/messages/{sent['id']}").status_code == 404
    assert alice.get(f"/me/messages/{moved['id']}").json()["parentFolderId"] == moved[
        "parentFolderId"]
    again = alice.get(f"/me/messages/{immutable}", headers=IMMUTABLE).json()
    assert again["id"] == immutable
    assert alice.get(f"/me/messages/{immutable}").json()["id"] == moved["id"]
    via_api = alice.post(f"/me/messages/{immutable}/move", headers=IMMUTABLE,
                         json={"destinationId": "inbox"})
    assert via_api.status_code == 201 and via_api.json()["id"] == immutable


def test_conversations(emulator, alice):
    first = inbound(emulator, alice, subject="Order 7")
    reply = inbound(emulator, alice, subject="RE: Order 7", in_reply_to=first["internetMessageId"],
                    references=[first["internetMessageId"]])
    assert reply["conversationId"] == first["conversationId"]
    assert len(base64.b64decode(reply["conversationIndex"])) == 27
    external = inbound(emulator, alice, subject="RE: Order 7", in_reply_to=first["internetMessageId"],
                       new_conversation=True)
    assert external["conversationId"] != first["conversationId"]
    forced = inbound(emulator, alice, subject="Unrelated", conversation_of=first["id"])
    assert forced["conversationId"] == first["conversationId"]
    assert inbound(emulator, alice, subject="Order 7")["conversationId"] != first["conversationId"]


def test_patch_read_state_on_any_message_but_subject_only_on_drafts(emulator, alice):
    sent = inbound(emulator, alice)
    rv = alice.patch(f"/me/messages/{sent['id']}", json={"isRead": True})
    assert rv.status_code == 200 and rv.json()["isRead"] is True
    assert rv.json()["@odata.etag"] != sent["@odata.etag"]
    rv = alice.patch(f"/me/messages/{sent['id']}", json={"subject": "Changed"})
    assert rv.status_code == 400
    assert alice.patch(f"/me/messages/{sent['id']}", json={"conversationId": "x"}).status_code == 400


def test_delete_goes_to_deleted_items_then_for_good(emulator, alice):
    sent = inbound(emulator, alice)
    immutable = sent["@emulator.immutableId"]
    assert alice.delete(f"/me/messages/{sent['id']}").status_code == 204
    trashed = emulator.mail.get(alice.id, immutable)
    assert trashed["parentFolderId"] == alice.get("/me/mailFolders/deleteditems").json()["id"]
    assert alice.delete(f"/me/messages/{immutable}").status_code == 204
    assert alice.get(f"/me/messages/{immutable}").status_code == 404
    deletes = emulator.requests("DELETE", "/v1.0/me/messages/")
    assert [d["path"] for d in deletes[-2:]] == [f"/v1.0/me/messages/{sent['id']}", f"/v1.0/me/messages/{immutable}"]


def test_a_folder_has_its_v1_properties_and_context(alice):
    """``sizeInBytes`` is beta only (https://learn.microsoft.com/graph/api/resources/mailfolder)."""
    folder = alice.get("/me/mailFolders/inbox").json()
    assert folder["@odata.context"].endswith(f"/v1.0/$metadata#users('{alice.id}')/mailFolders/$entity")
    assert set(folder) - {"@odata.context"} == {"id", "displayName", "parentFolderId", "childFolderCount",
                                                 "unreadItemCount", "totalItemCount", "isHidden"}
    assert all("sizeInBytes" not in f for f in alice.get("/me/mailFolders").json()["value"])
