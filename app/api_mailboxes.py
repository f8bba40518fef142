"""Connected mailboxes, their subscriptions and tenants' consent, for the records platform and operators."""

from __future__ import annotations

from flask import current_app, jsonify

from app.api import bp
from app.connections import disconnect
from app.errors import APIError
from app.storage import get_db

CONNECTION_FIELDS = "id, tenant_id, user_id, email, display_name, status, status_reason, created_at, updated_at"


@bp.get("/connections")
def list_connections():
    rows = get_db().query(f"SELECT {CONNECTION_FIELDS} FROM connections ORDER BY id")
    return jsonify({"connections": list(rows)})


@bp.get("/connections/<id:connection_id>")
def show_connection(connection_id: int):
    rows = list(get_db().query(f"SELECT {CONNECTION_FIELDS} FROM connections WHERE id = ?", [connection_id]))
    if not rows:
        raise APIError(404, "connection_not_found", f"Connection {connection_id} does not exist.")
    return jsonify(rows[0])


@bp.delete("/connections/<id:connection_id>")
def delete_connection(connection_id: int):
    """Disconnect: delete the Graph subscriptions, wipe the tokens, keep the records' history."""
    rows = list(get_db().query("SELECT status FROM connections WHERE id = ?", [connection_id]))
    if not rows:
        raise APIError(404, "connection_not_found", f"Connection {connection_id} does not exist.")
    if rows[0]["status"] != "disconnected":
        disconnect(current_app.extensions["services"], connection_id)
    return show_connection(connection_id)


@bp.get("/subscriptions")
def list_subscriptions():
    rows = get_db().query(
        "SELECT id, connection_id, resource, expires_at, status, renewed_at, last_error FROM subscriptions "
        "WHERE status IN ('active', 'replaced') ORDER BY connection_id, created_at")
    return jsonify({"subscriptions": list(rows)})


@bp.get("/tenants")
def list_tenants():
    """Per tenant: consent state, connected users, and the scopes their latest token carries."""
    db = get_db()
    tenants = []
    for tenant in db.query("SELECT id, consent_state, consent_detail, updated_at FROM tenants ORDER BY id"):
        users = list(db.query(
            "SELECT id AS connection_id, email, status, granted_scopes FROM connections WHERE tenant_id = ? "
            "ORDER BY updated_at DESC", [tenant["id"]]))
        latest = users[0]["granted_scopes"] if users else None
        tenants.append({**tenant, "connections": users,
                        "granted_scopes": latest.split() if latest else []})
    return jsonify({"tenants": tenants})
