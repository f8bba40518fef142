"""Connect Outlook: the sign-in flow, its callback, and tenant-wide admin consent.

msal's flow dict (PKCE verifier, nonce, state) travels in the browser's signed session cookie,
encrypted with the app's cipher (the cookie is signed, not secret) and without its authorize URL,
so starting a sign-in stores nothing on the server: anonymous clicks cannot grow the database.
A flow lasts 15 minutes, is removed from the session by its callback, and every callback path,
error redirects included, must carry the flow's ``state``. Sign-in starts are rate-limited per
client address.

Redirect URIs are built from ``PUBLIC_BASE_URL``, never from the request: behind a TLS-terminating
proxy, or opened as ``localhost``, the request's own URL is not the one registered with Entra.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for

from app.core import ratelimit
from app.core.crypto import DecryptionError
from app.core.errors import Forbidden, NotFound
from app.microsoft.failures import IdentityConfigError, IdentityUnavailable, consent_outcome
from app.microsoft.identity import SignIn, SignInError
from app.records.connections import save_connection
from app.records.consent import (
    ConsentProblem,
    canonical_tenant_id,
    consent_problem,
    record_admin_consent,
    record_consent_problem,
)
from app.records.records import record_exists, record_for_tenant
from app.web.context import current_services, get_db
from app.web.csrf import csrf_token, csrf_valid
from app.web.errors import MAX_ROW_ID
from app.web.operator import is_operator, now
from app.web.people import current_person, local_path, person_required, sign_in_redirect, sign_out
from app.web.people import sign_in as sign_in_person
from app.web.problems import render_problem

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

CALLBACK_PATH = "/auth/callback"
ADMIN_CONSENT_CALLBACK_PATH = "/admin/consent/callback"
RECORD_PAGE = re.compile(r"/records/([0-9]{1,19})|/connect/outlook\?record_id=([0-9]{1,19})")
FLOW_LIFETIME = timedelta(minutes=15)
SIGN_IN_STARTS = ratelimit.Limit("sign_in_start", hits=60, window_seconds=600)  # per client address


def _identity():
    return current_services().identity


def _public_url(path: str) -> str:
    return current_app.config["PUBLIC_BASE_URL"] + path


def _save_flow(kind: str, flow: dict[str, Any]) -> None:
    """Keep ``flow`` in this browser's session, encrypted; its authorize URL is not needed again."""
    kept = {key: value for key, value in flow.items() if key != "auth_uri"}
    session[f"{kind}_flow"] = current_services().cipher.encrypt(json.dumps(kept)).decode()


def _pop_flow(kind: str) -> dict[str, Any] | None:
    """The flow this browser started, if it is under 15 minutes old and the redirect carries its
    ``state``. It leaves the session either way, so a callback cannot be replayed here."""
    sealed = session.pop(f"{kind}_flow", None)
    if not isinstance(sealed, str):
        return None
    try:
        flow = json.loads(current_services().cipher.decrypt_text(
            sealed, ttl=int(FLOW_LIFETIME.total_seconds())))
    except DecryptionError:
        return None
    if not hmac.compare_digest(flow["state"].encode(), request.args.get("state", "").encode()):
        return None
    return flow


def _connect_record(value: str | None) -> dict[str, Any] | tuple:
    """The record Connect Outlook was asked for, or the page that says why there is none."""
    record_id = int(value) if value and value.isdigit() and len(value) <= 19 else None
    if record_id is None or not 1 <= record_id <= MAX_ROW_ID:
        return render_problem(consent_problem("no_record"), 400)
    try:
        return record_for_tenant(get_db(), record_id, current_person().tenant_id)
    except NotFound:
        return render_problem(consent_problem("no_record", f"there is no record {record_id}"), 404)
    except Forbidden:
        return render_problem(consent_problem("other_organization_record"), 403)


def _record_of_page(path: str | None) -> int | None:
    """The existing record whose page (or Connect page) a sign-in returns to, if any: a consent refused at
    sign-in (Option 2's "approval required") is remembered on it, as Connect Outlook's would be."""
    found = RECORD_PAGE.fullmatch(path or "")
    record_id = int(found.group(1) or found.group(2)) if found else None
    return record_id if record_id is not None and record_id <= MAX_ROW_ID and record_exists(get_db(), record_id) \
        else None


def _start_sign_in(purpose: dict[str, Any]):
    """Redirect to Entra's authorize endpoint for a new flow kept with ``purpose`` (a record to connect,
    or the page to return to); sign-in starts are rate-limited per client address."""
    db, client = get_db(), ratelimit.client_key(request.remote_addr)
    if wait := ratelimit.blocked_for(db, SIGN_IN_STARTS, client, now()):
        page, status = render_problem(consent_problem("too_many_sign_ins"), 429)
        return page, status, {"Retry-After": str(wait)}
    ratelimit.hit(db, SIGN_IN_STARTS, client, now())
    try:
        flow = _identity().start_sign_in(_public_url(CALLBACK_PATH))
    except IdentityUnavailable as e:
        return render_problem(consent_problem("identity_unavailable", str(e)), 503)
    _save_flow("sign_in", {**flow, **purpose})
    return redirect(flow["auth_uri"])


