"""Connected mailboxes, their subscriptions and tenants' consent, for the records platform and operators."""

from __future__ import annotations

from flask import Blueprint, jsonify

from app.core.errors import NotFound
from app.records.organizations import DEFAULT_ID
from app.web.context import current_services, get_db
from app.web.openapi import documented
from app.web.validation import require_api_token
from subscriptions.manager import disconnect

bp = Blueprint("api_mailboxes", __name__, url_prefix="/api")
bp.before_request(require_api_token)

CONNECTION_FIELDS = "id, tenant_id, user_id, email, display_name, status, status_reason, created_at, updated_at"


def _connection(connection_id: int) -> dict:
    rows = list(get_db().query(f"SELECT {CONNECTION_FIELDS} FROM connections WHERE id = ?", [connection_id]))
    if not rows:
        raise NotFound("connection_not_found", f"Connection {connection_id} does not exist.")
    return rows[0]


@bp.get("/connections")
@documented("Connected mailboxes.", answers={200: "Connections"})
def list_connections():
    rows = get_db().query(f"SELECT {CONNECTION_FIELDS} FROM connections ORDER BY id")
    return jsonify({"connections": list(rows)})


@bp.get("/connections/<id:connection_id>")
@documented("A connected mailbox.", answers={200: "Connection"})
def show_connection(connection_id: int):
    return jsonify(_connection(connection_id))


@bp.delete("/connections/<id:connection_id>")
@documented("Disconnect a mailbox; the records keep its history.", answers={200: "Connection"})
def delete_connection(connection_id: int):
    """Disconnect: delete the Graph subscriptions, wipe the tokens, keep the records' history."""
    if _connection(connection_id)["status"] != "disconnected":
        disconnect(current_services(), connection_id)
    return jsonify(_connection(connection_id))


@bp.get("/subscriptions")
@documented("Graph subscriptions held for connected mailboxes.", answers={200: "Subscriptions"})
def list_subscriptions():
    rows = get_db().query(
        "SELECT id, connection_id, resource, expires_at, status, renewed_at, last_error FROM subscriptions "
        "WHERE status IN ('active', 'replaced') ORDER BY connection_id, created_at")
    return jsonify({"subscriptions": list(rows)})


@bp.get("/tenants")
@documented("Each tenant's consent state, its connected people and the scopes granted.", answers={200: "Tenants"})
def list_tenants():
    """Per tenant: consent state, connected users, and the scopes their latest token carries."""
    db = get_db()
    tenants = []
    for tenant in db.query(
            "SELECT t.id, t.consent_state, t.consent_detail, t.updated_at, o.id AS organization_id,"
            " o.name AS organization_name FROM tenants t"
            " JOIN organizations o ON o.id = coalesce((SELECT organization_id FROM organization_tenants"
            " WHERE tenant_id = t.id), ?) ORDER BY t.id", [DEFAULT_ID]):
        users = list(db.query(
            "SELECT id AS connection_id, email, status, granted_scopes FROM connections WHERE tenant_id = ? "
            "ORDER BY updated_at DESC", [tenant["id"]]))
        latest = users[0]["granted_scopes"] if users else None
        tenants.append({**tenant, "connections": users,
                        "granted_scopes": latest.split() if latest else []})
    return jsonify({"tenants": tenants})
