"""The schema, as an ordered list of named migrations applied at start-up.

Times are ISO-8601 UTC strings (``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``, which sort correctly as
text), except in the ``jobs``, ``leases``, ``rate_limits`` and ``login_sessions`` tables, and the
delivery times of ``events``, whose hot paths compare epoch seconds.
Append new steps; never edit an applied one.

The DDL is written in SQLite's types; :meth:`app.core.dialects.Dialect.ddl` spells it for
PostgreSQL, so both engines have the same versions. Applied names are kept in the table sqlite-utils'
migrations used (``_sqlite_migrations``, so a deployment of an earlier version upgrades in place), on
PostgreSQL in ``schema_migrations``. Several processes may start at once: the whole upgrade is one
write transaction, so one applies it and the others then find nothing pending.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone

from sqlite_utils import Database

from app.core.db import STORAGE_ERRORS, unavailable_retry_after, write_transaction
from app.core.dialects import dialect_of
from app.core.timeutil import now_iso

log = logging.getLogger(__name__)

MIGRATION_SET = "outlook_integration"
# A process started while its database is away (a restart, a failover; gunicorn replacing a web
# process meanwhile) waits this long for it rather than failing its start: gunicorn takes a web process
# that fails to boot as a reason to stop them all.
STARTUP_WAIT_SECONDS = 60.0
_steps: list[tuple[str, Callable[[Database], None]]] = []


def migrations(*, name: str) -> Callable[[Callable[[Database], None]], Callable[[Database], None]]:
    """Register the decorated function as the next migration, called ``name``."""

    def register(step: Callable[[Database], None]) -> Callable[[Database], None]:
        _steps.append((name, step))
        return step

    return register


def _run(db: Database, script: str) -> None:
    """Run each statement of ``script``, in this engine's types, inside the migration's transaction.

    ``executescript`` would commit first, so a failing migration could leave half a schema.
    """
    for statement in dialect_of(db).ddl(script).split(";"):
        if statement.strip():
            db.execute(statement)


@migrations(name="m001_initial")
def m001_initial(db: Database) -> None:
    _run(
        db,
        """
        -- Entra ID tenants seen by the service and what their admins have granted.
        CREATE TABLE tenants (
            id TEXT PRIMARY KEY,
            consent_state TEXT NOT NULL DEFAULT 'unknown',
                -- unknown | user_consented | admin_consented | awaiting_approval | denied
            consent_detail TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        -- A user's mailbox the user explicitly connected, keyed by (tenant id, object id).
        CREATE TABLE connections (
            id INTEGER PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id),
            user_id TEXT NOT NULL,
            email TEXT,
            display_name TEXT,
            status TEXT NOT NULL DEFAULT 'active',  -- active | reconnect_required | disconnected
            status_reason TEXT,
            token_cache BLOB,                       -- msal SerializableTokenCache, encrypted
            granted_scopes TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (tenant_id, user_id)
        );

        CREATE TABLE records (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            external_id TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX records_external_id ON records(external_id);

        -- Sign-ins that ended at "admin approval required" (Option 2) or a declined consent.
        -- Entra's error redirect names no tenant, so the record remembers the attempt.
        CREATE TABLE consent_requests (
            id INTEGER PRIMARY KEY,
            record_id INTEGER REFERENCES records(id),
            outcome TEXT NOT NULL,                  -- approval_requested | approval_required | declined
            error_code TEXT,
            created_at TEXT NOT NULL
        );

        -- Which mailboxes were connected from which record.
        CREATE TABLE record_connections (
            record_id INTEGER NOT NULL REFERENCES records(id),
            connection_id INTEGER NOT NULL REFERENCES connections(id),
            created_at TEXT NOT NULL,
            PRIMARY KEY (record_id, connection_id)
        );

        -- The record's conversation: one row per email, whichever mailboxes hold copies.
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            record_id INTEGER NOT NULL REFERENCES records(id),
            internet_message_id TEXT NOT NULL,
            subject TEXT,
            from_address TEXT,
            from_name TEXT,
            to_addresses TEXT NOT NULL DEFAULT '[]',   -- JSON list of {"name", "address"}
            cc_addresses TEXT NOT NULL DEFAULT '[]',
            sent_at TEXT,
            direction TEXT NOT NULL,                   -- inbound | outbound
            source TEXT NOT NULL,                      -- upload | graph | sent
            automated INTEGER NOT NULL DEFAULT 0,
            in_reply_to TEXT,
            references_ids TEXT NOT NULL DEFAULT '[]', -- JSON list of Message-IDs
            body_type TEXT,
            body TEXT,
            body_preview TEXT,
            deleted_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (record_id, internet_message_id)
        );
        CREATE INDEX messages_record_sent ON messages(record_id, sent_at);

        -- Where a linked message lives in a connected mailbox (Graph immutable id), one row per record
        -- the email belongs to, so a deletion in the mailbox marks every record's entry.
        CREATE TABLE message_copies (
            connection_id INTEGER NOT NULL REFERENCES connections(id),
            graph_id TEXT NOT NULL,
            message_id INTEGER NOT NULL REFERENCES messages(id),
            conversation_id TEXT,
            change_key TEXT,
            received_at TEXT,
            deleted_at TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (connection_id, graph_id, message_id)
        );
        CREATE INDEX message_copies_message ON message_copies(message_id);

        -- Thread keys: the Message-IDs known for a record (generated = the service minted it).
        CREATE TABLE thread_message_ids (
            message_id TEXT NOT NULL,
            record_id INTEGER NOT NULL REFERENCES records(id),
            generated INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (message_id, record_id)
        );

        -- Thread keys: Graph conversationIds seen on linked messages, per mailbox.
        CREATE TABLE thread_conversations (
            connection_id INTEGER NOT NULL REFERENCES connections(id),
            conversation_id TEXT NOT NULL,
            record_id INTEGER NOT NULL REFERENCES records(id),
            PRIMARY KEY (connection_id, conversation_id, record_id)
        );

        -- Graph change-notification subscriptions. The clientState is stored encrypted.
        CREATE TABLE subscriptions (
            id TEXT PRIMARY KEY,
            connection_id INTEGER NOT NULL REFERENCES connections(id),
            resource TEXT NOT NULL,
            change_type TEXT NOT NULL,
            client_state BLOB NOT NULL,
            status TEXT NOT NULL DEFAULT 'active',  -- active | replaced | removed | expired
            expires_at TEXT NOT NULL,
            routable_until TEXT NOT NULL,           -- notifications accepted until then
            replaced_by TEXT,
            renewed_at TEXT,
            reauthorized_at TEXT,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX subscriptions_connection ON subscriptions(connection_id);
        CREATE INDEX subscriptions_expiry ON subscriptions(status, expires_at);

        -- The durable work queue: notifications, lifecycle events, sends, subscribe, reconcile.
        -- Payloads hold ids only: never a subject, body or address.
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            dedupe_key TEXT UNIQUE,
            connection_id INTEGER,
            payload TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL DEFAULT 'queued',   -- queued | running | done | dead
            attempts INTEGER NOT NULL DEFAULT 0,
            run_after REAL NOT NULL,
            lease_owner TEXT,
            lease_expires_at REAL,
            last_error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            finished_at REAL
        );
        CREATE INDEX jobs_ready ON jobs(state, run_after);
        CREATE INDEX jobs_lease ON jobs(state, lease_expires_at);

        -- Send requests, one per Idempotency-Key.
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            idempotency_key TEXT NOT NULL UNIQUE,
            record_id INTEGER NOT NULL REFERENCES records(id),
            connection_id INTEGER NOT NULL REFERENCES connections(id),
            request TEXT NOT NULL,                  -- JSON of the API body
            automated INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'queued',  -- queued | sending | sent | failed
            error TEXT,
            draft_id TEXT,
            internet_message_id TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sent_at TEXT
        );

        -- Delta-query state per mailbox folder.
        CREATE TABLE delta_state (
            connection_id INTEGER NOT NULL REFERENCES connections(id),
            folder TEXT NOT NULL,
            delta_link TEXT,
            last_received_at TEXT,
            synced_at TEXT,
            PRIMARY KEY (connection_id, folder)
        );

        -- OAuth flows in progress (msal's flow dict, encrypted), keyed by an opaque session id.
        CREATE TABLE auth_flows (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,                     -- connect | admin_consent
            record_id INTEGER,
            flow BLOB NOT NULL,
            expires_at TEXT NOT NULL
        );

        -- Leases (the scheduler leader) and heartbeats (workers), in epoch seconds.
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE TABLE heartbeats (
            name TEXT PRIMARY KEY,
            beat_at REAL NOT NULL
        );

        -- Problems an operator must fix (for example an expired client secret).
        CREATE TABLE app_errors (
            code TEXT PRIMARY KEY,
            message TEXT NOT NULL,
            first_seen_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL
        );
        """
    )


@migrations(name="m002_inbox")
def m002_inbox(db: Database) -> None:
    _run(
        db,
        """
        -- Notification deliveries as the receiver acknowledged them: one row per delivery, a JSON
        -- array of its jobs ([kind, dedupe_key, connection_id, payload, run_after] each). No index
        -- but the row id, so the acknowledgement is a cheap append. Workers move the rows into
        -- ``jobs`` (where duplicates are dropped) before they claim.
        CREATE TABLE inbox (
            id INTEGER PRIMARY KEY,
            received_at REAL NOT NULL,
            jobs TEXT NOT NULL
        );
        """
    )


@migrations(name="m003_rate_limits")
def m003_rate_limits(db: Database) -> None:
    _run(
        db,
        """
        -- Events counted against a rate limit (failed operator sign-ins, sign-in starts), per key
        -- (a client address, or '*' for all clients) and window, in epoch seconds. Rows of ended
        -- windows are deleted as new events arrive.
        CREATE TABLE rate_limits (
            name TEXT NOT NULL,
            key TEXT NOT NULL,
            hits INTEGER NOT NULL,
            window_ends_at REAL NOT NULL,
            PRIMARY KEY (name, key)
        );
        CREATE INDEX rate_limits_window ON rate_limits(window_ends_at)
        """
    )


@migrations(name="m004_login_sessions")
def m004_login_sessions(db: Database) -> None:
    _run(
        db,
        """
        -- Signed-in sessions (the operator's): the SHA-256 of the id the session cookie holds, so
        -- signing out ends every copy of the cookie. Epoch seconds.
        CREATE TABLE login_sessions (
            id_hash TEXT PRIMARY KEY,
            principal TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )
        """
    )


@migrations(name="m005_drop_auth_flows")
def m005_drop_auth_flows(db: Database) -> None:
    """Sign-in flows now travel encrypted in the browser's session cookie; a flow in progress
    during the upgrade ends at "Sign-in expired", and the user clicks Connect Outlook again."""
    db.execute("DROP TABLE auth_flows")


@migrations(name="m006_message_body_truncated")
def m006_message_body_truncated(db: Database) -> None:
    _run(
        db,
        """
        -- 1 when the stored body is the first MAX_BODY_BYTES (1 MB) of a longer one.
        ALTER TABLE messages ADD COLUMN body_truncated INTEGER NOT NULL DEFAULT 0
        """
    )


@migrations(name="m007_organizations")
def m007_organizations(db: Database) -> None:
    _run(
        db,
        """
        -- The records platform's customers. Row 1 is the default organization: it holds every tenant
        -- not assigned to another, so a one-company deployment needs no set-up.
        CREATE TABLE organizations (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        -- The tenants assigned to an organization (a tenant belongs to at most one).
        CREATE TABLE organization_tenants (
            tenant_id TEXT PRIMARY KEY,
            organization_id INTEGER NOT NULL REFERENCES organizations(id)
        );
        CREATE INDEX organization_tenants_organization ON organization_tenants(organization_id);

        -- Every existing record belongs to the default organization. (SQLite adds a column with a
        -- REFERENCES clause only with a NULL default while foreign keys are on: the domain checks it.)
        ALTER TABLE records ADD COLUMN organization_id INTEGER NOT NULL DEFAULT 1;
        CREATE INDEX records_organization ON records(organization_id)
        """
    )
    now = now_iso()
    db.execute("INSERT INTO organizations (id, name, created_at, updated_at) VALUES (1, 'Default organization', ?, ?)",
               [now, now])

@migrations(name="m008_mailbox_slots")
def m008_mailbox_slots(db: Database) -> None:
    _run(
        db,
        """
        -- Graph requests in flight per mailbox over every process sharing the store (app.core.mailbox_slots):
        -- a row per slot held, by one request (hold) of one process, until expires_at (epoch seconds),
        -- which the process pushes back while it lives.
        CREATE TABLE mailbox_slots (
            mailbox TEXT NOT NULL,
            slot INTEGER NOT NULL,
            process TEXT NOT NULL,
            hold INTEGER NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (mailbox, slot)
        );
        CREATE INDEX mailbox_slots_process ON mailbox_slots(process)
        """
    )


@migrations(name="m009_attachments")
def m009_attachments(db: Database) -> None:
    _run(
        db,
        """
        -- The attachments of a record's thread entry (app.records.attachments): file attachments with
        -- their bytes (in attachment_content), attached Outlook items and cloud links as what they are.
        CREATE TABLE attachments (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages(id),
            source_key TEXT NOT NULL,       -- Graph's attachment id, or the MIME part's position in an upload
            kind TEXT NOT NULL,             -- file | item | reference
            name TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            inline INTEGER NOT NULL DEFAULT 0,
            content_id TEXT,                -- for cid: references from an HTML body
            source_url TEXT,                -- a reference attachment's link
            skipped_reason TEXT,            -- why the bytes are not kept (too_large, item, reference, unavailable)
            created_at TEXT NOT NULL,
            UNIQUE (message_id, source_key)
        );

        -- The bytes of a kept file attachment, apart so that listing a thread never reads them.
        CREATE TABLE attachment_content (
            attachment_id INTEGER NOT NULL PRIMARY KEY REFERENCES attachments(id),
            content BLOB NOT NULL
        );

        -- A record's sends, for its page (and the page's live updates, app.records.live).
        CREATE INDEX outbox_record ON outbox(record_id)
        """
    )


@migrations(name="m010_outbox_attachments")
def m010_outbox_attachments(db: Database) -> None:
    _run(
        db,
        """
        -- The files a send request attaches (app.records.outbox), in the order its request lists them.
        CREATE TABLE outbox_attachments (
            outbox_id INTEGER NOT NULL REFERENCES outbox(id),
            position INTEGER NOT NULL,
            content BLOB NOT NULL,
            PRIMARY KEY (outbox_id, position)
        )
        """
    )


@migrations(name="m011_events")
def m011_events(db: Database) -> None:
    _run(
        db,
        """
        -- What happened, for the records platform (app.records.events): written in the transaction of
        -- the change it describes, POSTed to EVENTS_URL until delivered (or dead) and listed by
        -- GET /api/events in id order, which is commit order. Delivery times are epoch seconds.
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            webhook_id TEXT NOT NULL,       -- the webhook-id header, the same on every attempt
            type TEXT NOT NULL,
            organization_id INTEGER NOT NULL,
            record_id INTEGER,              -- the record it is about, if any: a purge of the record drops it
            data TEXT NOT NULL,             -- JSON of ids and states: never a body, a token or a secret
            created_at TEXT NOT NULL,       -- the body's timestamp
            state TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | dead
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            lease_owner TEXT,
            lease_expires_at REAL,
            last_attempt_at REAL,
            last_error TEXT,
            delivered_at REAL
        );
        CREATE INDEX events_due ON events(state, next_attempt_at);
        CREATE INDEX events_record ON events(record_id)
        """
    )


def migrate(db: Database) -> list[str]:
    """Apply pending migrations; return the names applied."""
    dialect = dialect_of(db)
    table = dialect.migrations_table
    with write_transaction(db):
        _run(db, f"""
            CREATE TABLE IF NOT EXISTS {table} (
                id INTEGER PRIMARY KEY, migration_set TEXT, name TEXT, applied_at TEXT);
            CREATE UNIQUE INDEX IF NOT EXISTS idx_{table}_migration_set_name ON {table} (migration_set, name)""")
        done = {row["name"] for row in db.query(f"SELECT name FROM {table} WHERE migration_set = ?", [MIGRATION_SET])}
        pending = [(name, step) for name, step in _steps if name not in done]
        for name, step in pending:
            step(db)
            db.execute(f"INSERT INTO {table} (migration_set, name, applied_at) VALUES (?, ?, ?)",
                       [MIGRATION_SET, name, str(datetime.now(timezone.utc))])
        if pending:
            dialect.after_bulk_insert(db)
    return [name for name, _ in pending]


def migrate_at_start(db: Database, *, wait_seconds: float = STARTUP_WAIT_SECONDS,
                     sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """:func:`migrate`, waiting up to ``wait_seconds`` for a store that cannot take it yet (one that
    is down, restarting or busy); any other error, or one that outlasts the wait, is raised."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return migrate(db)
        except STORAGE_ERRORS as e:
            pause = unavailable_retry_after(e)
            if pause is None or time.monotonic() + pause > deadline:
                raise
            log.warning("The store cannot take the schema check yet (%s); trying again in %d s", e, pause)
            sleep(pause)
