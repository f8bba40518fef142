"""A record's thread as the API and the pages show it, and attaching uploaded emails to it.

HTML bodies are sanitized on output (:func:`entry`), not when stored. The stored body stays the
message as it came (a record keeps evidence, and a later policy, such as showing inline cid:
images, can use it), every row is covered whenever it was stored, and a fix to the sanitizer
(an nh3 upgrade) protects old mail at once instead of needing a data migration. The cost is
bounded: bodies are at most 1 MB (:data:`app.rfc822.MAX_BODY_BYTES`) and the sanitizer is linear
in them (:mod:`app.mail_html`), a few milliseconds per 100 KB of ordinary mail.
"""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from app.mail_html import sanitized_html
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
        "body": sanitized_html(row["body"]) if row["body_type"] == "html" and row["body"] else row["body"],
        "body_truncated": bool(row["body_truncated"]),
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

    Its Message-ID, In-Reply-To and References (the last 100) all become thread keys: replies to
    any of them belong to this record's conversation. Parsing happens before the write lock is
    taken; the transaction writes one row of at most 1 MB of body and at most 102 keys.
    """
    parsed = parse_email(raw)
    now = now_iso()
    with write_transaction(db):
        rows = db.query(
            """
            INSERT INTO messages (record_id, internet_message_id, subject, from_address, from_name, to_addresses,
                                  cc_addresses, sent_at, direction, source, in_reply_to, references_ids, body_type,
                                  body, body_truncated, body_preview, created_at, updated_at)
            VALUES (:record, :mid, :subject, :from_address, :from_name, :to, :cc, :sent_at, :direction, 'upload',
                    :in_reply_to, :references, :body_type, :body, :truncated, :preview, :now, :now)
            ON CONFLICT (record_id, internet_message_id) DO UPDATE SET updated_at = excluded.updated_at
            RETURNING *
            """,
            {"record": record_id, "mid": parsed.message_id, "subject": parsed.subject,
             "from_address": parsed.from_.address if parsed.from_ else None,
             "from_name": parsed.from_.name if parsed.from_ else None, "to": _addresses(parsed.to),
             "cc": _addresses(parsed.cc), "sent_at": parsed.sent_at, "direction": _direction(db, record_id, parsed),
             "in_reply_to": parsed.in_reply_to, "references": json.dumps(list(parsed.references)),
             "body_type": parsed.body_type, "body": parsed.body, "truncated": int(parsed.body_truncated),
             "preview": parsed.body_preview, "now": now})
        row = list(rows)[0]
        for message_id in {parsed.message_id, *parsed.references, *filter(None, [parsed.in_reply_to])}:
            add_message_id(db, record_id, message_id)
    return entry(row)
