"""The operator's status page, ``/admin``, behind a login with the API token or ``ADMIN_PASSWORD``.

The login form and the sign-out form carry the session's CSRF token. Failed guesses are counted in
the database per client address and over all clients (:mod:`app.core.ratelimit`), so every web process
locks a guesser out. A sign-in is a server-side session (:mod:`app.core.login_sessions`) that lasts at
most 12 hours and that signing out ends, for every copy of the cookie.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import time

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for

from app.core import app_errors, login_sessions, ratelimit
from app.core.queue import JobQueue
from app.records.organizations import DEFAULT_ID
from app.web import operator
from app.web.context import get_db
from app.web.csrf import csrf_token, csrf_valid
from app.web.readiness import run_checks

log = logging.getLogger(__name__)
bp = Blueprint("admin", __name__, url_prefix="/admin")

FAILED_LOGINS_PER_CLIENT = ratelimit.Limit("operator_login", hits=5, window_seconds=900)
FAILED_LOGINS_OVERALL = ratelimit.Limit("operator_login_all", hits=50, window_seconds=900)
OPERATOR_PATH = re.compile(r"/admin(/[A-Za-z0-9_/-]*)?")  # where a sign-in may send the operator next


def _secret_matches(given: str) -> bool:
    candidates = [current_app.config["API_TOKEN"], current_app.config["ADMIN_PASSWORD"]]
    return any(candidate and hmac.compare_digest(given.encode(), candidate.encode()) for candidate in candidates)


def _login_limits() -> list[tuple[ratelimit.Limit, str]]:
    return [(FAILED_LOGINS_PER_CLIENT, ratelimit.client_key(request.remote_addr)),
            (FAILED_LOGINS_OVERALL, ratelimit.EVERYONE)]


def _locked_for(now: float) -> int | None:
    """Seconds until this client may guess again (``None``: it may now)."""
    waits = [ratelimit.blocked_for(get_db(), limit, key, now) for limit, key in _login_limits()]
    return max((wait for wait in waits if wait), default=None)


def _login_page(error: str | None = None, status: int = 200, headers: dict[str, str] | None = None):
    return render_template("admin_login.html", error=error, csrf_token=csrf_token()), status, headers or {}


def _locked_out(wait: int):
    minutes = math.ceil(wait / 60)
    return _login_page(f"Too many failed sign-ins. Sign-in is locked; try again in {minutes} "
                       f"minute{'s' if minutes != 1 else ''}.", 429, {"Retry-After": str(wait)})


def _next_page() -> str:
    wanted = request.args.get("next", "")
    return wanted if OPERATOR_PATH.fullmatch(wanted) else url_for("admin.status")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return _login_page()
    now = operator.now()
    if wait := _locked_for(now):
        return _locked_out(wait)
    if not csrf_valid():
        return _login_page("This sign-in form had expired. Please sign in again.", 400)
    db = get_db()
    if not _secret_matches(request.form.get("secret", "")):
        for limit, key in _login_limits():
            ratelimit.hit(db, limit, key, now)
        if wait := _locked_for(now):
            log.warning("Operator sign-in locked for %d s after repeated failures from %s", wait, request.remote_addr)
            return _locked_out(wait)
        return _login_page("That password or API token is not valid.", 401)
    ratelimit.clear(db, FAILED_LOGINS_PER_CLIENT, ratelimit.client_key(request.remote_addr))
    session.clear()
    session[operator.SESSION_KEY] = login_sessions.start(db, operator.OPERATOR, now)
    log.info("Operator signed in from %s", request.remote_addr)
    return redirect(_next_page())


@bp.post("/logout")
def logout():
    if not csrf_valid():
        abort(400, "This sign-out form had expired, so you are still signed in. Sign out again from the admin page.")
    login_sessions.end(get_db(), session.get(operator.SESSION_KEY))
    session.clear()
    return redirect(url_for("admin.login"))


@bp.get("")
@operator.operator_required
def status():
    db = get_db()
    tenants = list(db.query(
        "SELECT t.*, o.name AS organization_name FROM tenants t JOIN organizations o ON o.id = coalesce("
        "(SELECT organization_id FROM organization_tenants WHERE tenant_id = t.id), ?) ORDER BY o.name, t.id",
        [DEFAULT_ID]))
    for tenant in tenants:
        latest = list(db.query("SELECT granted_scopes FROM connections WHERE tenant_id = ? "
                               "ORDER BY updated_at DESC LIMIT 1", [tenant["id"]]))
        tenant["scopes"] = (latest[0]["granted_scopes"] or "").split() if latest else []
    return render_template(
        "admin.html",
        tenants=tenants,
        connections=list(db.query("SELECT id, tenant_id, email, status, status_reason, updated_at "
                                  "FROM connections ORDER BY id")),
        subscriptions=list(db.query(
            "SELECT s.id, s.connection_id, c.email, s.status, s.expires_at, s.renewed_at, s.last_error "
            "FROM subscriptions s LEFT JOIN connections c ON c.id = s.connection_id "
            "WHERE s.status IN ('active', 'replaced') ORDER BY s.expires_at")),
        checks=run_checks(db, certificate=current_app.config["AZURE_CLIENT_CERTIFICATE_PATH"]),
        queue=[{"kind": kind, "state": state, "n": n}  # the inbox's jobs count as queued
               for kind, states in sorted(JobQueue(db).stats().by_kind.items()) for state, n in states.items() if n],
        dead=[{**row, "payload": json.loads(row["payload"])} for row in db.query(
            "SELECT id, kind, connection_id, last_error, attempts, updated_at, payload FROM jobs "
            "WHERE state = 'dead' ORDER BY updated_at DESC LIMIT 20")],
        app_errors=app_errors.current(db),
        now=time.time(), csrf_token=csrf_token(),
    )
