"""The records API under ``/api``: bearer-token protected JSON endpoints."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from app.errors import APIError
from app.rfc822 import InvalidEmail
from app.storage import get_db
from app.threads import store_upload, thread
from app.timeutil import now_iso

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_TITLE_LENGTH = 500


@bp.before_request
def require_api_token() -> None:
    """Every ``/api`` call carries ``Authorization: Bearer {API_TOKEN}`` (compared in constant time)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = current_app.config["API_TOKEN"]
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise APIError(401, "unauthorized", "Missing or wrong bearer token in the Authorization header.")


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 4xx naming what is wrong with it."""
    if not request.is_json:
        raise APIError(415, "unsupported_media_type", "Send a JSON body with Content-Type: application/json.")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # absurdly deep nesting: silent=True only swallows ValueError
        body = None
    if not isinstance(body, dict):
        raise APIError(400, "invalid_json", "The body must be a JSON object.")
    return body


def is_unicode_text(value: str) -> bool:
    """False for strings with a lone surrogate (JSON can carry one; SQLite and pages cannot)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def optional_string(body: dict[str, Any], field: str, *, max_length: int = 1000) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise APIError(422, "invalid_field", f"'{field}' must be a string.")
    if len(value) > max_length:
        raise APIError(422, "invalid_field", f"'{field}' must be at most {max_length} characters.")
    if not is_unicode_text(value):
        raise APIError(422, "invalid_field", f"'{field}' is not valid Unicode text.")
    return value


def required_string(body: dict[str, Any], field: str, *, max_length: int = 1000) -> str:
    value = optional_string(body, field, max_length=max_length)
    if value is None or not value.strip():
        raise APIError(422, "missing_field", f"'{field}' is required and must be a non-empty string.")
    return value


def get_record(record_id: int) -> dict[str, Any]:
    """The record with ``record_id``, or a 404."""
    rows = list(get_db().query("SELECT id, title, external_id, created_at FROM records WHERE id = ?", [record_id]))
    if not rows:
        raise APIError(404, "record_not_found", f"Record {record_id} does not exist.")
    return rows[0]


@bp.post("/records")
def create_record():
    body = json_body()
    title = required_string(body, "title", max_length=MAX_TITLE_LENGTH)
    external_id = optional_string(body, "external_id", max_length=200)
    db = get_db()
    cursor = db.execute(
        "INSERT INTO records (title, external_id, created_at) VALUES (?, ?, ?)",
        [title.strip(), external_id, now_iso()],
    )
    return jsonify(get_record(cursor.lastrowid)), 201


@bp.get("/records/<id:record_id>")
def show_record(record_id: int):
    return jsonify(get_record(record_id))


@bp.post("/records/<id:record_id>/emails")
def upload_email(record_id: int):
    """Attach an uploaded email (raw RFC 822, ``Content-Type: message/rfc822``) to the record."""
    get_record(record_id)
    if request.mimetype != "message/rfc822":
        raise APIError(415, "unsupported_media_type", "Upload the raw email with Content-Type: message/rfc822.")
    try:
        message = store_upload(get_db(), record_id, request.get_data())
    except InvalidEmail as e:
        raise APIError(422, "invalid_email", e.reason) from None
    return jsonify(message), 201


@bp.get("/records/<id:record_id>/thread")
def show_thread(record_id: int):
    get_record(record_id)
    return jsonify({"record_id": record_id, "messages": thread(get_db(), record_id)})
