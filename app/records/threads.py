"""Record threads: the one module that writes them, and how the API and the pages read them.

A linked message is one ``messages`` row per record (``UNIQUE (record_id, internet_message_id)``), one
``message_copies`` row per mailbox copy and record entry (keyed by connection, Graph immutable id and
entry, so an email on two records has two copy rows and a deletion marks both entries), and thread
keys: its Message-ID in ``thread_message_ids`` and, per mailbox, its ``conversationId`` in
``thread_conversations``. Uploads (:func:`store_upload`), Graph messages (:func:`link_message`) and
sends (``generated`` ids, :func:`mark_automated`) all come through here; :class:`StoredThreadKeys`
serves the keys :mod:`app.records.matching` reads.

HTML bodies are sanitized on output (:func:`entry`), not when stored. The stored body stays the
message as it came (a record keeps evidence, and a later policy, such as showing inline cid:
images, can use it), every row is covered whenever it was stored, and a fix to the sanitizer
(an nh3 upgrade) protects old mail at once instead of needing a data migration. The cost is
bounded: bodies are at most 1 MB (:data:`app.records.rfc822.MAX_BODY_BYTES`) and the sanitizer is
linear in them (:mod:`app.records.mail_html`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlite_utils import Database

from app.core.db import write_transaction
from app.core.dialects import dialect_of
from app.core.timeutil import iso, now_iso, parse_iso, utcnow
from app.records import attachments, events
from app.records.mail_html import has_remote_images, sanitized_html
from app.records.matching import CandidateMessage, KnownId
from app.records.rfc822 import Address, ParsedEmail, bounded_body, parse_email

log = logging.getLogger(__name__)


class StoredThreadKeys:
    """:class:`app.records.matching.ThreadKeys` over ``thread_message_ids`` and ``thread_conversations``,
    seeing only the records of one organization (isolation rule 2)."""

    def __init__(self, db: Database, organization_id: int) -> None:
        self.db = db
        self.organization_id = organization_id

    def known_ids(self, ids: Iterable[str]) -> list[KnownId]:
        rows = self.db.query(
            "SELECT k.message_id, k.record_id, k.generated FROM thread_message_ids k JOIN records r"
            f" ON r.id = k.record_id WHERE k.message_id IN (SELECT value FROM {dialect_of(self.db).json_values('?')})"
            " AND r.organization_id = ?",
            [json.dumps(list(dict.fromkeys(ids))), self.organization_id],
        )
        return [KnownId(row["message_id"], row["record_id"], bool(row["generated"])) for row in rows]

    def records_for_conversation(self, connection_id: int, conversation_id: str) -> set[int]:
        rows = self.db.query(
            "SELECT k.record_id FROM thread_conversations k JOIN records r ON r.id = k.record_id"
            " WHERE k.connection_id = ? AND k.conversation_id = ? AND r.organization_id = ?",
            [connection_id, conversation_id, self.organization_id],
        )
        return {row["record_id"] for row in rows}


def add_message_id(db: Database, record_id: int, message_id: str, *, generated: bool = False) -> None:
    """Make ``message_id`` a key of the record's thread (uploads, sends and links call this).

    ``generated`` marks a Message-ID the service minted for a message it sends; once set it stays.
    """
    db.execute(
        "INSERT INTO thread_message_ids (message_id, record_id, generated) VALUES (?, ?, ?)"
        " ON CONFLICT (message_id, record_id) DO UPDATE"
        " SET generated = CASE WHEN excluded.generated = 1 THEN 1 ELSE thread_message_ids.generated END",
        [message_id, record_id, int(generated)],
    )


def message_direction(graph_message: dict[str, Any], mailbox_address: str) -> str:
    """``outbound`` when the mailbox's owner sent the message, else ``inbound``."""
    sender = ((graph_message.get("from") or {}).get("emailAddress") or {}).get("address") or ""
    return "outbound" if sender.strip().lower() == mailbox_address.strip().lower() else "inbound"


