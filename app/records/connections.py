"""Connected mailboxes: saving a sign-in, their tokens (encrypted), and their state.

A connection is ``active`` (the service may touch the mailbox), ``reconnect_required`` (the grant is
gone: :func:`mark_reconnect_required`) or ``disconnected`` (the user disconnected: tokens wiped). Each
change emits its ``connection.*`` event in the same transaction.
"""

from __future__ import annotations

import logging

from sqlite_utils import Database

from app.core.crypto import Cipher
from app.core.db import write_transaction
from app.core.errors import Forbidden
from app.core.queue import JobQueue
from app.core.timeutil import now_iso
from app.microsoft.identity import Grant, SignIn
from app.records import consent, events, organizations, outbox, subscription_rows
from app.records.known_subscriptions import announce_change
from app.records.records import get_record
from app.records.services import Services

log = logging.getLogger(__name__)

DISCONNECTED_REASON = "disconnected by the user"


def save_connection(db: Database, cipher: Cipher, sign_in: SignIn, record_id: int, queue: JobQueue) -> int:
    """Store the connection (and its encrypted token cache) and queue its subscribe-and-backfill work,
    all in one transaction. Reconnecting reactivates the same connection.

    An account of a tenant of another organization than the record's is refused (:class:`Forbidden`,
    isolation rule 1) before anything is stored.
    """
    check_same_organization(db, sign_in.tenant_id, record_id)
    now = now_iso()
    with write_transaction(db):  # it reads before it writes: take the write lock first (app.core.db)
        consent.note_user_sign_in(db, sign_in.tenant_id,
                                  after_approval_request=consent.waited_for_approval(db, record_id),
                                  directory_roles=sign_in.directory_roles)
        rows = db.query(
            """
            INSERT INTO connections (tenant_id, user_id, email, display_name, status, status_reason, token_cache,
                                     granted_scopes, created_at, updated_at)
            VALUES (?, ?, ?, ?, 'active', NULL, ?, ?, ?, ?)
            ON CONFLICT (tenant_id, user_id) DO UPDATE SET email = excluded.email,
                display_name = excluded.display_name, status = 'active', status_reason = NULL,
                token_cache = excluded.token_cache, granted_scopes = excluded.granted_scopes,
                updated_at = excluded.updated_at
            RETURNING id
            """,
            [sign_in.tenant_id, sign_in.user_id, sign_in.email, sign_in.display_name,
             cipher.encrypt(sign_in.token_cache), sign_in.scopes, now, now],
        )
        connection_id = list(rows)[0]["id"]
        db.execute("INSERT INTO record_connections (record_id, connection_id, created_at) VALUES (?, ?, ?)"
                   " ON CONFLICT DO NOTHING",
                   [record_id, connection_id, now])
        queue.enqueue("connect", {"connection_id": connection_id, "record_id": record_id},
                      connection_id=connection_id)
        _emit(db, "connection.connected", connection_id, sign_in.tenant_id, sign_in.email, "active",
              record_id=record_id)
    return connection_id


def _emit(db: Database, kind: str, connection_id: int, tenant_id: str, email: str | None, status: str,
          **details: object) -> None:
    """Emit ``kind`` about the connection, for the organization of its tenant (in the caller's transaction)."""
    events.emit(db, [events.Event(kind, {"connection_id": connection_id, "tenant_id": tenant_id, "email": email,
                                         "status": status, **details},
                                  organization_id=organizations.of_tenant(db, tenant_id))])


def check_same_organization(db: Database, tenant_id: str, record_id: int) -> None:
    """Raise :class:`Forbidden` unless the tenant belongs to the record's organization."""
    record = get_record(db, record_id)
    if organizations.of_tenant(db, tenant_id) != record["organization_id"]:
        raise Forbidden("other_organization", f"The mailbox's tenant belongs to another organization than record "
                        f"{record_id}.")


