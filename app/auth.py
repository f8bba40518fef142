"""Connect Outlook: the sign-in flow, its callback, and tenant-wide admin consent.

msal's flow dict (PKCE verifier, nonce, state) stays in the database, encrypted; the browser
only holds an opaque id in the signed session cookie. Each flow can be redeemed once.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, redirect, request, session, url_for

from app.connections import (
    ConsentProblem,
    consent_problem,
    record_admin_consent,
    record_consent_problem,
    save_connection,
)
from app.errors import MAX_ROW_ID, APIError
from app.identity import IdentityConfigError, IdentityUnavailable, SignInError
from app.pages import render_problem
from app.storage import get_db
from app.timeutil import iso, now_iso, utcnow

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

FLOW_LIFETIME = timedelta(minutes=15)


def _identity():
    return current_app.extensions["identity"]


def _save_flow(kind: str, flow: dict[str, Any], record_id: int | None) -> str:
    flow_id = secrets.token_urlsafe(32)
    cipher = current_app.extensions["cipher"]
    db = get_db()
    with db.atomic():
        db.execute("DELETE FROM auth_flows WHERE expires_at < ?", [now_iso()])
        db.execute("INSERT INTO auth_flows (id, kind, record_id, flow, expires_at) VALUES (?, ?, ?, ?, ?)",
                   [flow_id, kind, record_id, cipher.encrypt(json.dumps(flow)), iso(utcnow() + FLOW_LIFETIME)])
    return flow_id


def _pop_flow(kind: str) -> tuple[dict[str, Any], int | None] | None:
    """The flow this browser started, deleted as it is read so a callback cannot be replayed."""
    flow_id = session.pop(f"{kind}_flow", None)
    if not isinstance(flow_id, str):
        return None
    rows = list(get_db().query(
        "DELETE FROM auth_flows WHERE id = ? AND kind = ? AND expires_at >= ? RETURNING flow, record_id",
        [flow_id, kind, now_iso()]))
    if not rows:
        return None
    flow = json.loads(current_app.extensions["cipher"].decrypt_text(rows[0]["flow"]))
    return flow, rows[0]["record_id"]


def _record_exists(record_id: int) -> bool:
    return bool(list(get_db().query("SELECT 1 FROM records WHERE id = ?", [record_id])))


@bp.get("/connect/outlook")
def connect_outlook():
    record_id = request.args.get("record_id", type=int)
    if record_id is None or not 1 <= record_id <= MAX_ROW_ID or not _record_exists(record_id):
        raise APIError(404 if record_id else 400, "record_not_found" if record_id else "missing_record_id",
                       "Connect Outlook needs the id of an existing record (?record_id=...).")
    try:
        flow = _identity().start_sign_in(url_for("auth.callback", _external=True))
    except IdentityUnavailable as e:
        return render_problem(consent_problem("identity_unavailable", str(e)), 503)
    session["connect_flow"] = _save_flow("connect", flow, record_id)
    return redirect(flow["auth_uri"])


@bp.get("/auth/callback")
def callback():
    popped = _pop_flow("connect")
    if popped is None:
        return render_problem(consent_problem("sign_in_expired"), 400)
    flow, record_id = popped
    if "error" in request.args:
        problem = record_consent_problem(get_db(), record_id, request.args.get("error", ""),
                                         request.args.get("error_description", ""))
        return render_problem(problem, 403 if problem.code != "declined" else 400, record_id=record_id)
    try:
        sign_in = _identity().finish_sign_in(flow, request.args.to_dict())
    except SignInError as e:
        log.warning("Sign-in rejected: %s", e.error)
        return render_problem(consent_problem("sign_in_rejected", e.description), 400, record_id=record_id)
    except IdentityConfigError as e:
        log.error("App registration problem at sign-in: %s", e.code)
        return render_problem(consent_problem("app_misconfigured", e.code), 502, record_id=record_id)
    except IdentityUnavailable as e:
        return render_problem(consent_problem("identity_unavailable", str(e)), 503, record_id=record_id)
    allowed = current_app.config["ALLOWED_TENANTS"]
    if allowed and sign_in.tenant_id not in allowed:
        log.warning("Sign-in from tenant %s refused: not in ALLOWED_TENANTS", sign_in.tenant_id)
        return render_problem(consent_problem("tenant_not_allowed"), 403, record_id=record_id)
    queue = current_app.extensions["queue"]
    connection_id = save_connection(get_db(), current_app.extensions["cipher"], sign_in, record_id, queue)
    log.info("Connected mailbox", extra={"connection_id": connection_id})
    return redirect(url_for("pages.record", record_id=record_id, connected=connection_id))


@bp.get("/admin/consent")
def admin_consent():
    """Send a tenant administrator to the v2 admin-consent endpoint (Option 1)."""
    state = secrets.token_urlsafe(32)
    session["admin_consent_flow"] = _save_flow("admin_consent", {"state": state}, None)
    return redirect(_identity().admin_consent_url(url_for("auth.admin_consent_callback", _external=True), state))


@bp.get("/admin/consent/callback")
def admin_consent_callback():
    popped = _pop_flow("admin_consent")
    state = request.args.get("state", "")
    if popped is None or not hmac.compare_digest(popped[0]["state"].encode(), state.encode()):
        return render_problem(consent_problem("sign_in_expired"), 400)
    if "error" in request.args:
        problem = ConsentProblem("admin_consent_failed", "Admin consent was not granted",
                                 request.args.get("error_description") or request.args["error"],
                                 "An administrator can try again from the admin page.")
        return render_problem(problem, 400)
    tenant_id = request.args.get("tenant", "")
    allowed = current_app.config["ALLOWED_TENANTS"]
    if request.args.get("admin_consent", "").lower() != "true" or not tenant_id:
        return render_problem(consent_problem("sign_in_rejected", "the response carries no consent"), 400)
    if allowed and tenant_id not in allowed:
        return render_problem(consent_problem("tenant_not_allowed"), 403)
    record_admin_consent(get_db(), tenant_id)
    return render_problem(ConsentProblem(
        "admin_consented", "Admin consent recorded",
        f"Tenant {tenant_id} reported consent on behalf of the organization.",
        "Users of this tenant can now click Connect Outlook without an admin step. The tenant is confirmed "
        "when its first user signs in.", ok=True), 200)
