"""Queueing a send request: one outbox row and its ``send`` job, at most once per idempotency key.

Shared by the API (``POST /api/records/{id}/messages``) and the record page's compose form. The
request is validated by :func:`app.api_outbox.parse_send_request` before it gets here.
"""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from app.errors import APIError
from app.timeutil import now_iso


def check_connection(db: Database, connection_id: int) -> None:
    """Raise :class:`APIError` unless ``connection_id`` names an active connection."""
    rows = list(db.query("SELECT status FROM connections WHERE id = ?", [connection_id]))
    if not rows:
        raise APIError(422, "unknown_connection", f"Connection {connection_id} does not exist.")
    if rows[0]["status"] != "active":
        raise APIError(409, "connection_not_active",
                       f"Connection {connection_id} is {rows[0]['status']}; the user must connect Outlook again.")


def queue_send(db: Database, queue: Any, record_id: int, send: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    """Queue ``send`` (a parsed request) for ``record_id``; return ``{"id", "status", "created"}``.

    The outbox row and the worker's job are written in one transaction; the unique key makes a
    repeat return the original request (``created`` false). A key reused for a different request
    raises :class:`APIError` 409. The caller wakes the workers when ``created``.
    """
    check_connection(db, send["connection_id"])
    stored = json.dumps(send, sort_keys=True)
    now = now_iso()
    with db.atomic():
        rows = list(db.query(
            """
            INSERT INTO outbox (idempotency_key, record_id, connection_id, request, automated, status,
                                created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, 'queued', ?, ?) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
            """, [idempotency_key, record_id, send["connection_id"], stored, int(send["automated"]), now, now]))
        if rows:
            queue.enqueue("send", {"outbox_id": rows[0]["id"]}, dedupe_key=f"send|{rows[0]['id']}",
                          connection_id=send["connection_id"])
    if rows:
        return {"id": rows[0]["id"], "status": "queued", "created": True}
    existing = list(db.query("SELECT id, record_id, request, status FROM outbox WHERE idempotency_key = ?",
                             [idempotency_key]))[0]
    if existing["record_id"] != record_id or existing["request"] != stored:
        raise APIError(409, "idempotency_key_reused", "This Idempotency-Key was used for a different request.")
    return {"id": existing["id"], "status": existing["status"], "created": False}


def recent_sends(db: Database, record_id: int, *, limit: int = 10) -> list[dict[str, Any]]:
    """The record's newest send requests with what they asked for, newest first."""
    rows = db.query(
        """
        SELECT o.id, o.connection_id, o.status, o.error, o.automated, o.created_at, o.updated_at, o.sent_at,
               o.request, c.email AS sender
        FROM outbox o LEFT JOIN connections c ON c.id = o.connection_id
        WHERE o.record_id = ? ORDER BY o.id DESC LIMIT ?
        """, [record_id, limit])
    sends = []
    for row in rows:
        request = json.loads(row.pop("request"))
        sends.append({**row, "automated": bool(row["automated"]), "reply": request["reply"], "to": request["to"],
                      "cc": request["cc"], "subject": request["subject"]})
    return sends
