"""The outbox: a send request's whole life, ``queued`` → ``sending`` → ``sent`` or ``failed``.

- :func:`queue_send` writes the request and its worker job in one transaction, at most once per
  idempotency key (the API and the record page's compose form both call it);
- :func:`start_sending` stores the Message-ID minted for it before anything touches the mailbox, and
  :func:`remember_draft` the draft's immutable id before it is sent (``handlers.send`` relies on
  both to never send twice);
- :func:`mark_sent` puts the sent message on the record in the same transaction;
- each request that ends emits ``send.sent`` or ``send.failed`` (:mod:`app.records.events`) with the change;
- a failure is kept on the row: :func:`note_retrying` while the worker retries, :func:`fail` when it
  cannot be sent, :func:`fail_pending` when the mailbox may no longer be used (its grant is gone, or
  the user disconnected it), :func:`give_up` when the worker ran out of attempts.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlite_utils import Database

from app.core.errors import Conflict, Forbidden, Invalid, NotFound
from app.core.queue import JobQueue
from app.core.timeutil import now_iso
from app.records import events, linking, organizations, threads

FINISHED = ("sent", "failed")


def check_connection(db: Database, connection_id: int, record_id: int,
                     sender: tuple[str, str] | None = None) -> None:
    """Raise unless ``connection_id`` names an active connection of the record's organization
    (isolation rule 3: a send never goes out from another customer's mailbox) and, when a person sends
    (``sender``: their tenant and user id), their own mailbox on this record: a person sends only as
    themselves."""
    if sender is not None and not _is_own_on_record(db, connection_id, record_id, sender):
        raise Invalid("unknown_connection", "'connection_id' must be your own mailbox on this record.",
                      field="connection_id")
    rows = list(db.query("SELECT c.status, c.tenant_id, r.organization_id FROM connections c, records r"
                         " WHERE c.id = ? AND r.id = ?", [connection_id, record_id]))
    if not rows:
        raise Invalid("unknown_connection", f"Connection {connection_id} does not exist.", field="connection_id")
    if organizations.of_tenant(db, rows[0]["tenant_id"]) != rows[0]["organization_id"]:
        raise Forbidden("connection_not_allowed", f"Connection {connection_id} belongs to another organization "
                        f"than record {record_id}.", field="connection_id")
    if rows[0]["status"] != "active":
        raise Conflict("connection_not_active",
                       f"Connection {connection_id} is {rows[0]['status']}; the user must connect Outlook again.",
                       field="connection_id")


def _is_own_on_record(db: Database, connection_id: int, record_id: int, sender: tuple[str, str]) -> bool:
    return bool(list(db.query(
        "SELECT 1 FROM connections c JOIN record_connections rc ON rc.connection_id = c.id "
        "WHERE c.id = ? AND rc.record_id = ? AND c.tenant_id = ? AND c.user_id = ?",
        [connection_id, record_id, *sender])))


def queue_send(db: Database, queue: JobQueue, record_id: int, send: dict[str, Any],
               idempotency_key: str, *, sender: tuple[str, str] | None = None) -> dict[str, Any]:
    """Queue ``send`` (a parsed request) for ``record_id``; return ``{"id", "status", "created"}``.
    ``sender`` names the person sending (the compose form); the platform's backend sends without one.

    The unique key makes a repeat return the original request (``created`` false); a key reused for
    a different request raises :class:`Conflict`. The caller wakes the workers when ``created``.
    """
    check_connection(db, send["connection_id"], record_id, sender)
    files = send.get("attachments") or []
    described = [{"name": f["name"], "content_type": f["content_type"], "size": len(f["content"]),
                  "sha256": hashlib.sha256(f["content"]).hexdigest()} for f in files]
    request_ = {key: value for key, value in send.items() if key != "attachments"}
    stored = json.dumps({**request_, "attachments": described} if files else request_, sort_keys=True)
    now = now_iso()
    with db.atomic():
        rows = list(db.query(
            """
            INSERT INTO outbox (idempotency_key, record_id, connection_id, request, automated, status,
                                created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, 'queued', ?, ?) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
            """, [idempotency_key, record_id, send["connection_id"], stored, int(send["automated"]), now, now]))
        if rows:
            for position, file in enumerate(files):
                db.execute("INSERT INTO outbox_attachments (outbox_id, position, content) VALUES (?, ?, ?)",
                           [rows[0]["id"], position, file["content"]])
            queue.enqueue("send", {"outbox_id": rows[0]["id"]}, dedupe_key=f"send|{rows[0]['id']}",
                          connection_id=send["connection_id"])
    if rows:
        return {"id": rows[0]["id"], "status": "queued", "created": True}
    existing = list(db.query("SELECT id, record_id, request, status FROM outbox WHERE idempotency_key = ?",
                             [idempotency_key]))[0]
    if existing["record_id"] != record_id or existing["request"] != stored:
        raise Conflict("idempotency_key_reused", "This Idempotency-Key was used for a different request.")
    return {"id": existing["id"], "status": existing["status"], "created": False}


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    request = json.loads(row.pop("request"))
    return {**row, "automated": bool(row["automated"]), "reply": request["reply"], "to": request["to"],
            "cc": request["cc"], "subject": request["subject"]}


def entry(db: Database, outbox_id: int) -> dict[str, Any]:
    """One send request as ``GET /api/outbox/{id}`` shows it."""
    rows = list(db.query(
        "SELECT id, record_id, connection_id, status, error, automated, internet_message_id, created_at, "
        "updated_at, sent_at, request FROM outbox WHERE id = ?", [outbox_id]))
    if not rows:
        raise NotFound("outbox_not_found", f"Send request {outbox_id} does not exist.")
    return _shown(rows[0])


def recent_sends(db: Database, record_id: int, *, limit: int = 10) -> list[dict[str, Any]]:
    """The record's newest send requests with what they asked for, newest first."""
    rows = db.query(
        """
        SELECT o.id, o.connection_id, o.status, o.error, o.automated, o.created_at, o.updated_at, o.sent_at,
               o.request, c.email AS sender
        FROM outbox o LEFT JOIN connections c ON c.id = o.connection_id
        WHERE o.record_id = ? ORDER BY o.id DESC LIMIT ?
        """, [record_id, limit])
    return [_shown(row) for row in rows]


def pending(db: Database, outbox_id: int) -> dict[str, Any] | None:
    """A send still to carry out, with its mailbox's state and address (None when finished or unknown)."""
    rows = list(db.query("SELECT o.*, c.status AS connection_status, c.status_reason, c.email FROM outbox o "
                         "JOIN connections c ON c.id = o.connection_id WHERE o.id = ?", [outbox_id]))
    if not rows or rows[0]["status"] in FINISHED:
        return None
    return {**rows[0], "request": json.loads(rows[0]["request"])}


def _update(db: Database, outbox_id: int, **fields: Any) -> None:
    assignments = ", ".join(f"{name} = ?" for name in fields)
    db.execute(f"UPDATE outbox SET {assignments}, updated_at = ? WHERE id = ?", [*fields.values(), now_iso(), outbox_id])


def start_sending(db: Database, send: dict[str, Any], message_id: str) -> bool:
    """Store the Message-ID minted for ``send`` and make it a key of the record's thread, together;
    False (nothing stored) when the request is no longer queued: its record was purged meanwhile
    (:func:`purge_record`), so it must not be sent."""
    with db.atomic():
        started = db.execute("UPDATE outbox SET status = 'sending', internet_message_id = ?, updated_at = ?"
                             " WHERE id = ? AND status = 'queued' RETURNING id",
                             [message_id, now_iso(), send["id"]]).fetchall()
        if started:
            threads.add_message_id(db, send["record_id"], message_id, generated=True)
    send["internet_message_id"] = message_id
    return bool(started)


def attachment_content(db: Database, outbox_id: int, position: int) -> bytes:
    """The bytes of the send's attachment number ``position`` (its request lists them in order)."""
    row = db.execute("SELECT content FROM outbox_attachments WHERE outbox_id = ? AND position = ?",
                     [outbox_id, position]).fetchone()
    return bytes(row[0])


def remember_draft(db: Database, outbox_id: int, draft_id: str) -> None:
    _update(db, outbox_id, draft_id=draft_id)


def mark_sent(db: Database, send: dict[str, Any], draft: dict[str, Any]) -> None:
    """Sent: the row says so, the message is on the record and ``send.sent`` is emitted, in one transaction."""
    with db.atomic():
        _update(db, send["id"], status="sent", error=None, sent_at=now_iso())
        linking.link_sent_message(db, send, draft)
        events.emit(db, [events.Event("send.sent", {
            "outbox_id": send["id"], "record_id": send["record_id"], "connection_id": send["connection_id"],
            "internet_message_id": send["internet_message_id"]})])


def note_retrying(db: Database, outbox_id: int, detail: str) -> None:
    _update(db, outbox_id, error=f"retrying: {detail}"[:500])


def fail(db: Database, outbox_id: int, reason: str) -> None:
    """The request cannot be sent: it fails with ``reason`` (once: a finished request stays as it is)."""
    _fail(db, "id = ?", [outbox_id], "?", [reason[:500]])


def fail_pending(db: Database, connection_id: int, error: str) -> None:
    """Every unsent request of a mailbox that may no longer be used (revoked, disconnected) fails with ``error``."""
    _fail(db, "connection_id = ?", [connection_id], "?", [error])


def purge_record(db: Database, record_id: int) -> int:
    """Delete the record's send requests and the files they carry, inside the purge's transaction
    (:mod:`app.records.purge`); return how many there were.

    A ``queued`` request goes with the rest: its job then finds nothing to do (:func:`pending`), and a
    worker that read it just before cannot start it (:func:`start_sending` starts only a queued
    request). One that is ``sending`` cannot be called back: its draft may be in the mailbox and on its
    way out this very moment, and its sent copy would then have no record to land on. The purge is
    refused (:class:`Conflict` ``send_in_flight``) until it is sent or failed.
    """
    db.execute("DELETE FROM outbox_attachments WHERE outbox_id IN"
               " (SELECT id FROM outbox WHERE record_id = ? AND status <> 'sending')", [record_id])
    # The status is tested on the row itself: on PostgreSQL a send that started meanwhile is seen and kept.
    removed = db.execute("DELETE FROM outbox WHERE record_id = ? AND status <> 'sending'", [record_id]).rowcount
    sending = [row["id"] for row in db.query("SELECT id FROM outbox WHERE record_id = ?", [record_id])]
    if sending:
        raise Conflict("send_in_flight", f"Record {record_id} has a message being sent (send request {sending[0]});"
                       " delete the record once that send is sent or failed.")
    return removed


def give_up(db: Database, outbox_id: int, reason: str | None) -> None:
    """The worker ran out of attempts: fail visibly, keeping the last error it noted."""
    _fail(db, "id = ?", [outbox_id], "COALESCE(error, ?)", [f"gave up: {reason}"])


def _fail(db: Database, where: str, params: list[Any], error: str, error_params: list[Any]) -> None:
    """Fail the unfinished requests ``where`` selects, with the error the SQL expression ``error``
    gives, and emit ``send.failed`` for each, in one transaction."""
    with db.atomic():
        rows = db.execute(
            f"UPDATE outbox SET status = 'failed', error = {error}, updated_at = ?"
            f" WHERE {where} AND status NOT IN ('sent', 'failed') RETURNING id, record_id, connection_id, error",
            [*error_params, now_iso(), *params]).fetchall()
        events.emit(db, [events.Event("send.failed", {"outbox_id": outbox_id, "record_id": record_id,
                                                      "connection_id": connection_id, "error": error_text})
                         for outbox_id, record_id, connection_id, error_text in sorted(rows)])
