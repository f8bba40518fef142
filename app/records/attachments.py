"""The attachments of a record's thread entries: what each one is, and the bytes of the files kept.

A file attachment's bytes are kept when it is at most ``ATTACHMENT_MAX_BYTES`` (25 MB by
default); a larger one, an attached Outlook item (``itemAttachment``) and a link to a cloud file
(``referenceAttachment``) are listed with what is known of them and the reason their bytes are not
on the record (:data:`SKIPPED`). Graph documents the three kinds at
https://learn.microsoft.com/graph/api/resources/attachment.

The bytes live in the database by default (one thing to back up, on either engine) behind
:class:`ContentStore`; listing a thread never reads them. This module is the one that writes
``attachments`` and ``attachment_content``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlite_utils import Database

from app.core.config import SETTINGS_BY_NAME
from app.core.dialects import dialect_of
from app.core.timeutil import now_iso

DEFAULT_MAX_BYTES: int = SETTINGS_BY_NAME["ATTACHMENT_MAX_BYTES"].default
#: Why an attachment's bytes are not on the record, as the record page says it.
SKIPPED = {
    "too_large": "larger than this service keeps",
    "item": "an attached Outlook item: open it in Outlook",
    "reference": "a link to a cloud file",
    "unavailable": "no longer in the mailbox when it was fetched",
}
MAX_NAME_LENGTH = 255
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]+")
_MIME_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


@dataclass(frozen=True)
class NewAttachment:
    """An attachment about to be stored: ``source_key`` tells it apart from the message's others
    (Graph's attachment id, or an upload's part number) so storing it again changes nothing."""

    source_key: str
    name: str
    content_type: str
    size: int
    kind: str = "file"
    inline: bool = False
    content_id: str | None = None
    source_url: str | None = None
    content: bytes | None = None
    skipped_reason: str | None = None


class ContentStore(Protocol):
    """Where the bytes of kept file attachments live."""

    def save(self, db: Database, attachment_id: int, content: bytes) -> None: ...

    def load(self, db: Database, attachment_id: int) -> bytes | None: ...

    def delete(self, db: Database, attachment_ids: Sequence[int]) -> None: ...


class DatabaseContent:
    """The bytes in the ``attachment_content`` table, in the transaction of the attachment's row."""

    def save(self, db: Database, attachment_id: int, content: bytes) -> None:
        db.execute("INSERT INTO attachment_content (attachment_id, content) VALUES (?, ?)"
                   " ON CONFLICT (attachment_id) DO NOTHING", [attachment_id, content])

    def load(self, db: Database, attachment_id: int) -> bytes | None:
        rows = list(db.query("SELECT content FROM attachment_content WHERE attachment_id = ?", [attachment_id]))
        return bytes(rows[0]["content"]) if rows else None

    def delete(self, db: Database, attachment_ids: Sequence[int]) -> None:
        db.execute(f"DELETE FROM attachment_content WHERE attachment_id IN"
                   f" (SELECT CAST(value AS INTEGER) FROM {dialect_of(db).json_values('?')})",
                   [json.dumps(list(attachment_ids))])


CONTENT: ContentStore = DatabaseContent()


def clean_name(name: Any, fallback: str = "attachment") -> str:
    """A file name safe to show and to offer for download: no path, no control characters, bounded."""
    text = _UNSAFE_NAME.sub(" ", name).strip(" .") if isinstance(name, str) else ""
    return (text or fallback)[:MAX_NAME_LENGTH]


def clean_content_type(value: Any) -> str:
    """``value`` when it is a plain ``type/subtype``, else ``application/octet-stream``."""
    text = value.split(";", 1)[0].strip().lower() if isinstance(value, str) else ""
    return text if _MIME_TYPE.fullmatch(text) else "application/octet-stream"


def _within(attachment: NewAttachment, max_bytes: int) -> NewAttachment:
    """``attachment`` without its bytes, and the reason, when they are over ``max_bytes``."""
    if attachment.content is not None and len(attachment.content) > max_bytes:
        return NewAttachment(**{**attachment.__dict__, "content": None, "skipped_reason": "too_large"})
    return attachment


