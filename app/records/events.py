"""Events for the records platform: the one module that writes the ``events`` table.

An event says what changed (``message.linked``, ``send.failed``, ``connection.reconnect_required``…)
and names the ids the platform needs, never a body, token or secret. Each one is written by
:func:`emit` inside the transaction of the change it describes, so a crash loses or invents none.
Its life: ``pending`` → ``delivered`` (a 2xx from ``EVENTS_URL``), or ``dead`` once the delivery
schedule (``handlers.event_delivery``) runs out; :func:`retry_dead` makes dead ones pending again.
A worker takes due events under a lease (:func:`claim`), like the job queue, so several processes
never deliver one at the same time, and only the lease holder settles it.

``GET /api/events`` reads them in id order (:func:`page`), the cursor being the last id read. That is
also commit order: SQLite has one writer at a time, and on PostgreSQL every transaction that emits
takes one lock (:data:`COMMIT_ORDER_LOCK`) at its last step, so no event can become visible behind
an id a reader has already passed. Emitting is each transaction's last write, so the lock is held
only for its commit.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlite_utils import Database

from app.core.dialects import dialect_of
from app.core.timeutil import now_iso, parse_iso

TYPES = ("message.linked", "message.updated", "message.deleted", "send.sent", "send.failed",
         "connection.connected", "connection.reconnect_required", "connection.disconnected",
         "consent.awaiting_approval")
COMMIT_ORDER_LOCK = 0x6576_6E74  # "evnt"
# The oldest delivered (or never delivered, with EVENTS_URL unset) events are pruned after this many
# days; the pull API's history reaches as far back. Dead ones stay until retried.
RETENTION_DAYS = 30
_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


class Event(NamedTuple):
    """An event to emit. ``organization_id`` None: the organization of ``data["record_id"]``."""

    type: str
    data: dict[str, Any]
    organization_id: int | None = None


class EventStats(NamedTuple):
    pending: int
    failing: int
    """Pending events whose last attempt failed (waiting for their next one)."""
    dead: int
    oldest_pending_age: float
    """Seconds the oldest pending event has waited since it happened (0.0 when none is): the delivery lag."""


def emit(db: Database, events: Iterable[Event]) -> None:
    """Write ``events`` in one statement, in the caller's transaction (call it as its last write)."""
    rows = list(events)
    if not rows:
        return
    unknown = [event.type for event in rows if event.type not in TYPES]
    if unknown:
        raise ValueError(f"unknown event type {unknown[0]!r}")
    dialect_of(db).lock_until_commit(db, COMMIT_ORDER_LOCK)
    stamp, due = now_iso(), time.time()
    values = ", ".join(["(?, ?, coalesce(?, (SELECT organization_id FROM records WHERE id = ?)), ?, ?, ?, ?)"]
                       * len(rows))
    db.execute(
        "INSERT INTO events (webhook_id, type, organization_id, record_id, data, created_at, next_attempt_at)"
        f" VALUES {values}",
        [value for event in rows for value in (
            f"evt_{uuid.uuid4().hex}", event.type, event.organization_id, event.data.get("record_id"),
            event.data.get("record_id"), _JSON(event.data), stamp, due)])


def forget_record(db: Database, record_id: int) -> None:
    """Drop the events about a record being purged (:mod:`app.records.purge`): they name its messages'
    Message-IDs, which must go with its mail. Those not yet delivered are not delivered: the platform
    deleted the record. A reader of ``GET /api/events`` sees a gap in positions, which it skips."""
    db.execute("DELETE FROM events WHERE record_id = ?", [record_id])


def body(row: dict[str, Any]) -> dict[str, Any]:
    """The event as the platform receives it (POSTed, and in the pull API with its ``id``)."""
    return {"type": row["type"], "timestamp": row["created_at"], "organization_id": row["organization_id"],
            "data": json.loads(row["data"])}


def encoded(row: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed) for ``row``: the same on every attempt."""
    return _JSON(body(row)).encode()


def page(db: Database, *, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Up to ``limit`` events after id ``after``, oldest first, each with its ``id`` (its webhook-id, so
    a platform that also takes the POSTs can tell them apart), and the id to read on from."""
    rows = list(db.query("SELECT id, webhook_id, type, organization_id, data, created_at FROM events WHERE id > ?"
                         " ORDER BY id LIMIT ?", [after, limit]))
    return [{"id": row["webhook_id"], **body(row)} for row in rows], rows[-1]["id"] if rows else after