class Link(NamedTuple):
    """A Graph message to put on a record's thread, and the matching rule that ties it there."""

    record_id: int
    message: dict[str, Any]
    reason: str


def link_messages(db: Database, connection_id: int, links: Sequence[Link], *, mailbox_address: str,
                  source: str = "graph", now: datetime | None = None) -> list[int]:
    """Add (or refresh) Graph messages of one mailbox in record threads; return each link's ``messages`` id.

    Idempotent: linking the same message again updates the one row (subject, body, recipients...)
    and clears any deletion mark, since the message is evidently in the mailbox. ``direction``,
    ``source`` and ``created_at`` keep their first values. ``reason`` (the match rule) is logged only.
    A message new on a record emits ``message.linked``; one whose stored fields (or deletion mark)
    change emits ``message.updated``; a repeat that changes nothing emits nothing, nor touches the row.

    One transaction writes them all, each table in one statement of many rows: a worker's batch of
    20 messages costs a handful of round trips to PostgreSQL, and one commit, instead of six of each
    per message. New messages, the usual case, take one statement (``ON CONFLICT DO NOTHING``, whose
    ``RETURNING`` names exactly the rows this transaction added, on either engine); only known ones
    take the refresh and the look-up of what it left as it was. Rows go in key order, so two batches
    sharing a key (one email in two connected mailboxes) lock it in the same order and never deadlock.
    """
    if not links:
        return []
    stamp = iso(now or utcnow())
    candidates = [(link, _linkable(link.message, connection_id)) for link in links]
    messages = {(link.record_id, c.internet_message_id): {
        **_message_fields(link.message, c), "record_id": link.record_id, "source": source, "created_at": stamp,
        "updated_at": stamp, "direction": message_direction(link.message, mailbox_address)} for link, c in candidates}
    with db.atomic():
        added = _entries(_write(db, _INSERT_MESSAGES, _MESSAGE_INSERT_COLUMNS, messages))
        known = {key: row for key, row in messages.items() if key not in added}
        refreshed = _entries(_write(db, _REFRESH_MESSAGES, _MESSAGE_INSERT_COLUMNS, known))
        unchanged = _entries(_write(db, _FIND_MESSAGES, ("record_id", "internet_message_id"),
                                    {key: row for key, row in known.items() if key not in refreshed}))
        entries = {**added, **refreshed, **unchanged}
        linked = [entries[(link.record_id, c.internet_message_id)] for link, c in candidates]
        copies = {(connection_id, c.graph_id, entry_id): {
            "connection_id": connection_id, "graph_id": c.graph_id, "message_id": entry_id,
            "conversation_id": c.conversation_id, "change_key": link.message.get("changeKey"),
            "received_at": _iso_or_none(link.message.get("receivedDateTime")), "updated_at": stamp}
            for (link, c), entry_id in zip(candidates, linked)}
        _write(db, _UPSERT_COPIES, _COPY_COLUMNS, copies)
        _write(db, _ADD_KEYS, ("message_id", "record_id"),
               {(message_id, record_id): {"message_id": message_id, "record_id": record_id}
                for record_id, message_id in messages})
        _write(db, _ADD_CONVERSATIONS, ("connection_id", "conversation_id", "record_id"),
               {(connection_id, c.conversation_id, link.record_id): {
                   "connection_id": connection_id, "conversation_id": c.conversation_id, "record_id": link.record_id}
                for link, c in candidates if c.conversation_id})
        events.emit(db, [*(_message_event("message.linked", key, entry_id, connection_id,
                                          direction=messages[key]["direction"], source=source)
                           for key, entry_id in added.items()),
                         *(_message_event("message.updated", key, entry_id, connection_id)
                           for key, entry_id in refreshed.items())])
    for (link, c), entry_id in zip(candidates, linked):
        log.info("Linked message %s (connection %s) to record %s as entry %s: %s",
                 c.graph_id, connection_id, link.record_id, entry_id, link.reason)
    return linked


