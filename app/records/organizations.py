"""Organizations: the records platform's customers, each owning one or more Entra tenants.

Records, connections and mail of one organization never reach another (ARCHITECTURE section 4,
"Isolation"). A connection belongs to the organization of its tenant (:func:`of_tenant`); a tenant
belongs to at most one organization, and a tenant assigned to none belongs to the default one
(:data:`DEFAULT_ID`), so a one-company deployment needs no set-up.
"""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from app.core.dialects import dialect_of
from app.core.errors import Conflict, Invalid, NotFound
from app.core.timeutil import now_iso
from app.records.consent import canonical_tenant_id

DEFAULT_ID = 1  # created by migration m007, which put every existing record in it
MAX_NAME_LENGTH = 200
MAX_TENANTS = 100


def of_tenant(db: Database, tenant_id: str) -> int:
    """The organization ``tenant_id`` belongs to."""
    rows = list(db.query("SELECT organization_id FROM organization_tenants WHERE tenant_id = ?", [tenant_id]))
    return rows[0]["organization_id"] if rows else DEFAULT_ID


def get(db: Database, organization_id: int) -> dict[str, Any]:
    """The organization as the API shows it; :class:`NotFound` when there is none."""
    rows = list(db.query("SELECT id, name, created_at, updated_at FROM organizations WHERE id = ?",
                         [organization_id]))
    if not rows:
        raise NotFound("organization_not_found", f"Organization {organization_id} does not exist.")
    return _shown(db, rows[0])


def all_(db: Database) -> list[dict[str, Any]]:
    return [_shown(db, row) for row in db.query("SELECT id, name, created_at, updated_at FROM organizations ORDER BY id")]


def create(db: Database, name: str, tenant_ids: list[str]) -> dict[str, Any]:
    tenants = _tenant_ids(tenant_ids)
    now = now_iso()
    with db.atomic():
        organization_id = db.execute("INSERT INTO organizations (name, created_at, updated_at) VALUES (?, ?, ?)"
                                     " RETURNING id", [name, now, now]).fetchone()[0]
        _assign(db, organization_id, tenants)
    return get(db, organization_id)


def update(db: Database, organization_id: int, *, name: str | None = None,
           tenant_ids: list[str] | None = None) -> dict[str, Any]:
    """Rename the organization, and/or make ``tenant_ids`` its tenants (replacing the ones it had)."""
    get(db, organization_id)
    tenants = None if tenant_ids is None else _tenant_ids(tenant_ids)
    with db.atomic():
        if name is not None:
            db.execute("UPDATE organizations SET name = ?, updated_at = ? WHERE id = ?", [name, now_iso(), organization_id])
        if tenants is not None:
            db.execute("DELETE FROM organization_tenants WHERE organization_id = ?", [organization_id])
            _assign(db, organization_id, tenants)
    return get(db, organization_id)


def check_exists(db: Database, organization_id: int) -> None:
    if not list(db.query("SELECT 1 FROM organizations WHERE id = ?", [organization_id])):
        raise Invalid("unknown_organization", f"Organization {organization_id} does not exist.",
                      field="organization_id")


def _assign(db: Database, organization_id: int, tenants: list[str]) -> None:
    json_values = dialect_of(db).json_values("?")
    taken = [row["tenant_id"] for row in db.query(
        f"SELECT tenant_id FROM organization_tenants WHERE tenant_id IN (SELECT value FROM {json_values})"
        " AND organization_id != ?", [json.dumps(tenants), organization_id])]
    if taken:
        raise Conflict("tenant_taken", f"Tenant(s) {', '.join(taken)} already belong to another organization.",
                       field="tenant_ids")
    db.execute("INSERT INTO organization_tenants (tenant_id, organization_id)"
               f" SELECT value, ? FROM {json_values}", [organization_id, json.dumps(tenants)])


def _tenant_ids(values: list[str]) -> list[str]:
    """The tenant ids, canonical (lower-case GUIDs) and without repeats; :class:`Invalid` otherwise."""
    if len(values) > MAX_TENANTS:
        raise Invalid("invalid_field", f"'tenant_ids' holds at most {MAX_TENANTS} tenants.", field="tenant_ids")
    canonical = [canonical_tenant_id(value) for value in values]
    bad = [value for value, tenant in zip(values, canonical) if tenant is None]
    if bad:
        raise Invalid("invalid_tenant_id", f"'tenant_ids' has values that are not tenant ids (GUIDs): "
                      f"{', '.join(repr(value[:64]) for value in bad[:5])}.", field="tenant_ids")
    return list(dict.fromkeys(tenant for tenant in canonical if tenant is not None))


def _shown(db: Database, row: dict[str, Any]) -> dict[str, Any]:
    tenants = [r["tenant_id"] for r in db.query(
        "SELECT tenant_id FROM organization_tenants WHERE organization_id = ? ORDER BY tenant_id", [row["id"]])]
    return {**row, "tenant_ids": tenants, "default": row["id"] == DEFAULT_ID}
