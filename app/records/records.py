"""Records: the business files (vendor files, contracts, cases) conversations belong to."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.core.errors import Forbidden, NotFound
from app.core.timeutil import now_iso
from app.records import organizations


def create_record(db: Database, title: str, external_id: str | None = None, *,
                  organization_id: int = organizations.DEFAULT_ID) -> dict[str, Any]:
    """A new record of ``organization_id`` (the default organization unless named)."""
    organizations.check_exists(db, organization_id)
    record_id = db.execute("INSERT INTO records (title, external_id, organization_id, created_at)"
                           " VALUES (?, ?, ?, ?) RETURNING id",
                           [title, external_id, organization_id, now_iso()]).fetchone()[0]
    return get_record(db, record_id)


def get_record(db: Database, record_id: int) -> dict[str, Any]:
    """The record with ``record_id``; :class:`NotFound` when there is none."""
    rows = list(db.query("SELECT id, title, external_id, organization_id, created_at FROM records WHERE id = ?",
                         [record_id]))
    if not rows:
        raise NotFound("record_not_found", f"Record {record_id} does not exist.")
    return rows[0]


def record_exists(db: Database, record_id: int) -> bool:
    return bool(list(db.query("SELECT 1 FROM records WHERE id = ?", [record_id])))


def record_for_tenant(db: Database, record_id: int, tenant_id: str) -> dict[str, Any]:
    """The record, for a person of ``tenant_id``: isolation rule 4 (ARCHITECTURE section 4), a person opens
    only records of their organization. :class:`NotFound` when there is none, :class:`Forbidden` when the
    record is another organization's."""
    record = get_record(db, record_id)
    if record["organization_id"] != organizations.of_tenant(db, tenant_id):
        raise Forbidden("other_organization_record",
                        f"Record {record_id} belongs to another organization than tenant {tenant_id}'s.")
    return record


def delete_record(db: Database, record_id: int) -> None:
    """Delete the record's own row, once nothing refers to it (:mod:`app.records.purge` sees to that);
    :class:`NotFound` when there is none."""
    if not db.execute("DELETE FROM records WHERE id = ?", [record_id]).rowcount:
        raise NotFound("record_not_found", f"Record {record_id} does not exist.")
