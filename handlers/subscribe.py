"""Jobs that (re)create a connection's subscription: after connecting, and after one was lost."""

from __future__ import annotations

from app.core.queue import Job
from app.records.services import Services
from handlers.failures import graph_failures
from subscriptions.backfill import backfill_record
from subscriptions.manager import create_subscription
from subscriptions.reconcile import enqueue_reconcile


def _subscribe(services: Services, job: Job) -> bool:
    """Give an active connection a live subscription; False when the connection is not active."""
    connection_id = job.payload["connection_id"]
    db = services.db()
    rows = list(db.query("SELECT status FROM connections WHERE id = ?", [connection_id]))
    if not rows or rows[0]["status"] != "active":
        return False
    live = list(db.query("SELECT 1 FROM subscriptions WHERE connection_id = ? AND status = 'active'",
                         [connection_id]))
    if not live:
        with graph_failures(services, connection_id):
            create_subscription(services, connection_id, services.clock())
    return True


def handle_connect(services: Services, job: Job) -> None:
    """Subscribe the new connection, link the record's existing conversation, then catch up with delta."""
    if _subscribe(services, job):
        with graph_failures(services, job.connection_id):
            backfill_record(services, job.payload["connection_id"], job.payload["record_id"])
        enqueue_reconcile(services, job.payload["connection_id"], "connected")


def handle_subscribe(services: Services, job: Job) -> None:
    """Replace a lost or expired subscription, then reconcile the gap with delta."""
    if _subscribe(services, job):
        enqueue_reconcile(services, job.payload["connection_id"], job.payload.get("reason", "resubscribed"))
