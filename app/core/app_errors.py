"""Problems only an operator can fix (the app registration was rejected): kept until a token request succeeds.

``/readyz`` and ``/admin`` show them; :mod:`app.microsoft.identity` records and clears them.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.core.timeutil import now_iso


def record(db: Database, code: str, message: str) -> None:
    now = now_iso()
    db.execute(
        "INSERT INTO app_errors (code, message, first_seen_at, last_seen_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (code) DO UPDATE SET message = excluded.message, last_seen_at = excluded.last_seen_at",
        [code, message[:500], now, now])


def clear(db: Database) -> None:
    """The app registration works (again)."""
    db.execute("DELETE FROM app_errors")


def current(db: Database) -> list[dict[str, Any]]:
    """The recorded problems, newest first."""
    return list(db.query("SELECT * FROM app_errors ORDER BY last_seen_at DESC"))