def claim(db: Database, owner: str, *, lease_seconds: float, limit: int, now: float) -> list[dict[str, Any]]:
    """Lease up to ``limit`` due pending events to ``owner`` (oldest due first), in one statement.

    As in :mod:`app.core.queue`: on SQLite the statement takes the write lock before it reads; on
    PostgreSQL concurrent claimers skip each other's rows.
    """
    free = "state = 'pending' AND next_attempt_at <= :now AND (lease_expires_at IS NULL OR lease_expires_at < :now)"
    rows = db.query(
        f"WITH picked AS MATERIALIZED (SELECT id FROM events WHERE {free} ORDER BY next_attempt_at, id"
        f" LIMIT :limit{dialect_of(db).skip_locked})"
        " UPDATE events SET lease_owner = :owner, lease_expires_at = :now + :lease"
        f" WHERE {free} AND id IN (SELECT id FROM picked) RETURNING *",
        {"owner": owner, "lease": lease_seconds, "limit": limit, "now": now})
    return sorted(rows, key=lambda row: (row["next_attempt_at"], row["id"]))


_UNLEASE = "lease_owner = NULL, lease_expires_at = NULL"


def delivered(db: Database, event_id: int, owner: str, *, now: float) -> bool:
    """The receiver took it; False when ``owner`` no longer held the lease."""
    return _settle(db, event_id, owner, "state = 'delivered', attempts = attempts + 1, last_attempt_at = :now,"
                   " delivered_at = :now, last_error = NULL", now=now)


def failed(db: Database, event_id: int, owner: str, error: str, *, retry_at: float | None, now: float) -> bool:
    """An attempt failed with ``error``: try again at ``retry_at``, or (None) the event is dead."""
    state = "'dead'" if retry_at is None else "'pending'"
    return _settle(db, event_id, owner, f"state = {state}, attempts = attempts + 1, last_attempt_at = :now,"
                   " last_error = :error, next_attempt_at = coalesce(:retry_at, next_attempt_at)",
                   now=now, error=error[:500], retry_at=retry_at)


def release(db: Database, event_ids: Sequence[int], owner: str) -> None:
    """Hand back claimed events not attempted (their lease would not have lasted the attempt)."""
    dialect = dialect_of(db)
    db.execute(f"UPDATE events SET {_UNLEASE} WHERE lease_owner = :owner AND id IN"
               f" (SELECT {dialect.json_integer('value')} FROM {dialect.json_values(':ids')})",
               {"owner": owner, "ids": json.dumps(list(event_ids))})


def _settle(db: Database, event_id: int, owner: str, assignments: str, **params: Any) -> bool:
    return db.execute(f"UPDATE events SET {assignments}, {_UNLEASE} WHERE id = :id AND lease_owner = :owner"
                      " AND state = 'pending'", {"id": event_id, "owner": owner, **params}).rowcount == 1


def retry_dead(db: Database, ids: Sequence[int | str] | None = None, *, now: float | None = None) -> int:
    """Make dead events pending again with a fresh schedule: those in ``ids`` (ids or webhook-ids), or
    all; return how many."""
    chosen = "" if ids is None else (f" AND (CAST(id AS TEXT) IN (SELECT value FROM {dialect_of(db).json_values(':ids')})"
                                     f" OR webhook_id IN (SELECT value FROM {dialect_of(db).json_values(':ids')}))")
    return db.execute(f"UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = :now, last_error = NULL"
                      f" WHERE state = 'dead'{chosen}",
                      {"now": time.time() if now is None else now,
                       "ids": json.dumps([str(i) for i in ids or []])}).rowcount


def dead(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    """The most recently failed dead events first."""
    return list(db.query("SELECT id, webhook_id, type, attempts, last_error FROM events WHERE state = 'dead'"
                         " ORDER BY last_attempt_at DESC, id DESC LIMIT ?", [limit]))


def stats(db: Database, *, now: float | None = None) -> EventStats:
    """Counts of pending, failing and dead events and the delivery lag."""
    row = db.execute(
        "SELECT coalesce(sum(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0),"
        " coalesce(sum(CASE WHEN state = 'pending' AND attempts > 0 THEN 1 ELSE 0 END), 0),"
        " coalesce(sum(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0),"
        " min(CASE WHEN state = 'pending' THEN created_at END) FROM events WHERE state IN ('pending', 'dead')").fetchone()
    oldest = row[3]
    now = time.time() if now is None else now
    age = 0.0 if oldest is None else max(0.0, now - parse_iso(oldest).timestamp())
    return EventStats(int(row[0]), int(row[1]), int(row[2]), age)


def prune(db: Database, *, older_than: str) -> int:
    """Delete events that happened before ``older_than`` (ISO), but dead ones and the newest event
    (whose id keeps the next one's above every cursor handed out)."""
    return db.execute("DELETE FROM events WHERE created_at < ? AND state <> 'dead'"
                      " AND id < (SELECT max(id) FROM events)", [older_than]).rowcount
