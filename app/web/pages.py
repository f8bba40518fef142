"""Server-rendered pages: a record's conversation, mailbox state and compose form, and consent outcomes.

The compose form works without JavaScript: it posts to ``/records/<id>/compose``, which checks the
session's CSRF token, validates with the API's own :func:`parse_send_request`, queues the send with
the idempotency key minted when the form was rendered (so a double submit sends once), and
redirects (303) back to the record with a status message.
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from flask import Blueprint, Response, abort, flash, jsonify, redirect, render_template, request, url_for
from sqlite_utils import Database
from werkzeug.datastructures import FileStorage

from app.core.errors import DomainError, Forbidden, NotFound
from app.core.timeutil import parse_iso
from app.records import attachments
from app.records.consent import AWAITING_APPROVAL, ConsentProblem
from app.records.live import record_version
from app.records.mail_html import split_quoted_text
from app.records.outbox import queue_send, recent_sends
from app.records.records import record_for_tenant
from app.records.threads import stored_body, thread
from app.web.attachments import attachment_response
from app.web.context import current_services, get_db
from app.web.csrf import csrf_token, csrf_valid
from app.web.errors import APIError, http_status
from app.web.message_body import body_document
from app.web.people import Person, current_person, person_required, sign_in_redirect
from app.web.problems import render_problem
from app.web.validation import allow_send_sized_body, parse_send_request
from subscriptions.manager import disconnect

bp = Blueprint("pages", __name__)

FORM_KEY_PREFIX = "page:"  # keeps the form's idempotency keys apart from API callers' keys
MAX_FORM_KEY = 100
FIELD_LABELS = {"connection_id": "From", "to": "To", "cc": "Cc", "subject": "Subject", "body": "Message",
                "attachments": "Attachments"}


@bp.app_template_filter("when")
def format_when(value: str | None) -> str:
    """Stored ISO timestamps as people read them: ``3 Nov 2026, 09:00 UTC``."""
    if not value:
        return ""
    try:
        moment = parse_iso(value)
    except ValueError:
        return value
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"


@bp.app_template_filter("filesize")
def format_size(size: int) -> str:
    """A byte count as people read it: ``812 bytes``, ``14 KB``, ``3.2 MB``."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size // 1024} KB"
    return f"{size / (1024 * 1024):.1f} MB"


@bp.app_template_filter("split_quoted")
def split_quoted(text: str | None) -> tuple[str, str]:
    """A plain-text body as (what the sender wrote, the quoted history), for folding the history."""
    return split_quoted_text(text or "")


# Why a mailbox needs reconnecting, in plain words, by the error its last token refresh met.
RECONNECT_REASONS = (
    (("AADSTS50173", "AADSTS70000", "AADSTS70008", "AADSTS700082", "invalid_grant"),
     "Microsoft no longer accepts its sign-in: access was removed in Azure, the password changed, or the "
     "sign-in expired."),
    (("interaction_required", "consent_required", "AADSTS50076", "AADSTS50079", "AADSTS53003"),
     "Microsoft wants its owner to sign in again (for example for multi-factor sign-in or a new policy)."),
    (("not_connected", "no_cached_account", "no_refresh_token"),
     "The service no longer holds a working sign-in for it."),
)
RECONNECT_DEFAULT = "Microsoft no longer accepts its sign-in."


def reconnect_reason(status_reason: str | None) -> str:
    """Why a mailbox must be reconnected, for people; the raw code stays in a detail line."""
    text = status_reason or ""
    return next((words for codes, words in RECONNECT_REASONS if any(code in text for code in codes)),
                RECONNECT_DEFAULT)


def mailbox_state(db: Database, record_id: int, person: Person) -> dict[str, Any]:
    """What the record page says about Outlook, for ``person``: every mailbox connected from the record
    with its state; ``own``, the person's own working mailboxes (the only ones they may send from);
    ``own_broken``, whether one of theirs needs reconnecting; and overall connected, reconnect required,
    awaiting approval or not connected."""
    mailboxes = [{**c, "reason": reconnect_reason(c["status_reason"])} for c in db.query(
        """
        SELECT c.id, c.tenant_id, c.user_id, c.email, c.display_name, c.status, c.status_reason, c.updated_at
        FROM connections c
        JOIN record_connections rc ON rc.connection_id = c.id WHERE rc.record_id = ? ORDER BY c.updated_at DESC
        """, [record_id])]
    mine = [c for c in mailboxes if person.owns(c)]
    shown = {"mailboxes": mailboxes, "own": [c for c in mine if c["status"] == "active"],
             "own_broken": any(c["status"] == "reconnect_required" for c in mine)}
    if any(c["status"] == "active" for c in mailboxes):
        return {**shown, "state": "connected"}
    if any(c["status"] == "reconnect_required" for c in mailboxes):
        return {**shown, "state": "reconnect_required"}
    last_seen = max((c["updated_at"] for c in mailboxes), default="")
    requests_ = list(db.query(
        "SELECT outcome, error_code, created_at FROM consent_requests WHERE record_id = ? AND created_at > ? "
        "ORDER BY id DESC LIMIT 1", [record_id, last_seen]))
    if requests_ and requests_[0]["outcome"] in AWAITING_APPROVAL:
        return {**shown, "state": "awaiting_approval", "request": requests_[0]}
    return {**shown, "state": "not_connected"}


