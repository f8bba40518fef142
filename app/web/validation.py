"""Request validation shared by the API and the pages: JSON bodies, strings, and send requests.

Each check raises :class:`app.web.errors.APIError` naming the field at fault (``field``), so the
compose form can point at it and the API can say it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import Any

from flask import current_app, request

from app.records.attachments import clean_content_type, clean_name
from app.web.errors import MAX_ROW_ID, APIError

EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
MAX_RECIPIENTS = 100
MAX_BODY = 1_000_000
MAX_ATTACHMENTS = 20
MAX_MESSAGE_BYTES = 35 * 1024 * 1024  # Exchange Online's default message size limit
# A send's JSON carries its files as base64 (4 bytes for every 3), beside a body of at most MAX_BODY
# characters (at most 6 bytes each when JSON escapes them) and its recipients.
MAX_SEND_REQUEST_BYTES = MAX_MESSAGE_BYTES * 4 // 3 + 6 * MAX_BODY + 1024 * 1024


def require_api_token() -> None:
    """Every ``/api`` call carries ``Authorization: Bearer {API_TOKEN}`` (compared in constant time).

    Each API blueprint runs this before its views.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = current_app.config["API_TOKEN"]
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise APIError(401, "unauthorized", "Missing or wrong bearer token in the Authorization header.")


def allow_send_sized_body() -> None:
    """Let this request's body be as large as a send with its attachments may be.

    Every other route keeps the application's ``MAX_CONTENT_LENGTH``. Called before the body is read;
    the compose form's message field may then hold ``MAX_BODY`` characters too (Flask's default for a
    form field is 500 kB).
    """
    request.max_content_length = MAX_SEND_REQUEST_BYTES
    request.max_form_memory_size = 4 * MAX_BODY  # UTF-8


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


def _invalid(field: str, message: str, code: str = "invalid_field") -> APIError:
    return APIError(422, code, f"'{field}' {message}", field=field)


def optional_string(body: dict[str, Any], field: str, *, max_length: int = 1000) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(field, "must be a string.")
    if len(value) > max_length:
        raise _invalid(field, f"must be at most {max_length} characters.")
    if not is_unicode_text(value):
        raise _invalid(field, "is not valid Unicode text.")
    return value


def required_string(body: dict[str, Any], field: str, *, max_length: int = 1000) -> str:
    value = optional_string(body, field, max_length=max_length)
    if value is None or not value.strip():
        raise _invalid(field, "is required and must be a non-empty string.", "missing_field")
    return value


def _addresses(body: dict[str, Any], field: str, *, required: bool) -> list[str]:
    value = body.get(field)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(field, "must be a list of email addresses.")
    if len(value) > MAX_RECIPIENTS:
        raise _invalid(field, f"holds at most {MAX_RECIPIENTS} addresses.")
    bad = [address for address in value
           if len(address) > 254 or not is_unicode_text(address) or not EMAIL.match(address.strip())]
    if bad:
        shown = ", ".join(address.encode("utf-8", "replace").decode() for address in bad[:5])
        raise _invalid(field, f"has invalid email address(es): {shown}.", "invalid_address")
    return [address.strip() for address in value]


def _flag(body: dict[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise _invalid(field, "must be true or false.")
    return value


def _subject(body: dict[str, Any]) -> str | None:
    """The subject, one line: a CR or LF would let a caller end the header and write others."""
    subject = optional_string(body, "subject", max_length=998)
    if subject is not None and ("\r" in subject or "\n" in subject):
        raise _invalid("subject", "must be one line (no carriage return or line feed).")
    return subject


def _attachments(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``attachments``: files as ``{"name", "content_type"?, "content_base64"}``, decoded."""
    value = body.get("attachments")
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ATTACHMENTS:
        raise _invalid("attachments", f"must be a list of at most {MAX_ATTACHMENTS} files.")
    files = []
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise _invalid("attachments", f"item {number} must be an object with name and content_base64.")
        name = required_string(item, "name", max_length=255)
        content_type = optional_string(item, "content_type", max_length=255) or "application/octet-stream"
        encoded = item.get("content_base64")
        try:
            content = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
        except (binascii.Error, ValueError):
            content = None
        if content is None:
            raise _invalid("attachments", f"item {number} ({name!r}) needs its bytes as base64 in content_base64.")
        files.append({"name": clean_name(name), "content_type": clean_content_type(content_type), "content": content})
    if sum(len(f["content"]) for f in files) > MAX_MESSAGE_BYTES:
        raise _invalid("attachments", f"are over {MAX_MESSAGE_BYTES // (1024 * 1024)} MB together, more than "
                       "Exchange Online accepts in one message by default.", "message_too_large")
    return files


def parse_send_request(body: dict[str, Any]) -> dict[str, Any]:
    """The validated send request, normalised; raises :class:`APIError` (422) naming the field."""
    connection_id = body.get("connection_id")
    if not isinstance(connection_id, int) or isinstance(connection_id, bool):
        raise _invalid("connection_id", "is required and must be an integer.", "missing_field")
    if not 1 <= connection_id <= MAX_ROW_ID:
        raise APIError(422, "unknown_connection", f"Connection {connection_id} does not exist.")
    reply = _flag(body, "reply")
    body_type = body.get("body_type", "text")
    if body_type not in ("text", "html"):
        raise _invalid("body_type", "must be \"text\" or \"html\".")
    request_ = {
        "connection_id": connection_id,
        "to": _addresses(body, "to", required=not reply),
        "cc": _addresses(body, "cc", required=False),
        "subject": _subject(body),
        "body": required_string(body, "body", max_length=MAX_BODY),
        "body_type": body_type,
        "reply": reply,
        "automated": _flag(body, "automated"),
        "attachments": _attachments(body),
    }
    if not reply and not request_["to"]:
        raise _invalid("to", "needs at least one address for a new message.", "missing_field")
    return request_
