"""A record's thread as the API and the pages show it, and attaching uploaded emails to it."""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from app.rfc822 import Address, ParsedEmail, parse_email
from app.storage import write_transaction
from app.timeutil import now_iso
from handlers.thread_store import add_message_id


def entry(row: dict[str, Any]) -> dict[str, Any]:
    """One thread message in the contract's shape (plus its id, flags and body)."""
    return {
        "id": row["id"],
        "internet_message_id": row["internet_message_id"],
        "subject": row["subject"],
        "from": {"name": row["from_name"], "address": row["from_address"]} if row["from_address"] else None,
        "to": json.loads(row["to_addresses"]),
        "cc": json.loads(row["cc_addresses"]),
        "sent_at": row["sent_at"],
        "direction": row["direction"],
        "source": row["source"],
        "automated": bool(row["automated"]),
        "deleted": row["deleted_at"] is not None,
        "in_reply_to": row["in_reply_to"],
        "references": json.loads(row["references_ids"]),
        "body_type": row["body_type"],
        "body": row["body"],
        "body_preview": row["body_preview"],
    }


def thread(db: Database, record_id: int) -> list[dict[str, Any]]:
    """The record's messages, oldest first."""
    rows = db.query("SELECT * FROM messages WHERE record_id = ? ORDER BY COALESCE(sent_at, created_at), id",
                    [record_id])
    return [entry(row) for row in rows]


def _direction(db: Database, record_id: int, parsed: ParsedEmail) -> str:
    """Outbound when a mailbox connected from this record sent it, else inbound."""
    if parsed.from_ is None:
        return "inbound"
    rows = db.query("SELECT 1 FROM connections c JOIN record_connections rc ON rc.connection_id = c.id "
                    "WHERE rc.record_id = ? AND lower(c.email) = lower(?)", [record_id, parsed.from_.address])
    return "outbound" if list(rows) else "inbound"


def _addresses(items: tuple[Address, ...]) -> str:
    return json.dumps([{"name": item.name, "address": item.address} for item in items])


def store_upload(db: Database, record_id: int, raw: bytes) -> dict[str, Any]:
    """Attach an uploaded RFC 822 email (raises :class:`app.rfc822.InvalidEmail`); idempotent per Message-ID.

    Its Message-ID, In-Reply-To and References all become thread keys: replies to any of them
    belong to this record's conversation.
    """
    parsed = parse_email(raw)
    now = now_iso()
    with write_transaction(db):
        rows = db.query(
            """
            INSERT INTO messages (record_id, internet_message_id, subject, from_address, from_name, to_addresses,
                                  cc_addresses, sent_at, direction, source, in_reply_to, references_ids, body_type,
                                  body, body_preview, created_at, updated_at)
            VALUES (:record, :mid, :subject, :from_address, :from_name, :to, :cc, :sent_at, :direction, 'upload',
                    :in_reply_to, :references, :body_type, :body, :preview, :now, :now)
            ON CONFLICT (record_id, internet_message_id) DO UPDATE SET updated_at = excluded.updated_at
            RETURNING *
            """,
            {"record": record_id, "mid": parsed.message_id, "subject": parsed.subject,
             "from_address": parsed.from_.address if parsed.from_ else None,
             "from_name": parsed.from_.name if parsed.from_ else None, "to": _addresses(parsed.to),
             "cc": _addresses(parsed.cc), "sent_at": parsed.sent_at, "direction": _direction(db, record_id, parsed),
             "in_reply_to": parsed.in_reply_to, "references": json.dumps(list(parsed.references)),
             "body_type": parsed.body_type, "body": parsed.body, "preview": parsed.body_preview, "now": now})
        row = list(rows)[0]
        for message_id in {parsed.message_id, *parsed.references, *filter(None, [parsed.in_reply_to])}:
            add_message_id(db, record_id, message_id)
    return entry(row)