def store(db: Database, message_id: int, attachments: Iterable[NewAttachment], *, max_bytes: int) -> None:
    """Store the attachments of thread entry ``message_id``, the bytes of files up to ``max_bytes``;
    one stored before (same ``source_key``) keeps its row, and gains its bytes if it had none. Call
    inside a transaction."""
    now = now_iso()
    for attachment in (_within(a, max_bytes) for a in attachments):
        rows = list(db.query(
            """
            INSERT INTO attachments (message_id, source_key, kind, name, content_type, size, inline, content_id,
                                     source_url, skipped_reason, created_at)
            VALUES (:message, :key, :kind, :name, :type, :size, :inline, :cid, :url, :skipped, :now)
            ON CONFLICT (message_id, source_key) DO UPDATE SET
                skipped_reason = CASE WHEN :has_content = 1 THEN NULL ELSE attachments.skipped_reason END
            RETURNING id
            """,
            {"message": message_id, "key": attachment.source_key, "kind": attachment.kind,
             "name": clean_name(attachment.name), "type": clean_content_type(attachment.content_type),
             "size": attachment.size, "inline": int(attachment.inline), "cid": attachment.content_id,
             "url": attachment.source_url, "skipped": attachment.skipped_reason,
             "has_content": attachment.content is not None, "now": now}))
        if attachment.content is not None:
            CONTENT.save(db, rows[0]["id"], attachment.content)


def missing_content(db: Database, message_id: int, source_keys: Sequence[str]) -> set[str]:
    """Which of ``source_keys`` thread entry ``message_id`` has no bytes for yet (new ones included)."""
    kept = {row["source_key"] for row in db.query(
        "SELECT a.source_key FROM attachments a JOIN attachment_content c ON c.attachment_id = a.id"
        " WHERE a.message_id = ?", [message_id])}
    return set(source_keys) - kept


def listed(db: Database, message_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """The attachments of each thread entry, as the thread API lists them, in the order stored."""
    found: dict[int, list[dict[str, Any]]] = {message_id: [] for message_id in message_ids}
    if not message_ids:
        return found
    marks = ", ".join("?" * len(message_ids))
    rows = db.query(
        f"SELECT a.*, c.attachment_id IS NOT NULL AS kept FROM attachments a"
        f" LEFT JOIN attachment_content c ON c.attachment_id = a.id"
        f" WHERE a.message_id IN ({marks}) ORDER BY a.id", list(message_ids))
    for row in rows:
        found[row["message_id"]].append(_listing(row))
    return found


def of_record(db: Database, record_id: int) -> list[dict[str, Any]]:
    """Every attachment of the record's thread, oldest entry first, each with the entry it is on: the
    record's view of what was kept and what was not, and why."""
    rows = db.query(
        "SELECT a.*, c.attachment_id IS NOT NULL AS kept, m.internet_message_id FROM attachments a"
        " JOIN messages m ON m.id = a.message_id LEFT JOIN attachment_content c ON c.attachment_id = a.id"
        " WHERE m.record_id = ? ORDER BY COALESCE(m.sent_at, m.created_at), m.id, a.id", [record_id])
    return [{**_listing(row), "message_id": row["message_id"], "internet_message_id": row["internet_message_id"]}
            for row in rows]


def _listing(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "content_type": row["content_type"], "size": row["size"],
            "inline": bool(row["inline"]), "kind": row["kind"], "content_id": row["content_id"],
            "source_url": row["source_url"], "kept": bool(row["kept"]),
            "skipped_reason": None if row["kept"] else row["skipped_reason"]}


def purge_record(db: Database, record_id: int) -> int:
    """Delete the attachments of the record's thread entries and their kept bytes (a record's purge,
    :mod:`app.records.purge`, calls this inside its transaction); return how many there were."""
    ids = [row["id"] for row in db.query("SELECT a.id FROM attachments a JOIN messages m ON m.id = a.message_id"
                                         " WHERE m.record_id = ?", [record_id])]
    if ids:
        CONTENT.delete(db, ids)
        db.execute("DELETE FROM attachments WHERE message_id IN (SELECT id FROM messages WHERE record_id = ?)",
                   [record_id])
    return len(ids)


def download(db: Database, record_id: int, attachment_id: int) -> tuple[dict[str, Any], bytes] | None:
    """An attachment of one of ``record_id``'s entries and its bytes; None when the record has no
    such attachment or its bytes are not kept."""
    rows = list(db.query(
        "SELECT a.*, 1 AS kept FROM attachments a JOIN messages m ON m.id = a.message_id"
        " WHERE a.id = ? AND m.record_id = ?", [attachment_id, record_id]))
    content = CONTENT.load(db, attachment_id) if rows else None
    return None if content is None else (_listing(rows[0]), content)