@bp.get("/login")
def login():
    """A person signs in with Microsoft, then returns to ``next`` (a path on this service only)."""
    next_path = local_path(request.args.get("next")) or url_for("auth.signed_in")
    if current_person() is not None:
        return redirect(next_path)
    return _start_sign_in({"next": next_path})


@bp.get("/signed-in")
@person_required
def signed_in():
    person = current_person()
    return render_template("signed_in.html", person=person, csrf_token=csrf_token())


@bp.post("/logout")
def logout():
    if not csrf_valid():
        return render_problem(ConsentProblem("form_expired", "This form had expired",
                                             "The sign-out form was too old or came from another site, so you are "
                                             "still signed in.", "Sign out again from the page's header."), 400)
    sign_out()
    return render_problem(ConsentProblem("signed_out", "Signed out", "You are signed out of the service.",
                                         "Sign in again from any record's page.", ok=True), 200)


@bp.get("/connect/outlook")
@person_required
def connect_outlook():
    """A page naming the record, with the one form that connects: a bare link never connects a mailbox."""
    record = _connect_record(request.args.get("record_id"))
    if not isinstance(record, dict):
        return record
    return render_template("connect.html", record=record, csrf_token=csrf_token())


@bp.post("/connect/outlook")
def start_connect():
    """The person's click on Connect Outlook (the record page's button, or the page above)."""
    if current_person() is None:
        return sign_in_redirect(url_for("auth.connect_outlook", record_id=request.form.get("record_id")))
    record = _connect_record(request.form.get("record_id"))
    if not isinstance(record, dict):
        return record
    if not csrf_valid():
        return render_problem(consent_problem("form_expired"), 400, record_id=record["id"])
    return _start_sign_in({"record_id": record["id"]})


def _redeem(flow: dict[str, Any], record_id: int | None):
    """The sign-in the callback carries, or the page that says why there is none."""
    if "error" in request.args:
        error, description = request.args.get("error", ""), request.args.get("error_description", "")
        problem = (record_consent_problem(get_db(), record_id, error, description) if record_id is not None
                   else consent_problem(consent_outcome(error, description)))  # only a record remembers one
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
    return sign_in


@bp.get(CALLBACK_PATH)
def callback():
    """Both sign-ins end here: a person signing in, and Connect Outlook (which signs the person in too)."""
    flow = _pop_flow("sign_in")
    if flow is None:
        return render_problem(consent_problem("sign_in_expired"), 400)
    record_id, next_path = flow.pop("record_id", None), flow.pop("next", None)
    sign_in = _redeem(flow, record_id if record_id is not None else _record_of_page(next_path))
    if not isinstance(sign_in, SignIn):
        return sign_in
    if record_id is None:
        sign_in_person(sign_in)
        return redirect(local_path(next_path) or url_for("auth.signed_in"))
    services = current_services()
    try:
        connection_id = save_connection(get_db(), services.cipher, sign_in, record_id, services.queue)
    except Forbidden:
        log.warning("Sign-in from tenant %s refused: another organization than record %s's", sign_in.tenant_id,
                    record_id)
        return render_problem(consent_problem("other_organization"), 403, record_id=record_id)
    sign_in_person(sign_in)
    services.on_enqueue()
    log.info("Connected mailbox", extra={"connection_id": connection_id})
    flash("Outlook is connected. Earlier messages of this conversation are being linked now; new replies will "
          "appear here within seconds.", "ok")  # a flash shows once: a reload does not repeat it
    return redirect(url_for("pages.record", record_id=record_id))


@bp.get("/admin/consent")
def admin_consent():
    """Send a tenant administrator to the v2 admin-consent endpoint (Option 1)."""
    if current_person() is None and not is_operator():  # never anonymously: a person or the operator
        return sign_in_redirect(request.path)
    state = secrets.token_urlsafe(32)
    _save_flow("admin_consent", {"state": state})
    return redirect(_identity().admin_consent_url(_public_url(ADMIN_CONSENT_CALLBACK_PATH), state))


@bp.get(ADMIN_CONSENT_CALLBACK_PATH)
def admin_consent_callback():
    if _pop_flow("admin_consent") is None:
        return render_problem(consent_problem("sign_in_expired"), 400)
    if "error" in request.args:
        problem = ConsentProblem("admin_consent_failed", "Admin consent was not granted",
                                 request.args.get("error_description") or request.args["error"],
                                 "An administrator can try again from the admin page.")
        return render_problem(problem, 400)
    if request.args.get("admin_consent", "").lower() != "true":
        return render_problem(consent_problem("sign_in_rejected", "the response carries no consent"), 400)
    tenant_id = canonical_tenant_id(request.args.get("tenant", ""))
    if tenant_id is None:
        return render_problem(consent_problem("sign_in_rejected", "the response names no valid tenant id"), 400)
    allowed = current_app.config["ALLOWED_TENANTS"]
    if allowed and tenant_id not in allowed:
        return render_problem(consent_problem("tenant_not_allowed"), 403)
    record_admin_consent(get_db(), tenant_id)
    return render_problem(ConsentProblem(
        "admin_consented", "Admin consent recorded",
        f"Tenant {tenant_id} reported consent on behalf of the organization.",
        "Users of this tenant can now click Connect Outlook without an admin step. The tenant is confirmed "
        "when its first user signs in.", ok=True), 200)
