"""Where each mailbox folder's delta sync stands: its deltaLink and the newest message seen."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.core.timeutil import now_iso


def load(db: Database, connection_id: int, folder: str) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM delta_state WHERE connection_id = ? AND folder = ?", [connection_id, folder]))
    return rows[0] if rows else {"delta_link": None, "last_received_at": None}


def save(db: Database, connection_id: int, folder: str, delta_link: str | None, last_received_at: str | None) -> None:
    """A sync of the folder finished: keep its new deltaLink (and the newest message, unless none came)."""
    db.execute(
        """
        INSERT INTO delta_state (connection_id, folder, delta_link, last_received_at, synced_at)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (connection_id, folder) DO UPDATE SET delta_link = excluded.delta_link,
            last_received_at = COALESCE(excluded.last_received_at, delta_state.last_received_at),
            synced_at = excluded.synced_at
        """, [connection_id, folder, delta_link, last_received_at, now_iso()])
