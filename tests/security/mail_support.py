"""What the mail-content security tests share: raw emails, uploads, and Graph messages linked as workers do."""

from __future__ import annotations

import pytest

from app.records.threads import link_message
from tests.tables import table


def email(*headers: bytes, body: bytes = b"\r\nhello\r\n") -> bytes:
    return b"Message-ID: <hostile@sender.example>\r\n" + b"\r\n".join(headers) + b"\r\n" + body


def upload(api, record_id: int, raw: bytes):
    return api.post(f"/api/records/{record_id}/emails", data=raw, headers={"Content-Type": "message/rfc822"})


def graph_message(**overrides) -> dict:
    return {"id": "AAMk-hostile", "internetMessageId": "<reply@vendor.example>", "conversationId": "CONV-1",
            "isDraft": False, "subject": "RE: order", "from": {"emailAddress": {"address": "vera@vendor.example"}},
            "body": {"contentType": "html", "content": "<p>ok</p>"}, "bodyPreview": "ok",
            "internetMessageHeaders": [], **overrides}


@pytest.fixture
def linked(api, db):
    """Link a Graph message to a fresh record (as the workers do) and return its stored row."""
    table(db, "tenants").insert({"id": "t1", "created_at": "2024-01-01", "updated_at": "2024-01-01"}, ignore=True)
    table(db, "connections").insert({"id": 1, "tenant_id": "t1", "user_id": "u1", "email": "dana@contoso.example",
                              "created_at": "2024-01-01", "updated_at": "2024-01-01"}, ignore=True)

    def link(message: dict) -> tuple[dict, dict]:
        record = api.create_record()
        row_id = link_message(db, record["id"], 1, message, mailbox_address="dana@contoso.example",
                              reason="references")
        return record, table(db, "messages").get(row_id)
    return link
