"""Named leases in the database: whoever holds an unexpired row may act (the scheduler leader, a token refresh)."""

from __future__ import annotations

from sqlite_utils import Database


def acquire_lease(db: Database, name: str, owner: str, ttl: float, now: float) -> bool:
    """Take or extend lease ``name`` for ``owner``; True when ``owner`` holds it afterwards."""
    rows = db.query(
        """
        INSERT INTO leases (name, owner, expires_at) VALUES (:name, :owner, :expires)
        ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
        WHERE leases.owner = excluded.owner OR leases.expires_at < :now
        RETURNING owner
        """,
        {"name": name, "owner": owner, "expires": now + ttl, "now": now},
    )
    return bool(list(rows))


def release_lease(db: Database, name: str, owner: str) -> None:
    db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", [name, owner])


def holder(db: Database, name: str, now: float) -> str | None:
    """Who holds lease ``name`` now, if anyone."""
    rows = list(db.query("SELECT owner FROM leases WHERE name = ? AND expires_at >= ?", [name, now]))
    return rows[0]["owner"] if rows else None
