"""``/api/records``: create a record, attach uploaded emails, read its thread, delete it with its mail."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from app.records import attachments
from app.records.organizations import DEFAULT_ID
from app.records.purge import purge_record
from app.records.records import create_record, get_record
from app.records.rfc822 import InvalidEmail
from app.records.threads import store_upload, thread
from app.web.attachments import attachment_response
from app.web.context import get_db
from app.web.errors import MAX_ROW_ID, APIError
from app.web.openapi import documented
from app.web.validation import json_body, optional_string, require_api_token, required_string

bp = Blueprint("api_records", __name__, url_prefix="/api")
bp.before_request(require_api_token)

MAX_TITLE_LENGTH = 500


@bp.post("/records")
@documented("Create a record.", takes="NewRecord", answers={201: "Record"}, errors={404})
def create():
    body = json_body()
    title = required_string(body, "title", max_length=MAX_TITLE_LENGTH)
    external_id = optional_string(body, "external_id", max_length=200)
    organization_id = body.get("organization_id", DEFAULT_ID)
    if not isinstance(organization_id, int) or isinstance(organization_id, bool) or not 1 <= organization_id <= MAX_ROW_ID:
        raise APIError(422, "invalid_field", "'organization_id' must be the id of an organization.",
                       field="organization_id")
    return jsonify(create_record(get_db(), title.strip(), external_id, organization_id=organization_id)), 201


@bp.get("/records/<id:record_id>")
@documented("A record.", answers={200: "Record"})
def show(record_id: int):
    return jsonify(get_record(get_db(), record_id))


@bp.delete("/records/<id:record_id>")
@documented("Delete the record with its mail, attachments, thread keys and sends; its connections stay.",
            answers={204: None}, errors={409})
def delete(record_id: int):
    """Delete the record and its mail: thread entries, mailbox copies, thread keys, attachments and their
    bytes, send requests and their files (:mod:`app.records.purge`); its connections stay. 204; 404 for
    an unknown record (a repeated DELETE too); 409 ``send_in_flight`` while one of its sends is being
    carried out (it cannot be called back): try again once ``GET /api/outbox/{id}`` says sent or failed."""
    purge_record(get_db(), record_id)
    return "", 204


@bp.post("/records/<id:record_id>/emails")
@documented("Attach an uploaded email (raw RFC 822) to the record.", answers={201: "ThreadEntry"},
            body={"message/rfc822": {"type": "string", "contentMediaType": "message/rfc822"}})
def upload_email(record_id: int):
    """Attach an uploaded email (raw RFC 822, ``Content-Type: message/rfc822``) to the record."""
    get_record(get_db(), record_id)
    if request.mimetype != "message/rfc822":
        raise APIError(415, "unsupported_media_type", "Upload the raw email with Content-Type: message/rfc822.")
    try:
        message = store_upload(get_db(), record_id, request.get_data(),
                               max_attachment_bytes=current_app.config["ATTACHMENT_MAX_BYTES"])
    except InvalidEmail as e:
        raise APIError(422, "invalid_email", e.reason) from None
    return jsonify(message), 201


@bp.get("/records/<id:record_id>/attachments")
@documented("The attachments of the record's thread, kept or not.", answers={200: "RecordAttachments"})
def list_attachments(record_id: int):
    """Every attachment of the record's thread, and how many of them are not kept (and why, each)."""
    get_record(get_db(), record_id)
    found = attachments.of_record(get_db(), record_id)
    return jsonify({"record_id": record_id, "attachments": found,
                    "not_kept": sum(1 for attachment in found if not attachment["kept"])})


@bp.get("/records/<id:record_id>/attachments/<id:attachment_id>")
@documented("An attachment's bytes, as a download in its own content type.",
            answers={200: ("*/*", {"type": "string", "contentMediaType": "application/octet-stream"})})
def download_attachment(record_id: int, attachment_id: int):
    """The bytes of one of the record's attachments, as a download."""
    get_record(get_db(), record_id)
    return attachment_response(get_db(), record_id, attachment_id)


@bp.get("/records/<id:record_id>/thread")
@documented("The record's conversation, oldest first.", answers={200: "Thread"})
def show_thread(record_id: int):
    get_record(get_db(), record_id)
    return jsonify({"record_id": record_id, "messages": thread(get_db(), record_id)})