def mark_reconnect_required(services: Services, connection_id: int, reason: str) -> None:
    """The user's grant is gone: stop touching the mailbox until they connect again.

    Subscriptions are removed locally (no token is left to delete them on Graph; Graph drops
    them itself), pending sends fail with the reason, and the record page offers Reconnect.
    """
    services.identity.forget(connection_id)
    db = services.db()
    with db.atomic():
        changed = db.execute("UPDATE connections SET status = 'reconnect_required', status_reason = ?, updated_at = ? "
                             "WHERE id = ? AND status = 'active' RETURNING tenant_id, email",
                             [reason, now_iso(), connection_id]).fetchall()
        for row in db.query("SELECT tenant_id FROM connections WHERE id = ?", [connection_id]):
            consent.note_refused_refresh(db, row["tenant_id"], reason)
        subscription_rows.remove_all(db, connection_id)
        outbox.fail_pending(db, connection_id, unusable_reason("reconnect_required", reason))
        for tenant_id, email in changed:  # the event's lock comes last (app.records.events)
            _emit(db, "connection.reconnect_required", connection_id, tenant_id, email, "reconnect_required",
                  reason=reason)
    log.warning("Connection needs reconnecting: %s", reason, extra={"connection_id": connection_id})


def mark_disconnected(db: Database, connection_id: int) -> None:
    """The user disconnected: wipe the tokens and fail the mailbox's unsent mail; keep the records' history."""
    with db.atomic():
        changed = db.execute(
            "UPDATE connections SET status = 'disconnected', status_reason = ?, token_cache = NULL, updated_at = ? "
            "WHERE id = ? AND status <> 'disconnected' RETURNING tenant_id, email",
            [DISCONNECTED_REASON, now_iso(), connection_id]).fetchall()
        announce_change(db)  # receivers stop trusting its subscriptions now, not when their cache lapses
        outbox.fail_pending(db, connection_id, unusable_reason("disconnected", DISCONNECTED_REASON))
        for tenant_id, email in changed:
            _emit(db, "connection.disconnected", connection_id, tenant_id, email, "disconnected",
                  reason=DISCONNECTED_REASON)


def unlink_record(db: Database, record_id: int) -> None:
    """Forget which mailboxes were connected from the record (a purge): the connections themselves stay,
    as they are their owners' mailboxes and may serve other records."""
    db.execute("DELETE FROM record_connections WHERE record_id = ?", [record_id])


def unusable_reason(status: str, reason: str | None) -> str:
    """Why mail of a connection in ``status`` cannot be sent, as the outbox shows it."""
    return f"{status}: {reason}"


class TokenCacheStore:
    """:class:`app.microsoft.identity.TokenCaches` over the ``connections`` table, encrypted with ``cipher``."""

    def __init__(self, db_factory, cipher: Cipher) -> None:
        self._db_factory, self._cipher = db_factory, cipher

    def load(self, connection_id: int) -> Grant | None:
        rows = list(self._db_factory().query(
            "SELECT tenant_id, user_id, status, token_cache FROM connections WHERE id = ?", [connection_id]))
        if not rows or rows[0]["status"] != "active" or rows[0]["token_cache"] is None:
            return None
        return Grant(rows[0]["tenant_id"], rows[0]["user_id"], self._cipher.decrypt_text(rows[0]["token_cache"]))

    def save(self, connection_id: int, token_cache: str) -> None:
        self._db_factory().execute("UPDATE connections SET token_cache = ? WHERE id = ?",
                                   [self._cipher.encrypt(token_cache), connection_id])


def reencrypt_tokens(db: Database, cipher: Cipher) -> int:
    """Re-encrypt every stored token cache with the newest key (``flask --app wsgi keys rotate``)."""
    rows = list(db.query("SELECT id, token_cache FROM connections WHERE token_cache IS NOT NULL"))
    for row in rows:
        db.execute("UPDATE connections SET token_cache = ? WHERE id = ?", [cipher.rotate(row["token_cache"]), row["id"]])
    return len(rows)