def link_message(db: Database, record_id: int, connection_id: int, graph_message: dict[str, Any], *,
                 mailbox_address: str, source: str = "graph", reason: str,
                 now: datetime | None = None) -> int:
    """:func:`link_messages` of one message; return its ``messages`` id."""
    return link_messages(db, connection_id, [Link(record_id, graph_message, reason)],
                         mailbox_address=mailbox_address, source=source, now=now)[0]


def _linkable(message: dict[str, Any], connection_id: int) -> CandidateMessage:
    candidate = CandidateMessage.from_graph(message, connection_id)
    if candidate.internet_message_id is None or not candidate.graph_id:
        raise ValueError("a linked message needs its internetMessageId and its Graph id")
    return candidate


def _write(db: Database, statement: str, columns: Sequence[str],
           rows: Mapping[tuple, Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Run ``statement`` (``{columns}`` and ``{values}`` standing for its column and ``VALUES`` lists) over
    ``rows``, in key order; return what it returns (nothing is run for no rows)."""
    if not rows:
        return []
    ordered = [rows[key] for key in sorted(rows)]
    placeholders = "(" + ", ".join("?" * len(columns)) + ")"
    sql = statement.format(columns=", ".join(columns), values=", ".join([placeholders] * len(ordered)))
    return db.execute(sql, [row[column] for row in ordered for column in columns]).fetchall()


def _entries(rows: Sequence[tuple[Any, ...]]) -> dict[tuple[int, str], int]:
    """``(record_id, internet_message_id)`` → entry id, of rows ``(id, record_id, internet_message_id)``."""
    return {(record_id, internet_message_id): entry_id for entry_id, record_id, internet_message_id in rows}


def _message_event(kind: str, key: tuple[int, str], entry_id: int, connection_id: int | None,
                   **details: str) -> events.Event:
    """An event about the record entry ``entry_id`` (``key``: its record and Message-ID)."""
    return events.Event(kind, {"record_id": key[0], "entry_id": entry_id, "internet_message_id": key[1],
                               "connection_id": connection_id, **details})


def entries_of_copies(db: Database, connection_id: int, graph_ids: Sequence[str]) -> dict[str, list[int]]:
    """The thread entries each of a mailbox's messages (by Graph id) is on."""
    found: dict[str, list[int]] = {}
    if graph_ids:
        marks = ", ".join("?" * len(graph_ids))
        for row in db.query(f"SELECT graph_id, message_id FROM message_copies WHERE connection_id = ?"
                            f" AND graph_id IN ({marks}) ORDER BY message_id", [connection_id, *graph_ids]):
            found.setdefault(row["graph_id"], []).append(row["message_id"])
    return found


def mark_deleted(db: Database, connection_id: int, graph_id: str, *, now: datetime | None = None) -> bool:
    """The mailbox copy was deleted: mark it, and the thread entry once no live copy of it remains.

    Nothing is removed: the entry stays in the record's history with ``deleted_at`` set. Returns
    False when the copy is unknown (a message that was never linked).
    """
    stamp = iso(now or utcnow())
    with db.atomic():
        copies = db.execute(
            "UPDATE message_copies SET deleted_at = coalesce(deleted_at, :now), updated_at = :now"
            " WHERE connection_id = :connection_id AND graph_id = :graph_id RETURNING message_id",
            {"connection_id": connection_id, "graph_id": graph_id, "now": stamp},
        ).fetchall()
        gone = db.execute(
            "UPDATE messages SET deleted_at = :now, updated_at = :now"
            " WHERE id IN (SELECT message_id FROM message_copies WHERE connection_id = :connection_id"
            " AND graph_id = :graph_id) AND deleted_at IS NULL AND NOT EXISTS"
            " (SELECT 1 FROM message_copies c WHERE c.message_id = messages.id AND c.deleted_at IS NULL)"
            " RETURNING id, record_id, internet_message_id",
            {"connection_id": connection_id, "graph_id": graph_id, "now": stamp},
        ).fetchall()
        events.emit(db, [_message_event("message.deleted", (record_id, internet_message_id), entry_id, connection_id)
                         for entry_id, record_id, internet_message_id in sorted(gone)])
    return bool(copies)


_MESSAGE_COLUMNS = ("subject", "from_address", "from_name", "to_addresses", "cc_addresses", "sent_at",
                    "in_reply_to", "references_ids", "body_type", "body", "body_truncated", "body_preview")
_MESSAGE_INSERT_COLUMNS = ("record_id", "internet_message_id", "direction", "source", "created_at", "updated_at",
                           *_MESSAGE_COLUMNS)
_INSERT_MESSAGES = """
    INSERT INTO messages ({columns}) VALUES {values}
    ON CONFLICT (record_id, internet_message_id) DO NOTHING
    RETURNING id, record_id, internet_message_id
"""
_REFRESH_MESSAGES = f"""
    INSERT INTO messages ({{columns}}) VALUES {{values}}
    ON CONFLICT (record_id, internet_message_id) DO UPDATE SET
        {", ".join(f"{column} = excluded.{column}" for column in _MESSAGE_COLUMNS)},
        deleted_at = NULL, updated_at = excluded.updated_at
    WHERE messages.deleted_at IS NOT NULL
        OR {" OR ".join(f"messages.{column} IS DISTINCT FROM excluded.{column}" for column in _MESSAGE_COLUMNS)}
    RETURNING id, record_id, internet_message_id
"""
_FIND_MESSAGES = ("SELECT id, record_id, internet_message_id FROM messages"
                  " WHERE ({columns}) IN (VALUES {values})")

_COPY_COLUMNS = ("connection_id", "graph_id", "message_id", "conversation_id", "change_key", "received_at",
                 "updated_at")
_UPSERT_COPIES = """
    INSERT INTO message_copies ({columns}) VALUES {values}
    ON CONFLICT (connection_id, graph_id, message_id) DO UPDATE SET
        conversation_id = excluded.conversation_id, change_key = excluded.change_key,
        received_at = excluded.received_at, deleted_at = NULL, updated_at = excluded.updated_at
"""
_ADD_KEYS = "INSERT INTO thread_message_ids ({columns}) VALUES {values} ON CONFLICT DO NOTHING"
_ADD_CONVERSATIONS = "INSERT INTO thread_conversations ({columns}) VALUES {values} ON CONFLICT DO NOTHING"


def _message_fields(message: dict[str, Any], candidate: CandidateMessage) -> dict[str, Any]:
    """The ``messages`` columns of a Graph message, kept to the bounds uploads keep to (app.records.rfc822)."""
    sender = (message.get("from") or {}).get("emailAddress") or {}
    graph_body = message.get("body") or {}
    body = bounded_body(graph_body.get("content"), (graph_body.get("contentType") or "").lower() or None,
                        message.get("bodyPreview"))
    return {
        "internet_message_id": candidate.internet_message_id,
        "subject": message.get("subject"),
        "from_address": sender.get("address"),
        "from_name": sender.get("name"),
        "to_addresses": json.dumps(_recipients(message.get("toRecipients"))),
        "cc_addresses": json.dumps(_recipients(message.get("ccRecipients"))),
        "sent_at": _iso_or_none(message.get("sentDateTime") or message.get("receivedDateTime")),
        "in_reply_to": candidate.in_reply_to,
        "references_ids": json.dumps(list(candidate.references)),
        "body_type": body.type,
        "body": body.content,
        "body_truncated": int(body.truncated),
        "body_preview": body.preview,
    }


def _recipients(recipients: Any) -> list[dict[str, str | None]]:
    """Graph recipients as the stored ``[{"name", "address"}]`` list."""
    addresses = [(r or {}).get("emailAddress") or {} for r in recipients or []]
    return [{"name": a.get("name"), "address": a.get("address")} for a in addresses if a.get("address")]


def _iso_or_none(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return iso(parse_iso(text))
    except ValueError:
        return None


def entry(row: dict[str, Any], attachments_: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """One thread message in the contract's shape (plus its id, flags and body), with its attachments
    as :func:`app.records.attachments.listed` gives them."""
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
        "remote_images": bool(row["body_type"] == "html" and row["body"] and has_remote_images(row["body"])),
        "body_preview": row["body_preview"],
        "attachments": list(attachments_),
    }


def thread(db: Database, record_id: int) -> list[dict[str, Any]]:
    """The record's messages, oldest first."""
    rows = list(db.query("SELECT * FROM messages WHERE record_id = ? ORDER BY COALESCE(sent_at, created_at), id",
                         [record_id]))
    listed = attachments.listed(db, [row["id"] for row in rows])
    return [entry(row, listed[row["id"]]) for row in rows]


def stored_body(db: Database, record_id: int, entry_id: int) -> tuple[str | None, str | None] | None:
    """(body type, body as stored) of one of the record's entries; None when it has no such entry."""
    rows = list(db.query("SELECT body_type, body FROM messages WHERE id = ? AND record_id = ?", [entry_id, record_id]))
    return (rows[0]["body_type"], rows[0]["body"]) if rows else None


def _direction(db: Database, record_id: int, parsed: ParsedEmail) -> str:
    """Outbound when a mailbox connected from this record sent it, else inbound."""
    if parsed.from_ is None:
        return "inbound"
    rows = db.query("SELECT 1 FROM connections c JOIN record_connections rc ON rc.connection_id = c.id "
                    "WHERE rc.record_id = ? AND lower(c.email) = lower(?)", [record_id, parsed.from_.address])
    return "outbound" if list(rows) else "inbound"


def _addresses(items: tuple[Address, ...]) -> str:
    return json.dumps([{"name": item.name, "address": item.address} for item in items])


def store_upload(db: Database, record_id: int, raw: bytes, *,
                 max_attachment_bytes: int = attachments.DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """Attach an uploaded RFC 822 email (raises :class:`app.records.rfc822.InvalidEmail`); idempotent per Message-ID.

    Its Message-ID, In-Reply-To and References (the last 100) all become thread keys: replies to
    any of them belong to this record's conversation. Its attachments are kept with it (the bytes of
    those up to ``max_attachment_bytes``). Parsing happens before the write lock is taken; the
    transaction writes one row of at most 1 MB of body, at most 102 keys and the upload's attachments.
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
        attachments.store(db, row["id"], parsed.attachments, max_bytes=max_attachment_bytes)
    return entry(row, attachments.listed(db, [row["id"]])[row["id"]])


def purge_record(db: Database, record_id: int) -> int:
    """Delete the record's thread: its entries with their attachments, their mailbox copies and the
    thread keys (known Message-IDs, conversations), so that no later message can find its way to the
    record. Call inside the purge's transaction (:mod:`app.records.purge`); return how many entries there were.
    """
    attachments.purge_record(db, record_id)
    db.execute("DELETE FROM message_copies WHERE message_id IN (SELECT id FROM messages WHERE record_id = ?)",
               [record_id])
    entries = db.execute("DELETE FROM messages WHERE record_id = ?", [record_id]).rowcount
    db.execute("DELETE FROM thread_message_ids WHERE record_id = ?", [record_id])
    db.execute("DELETE FROM thread_conversations WHERE record_id = ?", [record_id])
    return entries


def mark_automated(db: Database, entry_id: int) -> None:
    """The entry was sent by the platform's automation, not typed by a person."""
    db.execute("UPDATE messages SET automated = 1 WHERE id = ?", [entry_id])
