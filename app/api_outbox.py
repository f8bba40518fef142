"""Sending mail as a connected user: ``POST /api/records/{id}/messages`` and ``GET /api/outbox/{id}``.

The request, its ``Idempotency-Key`` (unique) and the worker's job are written in one transaction,
so a repeated key returns the original request and is never sent twice.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import current_app, jsonify, request

from app.api import bp, get_record, is_unicode_text, json_body, optional_string, required_string
from app.errors import MAX_ROW_ID, APIError
from app.outbox import queue_send
from app.storage import get_db

EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
MAX_RECIPIENTS = 100
MAX_BODY = 1_000_000


def _addresses(body: dict[str, Any], field: str, *, required: bool) -> list[str]:
    value = body.get(field)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise APIError(422, "invalid_field", f"'{field}' must be a list of email addresses.")
    if len(value) > MAX_RECIPIENTS:
        raise APIError(422, "invalid_field", f"'{field}' holds at most {MAX_RECIPIENTS} addresses.")
    bad = [address for address in value
           if len(address) > 254 or not is_unicode_text(address) or not EMAIL.match(address.strip())]
    if bad:
        shown = ", ".join(address.encode("utf-8", "replace").decode() for address in bad[:5])
        raise APIError(422, "invalid_address", f"'{field}' has invalid email address(es): {shown}.")
    return [address.strip() for address in value]


def _flag(body: dict[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise APIError(422, "invalid_field", f"'{field}' must be true or false.")
    return value


def _subject(body: dict[str, Any]) -> str | None:
    """The subject, one line: a CR or LF would let a caller end the header and write others."""
    subject = optional_string(body, "subject", max_length=998)
    if subject is not None and ("\r" in subject or "\n" in subject):
        raise APIError(422, "invalid_field", "'subject' must be one line (no carriage return or line feed).")
    return subject


def parse_send_request(body: dict[str, Any]) -> dict[str, Any]:
    """The validated send request, normalised; raises :class:`APIError` (422) naming the field."""
    connection_id = body.get("connection_id")
    if not isinstance(connection_id, int) or isinstance(connection_id, bool):
        raise APIError(422, "missing_field", "'connection_id' is required and must be an integer.")
    if not 1 <= connection_id <= MAX_ROW_ID:
        raise APIError(422, "unknown_connection", f"Connection {connection_id} does not exist.")
    reply = _flag(body, "reply")
    body_type = body.get("body_type", "text")
    if body_type not in ("text", "html"):
        raise APIError(422, "invalid_field", "'body_type' must be \"text\" or \"html\".")
    request_ = {
        "connection_id": connection_id,
        "to": _addresses(body, "to", required=not reply),
        "cc": _addresses(body, "cc", required=False),
        "subject": _subject(body),
        "body": required_string(body, "body", max_length=MAX_BODY),
        "body_type": body_type,
        "reply": reply,
        "automated": _flag(body, "automated"),
    }
    if not reply and not request_["to"]:
        raise APIError(422, "missing_field", "'to' needs at least one address for a new message.")
    return request_


def outbox_entry(outbox_id: int) -> dict[str, Any]:
    rows = list(get_db().query(
        "SELECT id, record_id, connection_id, status, error, automated, internet_message_id, created_at, "
        "updated_at, sent_at, request FROM outbox WHERE id = ?", [outbox_id]))
    if not rows:
        raise APIError(404, "outbox_not_found", f"Send request {outbox_id} does not exist.")
    row = rows[0]
    stored = json.loads(row.pop("request"))
    return {**row, "automated": bool(row["automated"]), "reply": stored["reply"], "to": stored["to"],
            "cc": stored["cc"], "subject": stored["subject"]}


@bp.post("/records/<id:record_id>/messages")
def send_message(record_id: int):
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key or len(key) > 200:
        raise APIError(400, "missing_idempotency_key", "Send requests need an Idempotency-Key header (1-200 chars).")
    get_record(record_id)
    send = parse_send_request(json_body())
    queued = queue_send(get_db(), current_app.extensions["queue"], record_id, send, key)
    if queued["created"]:
        current_app.extensions["wake_workers"]()
    return jsonify({"id": queued["id"], "status": queued["status"]}), 202


@bp.get("/outbox/<id:outbox_id>")
def show_outbox(outbox_id: int):
    return jsonify(outbox_entry(outbox_id))
