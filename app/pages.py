"""Server-rendered pages: a record's conversation and mailbox state, and consent outcomes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, render_template, request
from sqlite_utils import Database

from app.connections import ConsentProblem
from app.storage import get_db
from app.threads import thread

bp = Blueprint("pages", __name__)


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def render_problem(problem: ConsentProblem, status: int, *, record_id: int | None = None):
    """A consent outcome as HTML for browsers or JSON for API clients."""
    if wants_json():
        body = {"code": problem.code, "title": problem.title, "what_happened": problem.what_happened,
                "what_next": problem.what_next}
        rv = jsonify(body if problem.ok else {"error": {"code": problem.code, "message": problem.what_happened,
                                                        **body}})
        return rv, status
    return render_template("problem.html", problem=problem, record_id=record_id), status


def mailbox_state(db: Database, record_id: int) -> dict[str, Any]:
    """What the record page says about Outlook: connected, reconnect, awaiting approval or connect."""
    connections = list(db.query(
        """
        SELECT c.id, c.email, c.display_name, c.status, c.status_reason, c.updated_at FROM connections c
        JOIN record_connections rc ON rc.connection_id = c.id WHERE rc.record_id = ? ORDER BY c.updated_at DESC
        """, [record_id]))
    active = [c for c in connections if c["status"] == "active"]
    if active:
        return {"state": "connected", "connections": active}
    broken = [c for c in connections if c["status"] == "reconnect_required"]
    if broken:
        return {"state": "reconnect_required", "connections": broken}
    last_seen = max((c["updated_at"] for c in connections), default="")
    requests_ = list(db.query(
        "SELECT outcome, error_code, created_at FROM consent_requests WHERE record_id = ? AND created_at > ? "
        "ORDER BY id DESC LIMIT 1", [record_id, last_seen]))
    if requests_ and requests_[0]["outcome"] in ("approval_requested", "approval_required"):
        return {"state": "awaiting_approval", "request": requests_[0], "connections": []}
    return {"state": "not_connected", "connections": []}


@bp.get("/records/<int:record_id>")
def record(record_id: int):
    db = get_db()
    rows = list(db.query("SELECT * FROM records WHERE id = ?", [record_id]))
    if not rows:
        abort(404, f"Record {record_id} does not exist.")
    return render_template(
        "record.html", record=rows[0], mailbox=mailbox_state(db, record_id),
        messages=thread(db, record_id), connected=request.args.get("connected", type=int),
    )
