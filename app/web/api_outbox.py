"""Sending mail as a connected user: ``POST /api/records/{id}/messages`` and ``GET /api/outbox/{id}``.

The request, its ``Idempotency-Key`` (unique) and the worker's job are written in one transaction
(:func:`app.records.outbox.queue_send`), so a repeated key returns the original request and is
never sent twice.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.records import outbox
from app.records.records import get_record
from app.web.context import current_services, get_db
from app.web.errors import APIError
from app.web.openapi import documented
from app.web.validation import allow_send_sized_body, json_body, parse_send_request, require_api_token

IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": True,
                   "description": "Repeating a key returns the first request's answer; nothing is sent twice.",
                   "schema": {"type": "string", "minLength": 1, "maxLength": 200}}

bp = Blueprint("api_outbox", __name__, url_prefix="/api")
bp.before_request(require_api_token)


@bp.post("/records/<id:record_id>/messages")
@documented("Send mail from the record as a connected person; carried out at most once per key.", takes="SendRequest",
            answers={202: "SendAccepted"}, errors={403, 409}, headers=[IDEMPOTENCY_KEY])
def send_message(record_id: int):
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key or len(key) > 200:
        raise APIError(400, "missing_idempotency_key", "Send requests need an Idempotency-Key header (1-200 chars).")
    get_record(get_db(), record_id)
    allow_send_sized_body()
    send = parse_send_request(json_body())
    services = current_services()
    queued = outbox.queue_send(get_db(), services.queue, record_id, send, key)
    if queued["created"]:
        services.on_enqueue()
    return jsonify({"id": queued["id"], "status": queued["status"]}), 202


@bp.get("/outbox/<id:outbox_id>")
@documented("A send request's status and error.", answers={200: "Send"})
def show_outbox(outbox_id: int):
    return jsonify(outbox.entry(get_db(), outbox_id))
