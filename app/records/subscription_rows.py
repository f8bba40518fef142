"""The ``subscriptions`` table: what the service knows of each Graph subscription, and its state.

``active`` (the one live subscription of a connection), ``replaced`` (a newer one took over; still
routable until its expiry, for late deliveries), ``expired`` (renewal found it past expiry or gone:
a new one is queued) or ``removed``. ``clientState`` is stored encrypted. :mod:`subscriptions.manager`
talks to Graph and records the outcome here.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.core.crypto import Cipher
from app.core.timeutil import now_iso
from app.records.known_subscriptions import announce_change


def store_created(db: Database, connection_id: int, created: dict[str, Any], *, resource: str, change_type: str,
                  encrypted_client_state: bytes, expires_at: str, now: str) -> None:
    """Graph created ``created``: it becomes the connection's active subscription, replacing any other."""
    with db.atomic():
        db.execute(
            "UPDATE subscriptions SET status = 'replaced', replaced_by = ?, updated_at = ? "
            "WHERE connection_id = ? AND status = 'active'", [created["id"], now_iso(), connection_id])
        db.execute(
            """
            INSERT INTO subscriptions (id, connection_id, resource, change_type, client_state, status, expires_at,
                                       routable_until, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?)
            """,
            [created["id"], connection_id, resource, change_type, encrypted_client_state, expires_at, expires_at,
             now, now])
        announce_change(db, created["id"])  # a receiver that found it unknown a moment ago must look again


def renewed(db: Database, subscription_id: str, expires_at: str, now: str) -> None:
    db.execute(
        "UPDATE subscriptions SET expires_at = ?, routable_until = ?, renewed_at = ?, last_error = NULL, "
        "updated_at = ? WHERE id = ?", [expires_at, expires_at, now, now, subscription_id])


def note_error(db: Database, subscription_id: str, error: str) -> None:
    db.execute("UPDATE subscriptions SET last_error = ?, updated_at = ? WHERE id = ?",
               [error[:500], now_iso(), subscription_id])


def expire_active(db: Database, connection_id: int) -> None:
    """Renewal found the connection's subscription expired or gone on Graph."""
    db.execute("UPDATE subscriptions SET status = 'expired', updated_at = ? WHERE connection_id = ? "
               "AND status = 'active'", [now_iso(), connection_id])


def mark_removed(db: Database, subscription_id: str) -> None:
    """Graph said it removed this subscription (a ``subscriptionRemoved`` lifecycle event)."""
    db.execute("UPDATE subscriptions SET status = 'removed', updated_at = ? WHERE id = ?",
               [now_iso(), subscription_id])


def active_ids(db: Database, connection_id: int) -> list[str]:
    return [row["id"] for row in db.query(
        "SELECT id FROM subscriptions WHERE connection_id = ? AND status = 'active'", [connection_id])]


def remove_all(db: Database, connection_id: int) -> None:
    """Stop routing the connection's notifications: every active or replaced subscription is removed."""
    now = now_iso()
    db.execute("UPDATE subscriptions SET status = 'removed', routable_until = ?, updated_at = ? "
               "WHERE connection_id = ? AND status IN ('active', 'replaced')", [now, now, connection_id])
    announce_change(db)


def reencrypt_client_states(db: Database, cipher: Cipher) -> int:
    """Re-encrypt every stored clientState with the newest key (``flask --app wsgi keys rotate``)."""
    rows = list(db.query("SELECT id, client_state FROM subscriptions WHERE client_state IS NOT NULL"))
    for row in rows:
        db.execute("UPDATE subscriptions SET client_state = ? WHERE id = ?",
                   [cipher.rotate(row["client_state"]), row["id"]])
    return len(rows)
