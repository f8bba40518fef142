"""The scheduler's housekeeping: the reconcile backstop, catching up after downtime, pruning the queue and events."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from app.core.timeutil import iso
from app.records import events
from app.records.services import Services
from subscriptions.reconcile import enqueue_reconcile

DONE_RETENTION_SECONDS = 86_400.0
DEAD_RETENTION_SECONDS = 14 * 86_400.0


def reconcile_due(services: Services, interval_seconds: float, now: datetime | None = None) -> int:
    """Queue a reconcile for every active connection not synced within ``interval_seconds``."""
    now = now or services.clock()
    cutoff = iso(now - timedelta(seconds=interval_seconds))
    rows = list(services.db().query(
        """
        SELECT c.id FROM connections c WHERE c.status = 'active' AND NOT EXISTS (
            SELECT 1 FROM delta_state d WHERE d.connection_id = c.id AND d.synced_at >= ?)
        """, [cutoff]))
    for row in rows:
        enqueue_reconcile(services, row["id"], "scheduled")
    return len(rows)


def reconcile_all(services: Services) -> int:
    """At start-up: catch up on whatever arrived while the service was down."""
    rows = list(services.db().query("SELECT id FROM connections WHERE status = 'active'"))
    for row in rows:
        enqueue_reconcile(services, row["id"], "startup")
    return len(rows)


def prune(services: Services, now: float | None = None) -> int:
    """Drop finished jobs after a day (dead letters after two weeks), and events after
    :data:`app.records.events.RETENTION_DAYS` (dead ones stay until retried)."""
    now = time.time() if now is None else now
    cutoff = iso(datetime.fromtimestamp(now, timezone.utc) - timedelta(days=events.RETENTION_DAYS))
    return (services.queue.prune(DONE_RETENTION_SECONDS, dead_older_than=DEAD_RETENTION_SECONDS, now=now)
            + events.prune(services.db(), older_than=cutoff))