# -- compose ----------------------------------------------------------------------------------------

def _new_compose(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Empty form values, with a fresh idempotency key: one key per rendered form."""
    return {"mode": "reply" if messages else "new", "connection_id": "", "to": "", "cc": "", "subject": "",
            "body": "", "idempotency_key": secrets.token_urlsafe(18)}


def _split_addresses(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,;\n]", text) if part.strip()]


def attachments_from_form(files: list[FileStorage]) -> list[dict[str, str]]:
    """The compose form's chosen files in the API's shape (a browser sends an empty part when none is chosen)."""
    return [{"name": file.filename or "attachment", "content_type": file.mimetype or "application/octet-stream",
             "content_base64": base64.b64encode(file.read()).decode()} for file in files if file.filename]


def send_request_from_form(form: dict[str, str]) -> dict[str, Any]:
    """The compose form's fields in the API's request shape, for :func:`parse_send_request`."""
    connection = form.get("connection_id", "").strip()
    return {
        "connection_id": int(connection) if re.fullmatch(r"[0-9]{1,18}", connection) else None,
        "to": _split_addresses(form.get("to", "")),
        "cc": _split_addresses(form.get("cc", "")),
        "subject": form.get("subject", "").strip() or None,
        "body": form.get("body", ""),
        "body_type": "text",
        "reply": form.get("mode") == "reply",
    }


def _field_error(e: APIError | DomainError) -> dict[str, str]:
    """A validation error restated for the form, naming the field by its label."""
    if e.code == "connection_not_active":
        return {"field": "connection_id", "message": "That mailbox must be reconnected before it can send mail."}
    field = e.field if e.field in FIELD_LABELS and e.message.startswith(f"'{e.field}'") else ""
    message = f"{FIELD_LABELS[field]} {e.message.removeprefix(repr(field)).strip()}" if field else e.message
    return {"field": field, "message": message}


def _render_record(record: dict[str, Any], *, compose: dict[str, Any] | None = None,
                   error: dict[str, str] | None = None, status: int = 200):
    db = get_db()
    version = record_version(db, record["id"])  # before what it describes is read: a change meanwhile shows
    messages = thread(db, record["id"])
    return render_template(
        "record.html", record=record, live_version=version,
        mailbox=mailbox_state(db, record["id"], current_person()), messages=messages,
        sends=recent_sends(db, record["id"]), skipped_reasons=attachments.SKIPPED,
        compose=compose or _new_compose(messages), error=error, csrf_token=csrf_token(),
    ), status


def _get_record(record_id: int) -> dict[str, Any]:
    """The record, if the signed-in person's organization owns it (isolation rule 4); else 404 or 403."""
    try:
        return record_for_tenant(get_db(), record_id, current_person().tenant_id)
    except NotFound as e:
        abort(404, e.message)
    except Forbidden:
        abort(403, "This record belongs to another organization than the account you are signed in with.")


@bp.app_context_processor
def signed_in_person() -> dict[str, Any]:
    """Every page's header names the signed-in person, with a sign-out form."""
    return {"person": current_person(), "csrf_token_for_page": csrf_token}


@bp.get("/records/<id:record_id>")
@person_required
def record(record_id: int):
    return _render_record(_get_record(record_id))


@bp.get("/records/<id:record_id>/attachments/<id:attachment_id>")
@person_required
def attachment(record_id: int, attachment_id: int):
    """An attachment of the record's thread, for a person of the record's organization."""
    _get_record(record_id)
    try:
        return attachment_response(get_db(), record_id, attachment_id)
    except NotFound as e:
        abort(404, e.message)


@bp.get("/records/<id:record_id>/live")
@person_required
def live(record_id: int):
    """The record's version for an open page's check (``If-None-Match``: 304 while unchanged).

    A light poll, not Server-Sent Events: a stream would hold one of the server's few request
    threads (``WEB_THREADS``) for as long as a page is open, and those are kept for Graph. A check
    costs a request of about 200 bytes each way every 1.5 s per open page (10 s while the tab is
    hidden), answered from four indexed lookups."""
    _get_record(record_id)
    version = record_version(get_db(), record_id)
    if request.if_none_match.contains(version):
        rv = Response(status=304)
    else:
        rv = jsonify({"version": version})
    rv.set_etag(version)
    rv.headers["Cache-Control"] = "private, no-cache"
    return rv


@bp.get("/records/<id:record_id>/messages/<id:entry_id>/body")
@person_required
def message_body(record_id: int, entry_id: int):
    """An HTML body of the record's thread, for the page's sandboxed frame."""
    _get_record(record_id)
    stored = stored_body(get_db(), record_id, entry_id)
    if stored is None or stored[0] != "html" or not stored[1]:
        abort(404, "This record has no such HTML message.")
    return body_document(get_db(), record_id, entry_id, stored[1], remote_images=request.args.get("images") == "shown")


@bp.post("/records/<id:record_id>/compose")
def compose(record_id: int):
    allow_send_sized_body()
    if current_person() is None:
        return sign_in_redirect(url_for("pages.record", record_id=record_id))
    record_ = _get_record(record_id)
    form = {name: request.form.get(name, "") for name in ("mode", "connection_id", "to", "cc", "subject", "body")}
    key = request.form.get("idempotency_key", "").strip()
    if not csrf_valid() or not key or len(key) > MAX_FORM_KEY:
        # Possibly a cross-site post: show a fresh, empty form rather than what was posted.
        return _render_record(record_, status=400, error={
            "field": "", "message": "This form had expired, so nothing was sent. Please write your message again."})
    values = {**form, "idempotency_key": key}
    person = current_person()
    try:
        send = parse_send_request({**send_request_from_form(form),
                                   "attachments": attachments_from_form(request.files.getlist("attachments"))})
        queued = queue_send(get_db(), current_services().queue, record_id, send, FORM_KEY_PREFIX + key,
                            sender=(person.tenant_id, person.user_id))
    except (APIError, DomainError) as e:
        if e.code == "idempotency_key_reused":  # an old form sent again with changes: offer it as new
            values["idempotency_key"] = _new_compose([])["idempotency_key"]
            return _render_record(record_, compose=values, status=409, error={"field": "", "message": (
                "This form was already used to send a message, so nothing was sent now. "
                "If you want to send this text too, press Send again.")})
        return _render_record(record_, compose=values, error=_field_error(e), status=http_status(e))
    if queued["created"]:
        current_services().on_enqueue()
        what = "reply" if send["reply"] else "message"
        flash(f"Your {what} is queued and will be sent from your Outlook mailbox. "
              f"Its progress is shown under Recent sends.", "ok")
    else:
        flash("That message had already been submitted, so it was not sent again.", "ok")
    return redirect(url_for("pages.record", record_id=record_id, _anchor="sends"), 303)


@bp.post("/records/<id:record_id>/connections/<id:connection_id>/disconnect")
def disconnect_mailbox(record_id: int, connection_id: int):
    """The record page's Disconnect button: a person disconnects their own mailbox, as
    ``DELETE /api/connections/{id}`` does (subscriptions deleted, tokens wiped, unsent mail failed; the
    records keep their history). Someone else's mailbox on the record is refused (403)."""
    if current_person() is None:
        return sign_in_redirect(url_for("pages.record", record_id=record_id))
    _get_record(record_id)
    if not csrf_valid():
        return render_problem(ConsentProblem(
            "form_expired", "This form had expired", "The Disconnect form was too old or came from another site, "
            "so your mailbox is still connected.", "Go back to the record and press Disconnect again."),
            400, record_id=record_id)
    mailbox = next((c for c in mailbox_state(get_db(), record_id, current_person())["mailboxes"]
                    if c["id"] == connection_id), None)
    if mailbox is None:
        abort(404, "This record has no such mailbox.")
    if not current_person().owns(mailbox):
        abort(403, "Only its owner can disconnect a mailbox.")
    if mailbox["status"] != "disconnected":
        disconnect(current_services(), connection_id)
    flash(f"Your mailbox {mailbox['email']} is disconnected: the service no longer reads or sends its mail. "
          "The messages already on the record stay.", "ok")
    return redirect(url_for("pages.record", record_id=record_id, _anchor="mailbox"), 303)
