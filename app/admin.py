"""The operator's status page, ``/admin``, behind a login with the API token or ``ADMIN_PASSWORD``."""

from __future__ import annotations

import hmac
import json
import time
from functools import wraps

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for

from app.readiness import run_checks
from app.storage import get_db
from handlers.queue import SqliteQueue

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _secret_matches(given: str) -> bool:
    candidates = [current_app.config["API_TOKEN"], current_app.config["ADMIN_PASSWORD"]]
    return any(candidate and hmac.compare_digest(given.encode(), candidate.encode()) for candidate in candidates)


def operator_required(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        if not session.get("operator"):
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        if _secret_matches(request.form.get("secret", "")):
            session.clear()
            session["operator"] = True
            return redirect(url_for("admin.status"))
        error = "That password or API token is not valid."
    return render_template("admin_login.html", error=error), 401 if error else 200


@bp.post("/logout")
def logout():
    session.pop("operator", None)
    return redirect(url_for("admin.login"))


@bp.get("")
@operator_required
def status():
    db = get_db()
    tenants = list(db.query("SELECT * FROM tenants ORDER BY id"))
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
        checks=run_checks(db),
        queue=[{"kind": kind, "state": state, "n": n}  # the inbox's jobs count as queued
               for kind, states in sorted(SqliteQueue(db).stats().by_kind.items()) for state, n in states.items() if n],
        dead=[{**row, "payload": json.loads(row["payload"])} for row in db.query(
            "SELECT id, kind, connection_id, last_error, attempts, updated_at, payload FROM jobs "
            "WHERE state = 'dead' ORDER BY updated_at DESC LIMIT 20")],
        app_errors=list(db.query("SELECT * FROM app_errors ORDER BY last_seen_at DESC")),
        now=time.time(),
    )
