"""Jobs that (re)create a connection's subscription: after connecting, and after one was lost."""

from __future__ import annotations

from app.services import Services
from handlers.failures import graph_failures
from handlers.queue import Job
from subscriptions.manager import create_subscription
from subscriptions.reconcile import backfill_record, enqueue_reconcile


def _active(services: Services, connection_id: int) -> bool:
    rows = list(services.db().query("SELECT status FROM connections WHERE id = ?", [connection_id]))
    return bool(rows) and rows[0]["status"] == "active"


def _has_live_subscription(services: Services, connection_id: int) -> bool:
    return bool(list(services.db().query(
        "SELECT 1 FROM subscriptions WHERE connection_id = ? AND status = 'active'", [connection_id])))


def handle_connect(services: Services, job: Job) -> None:
    """Subscribe the new connection, link the record's existing conversation, then catch up with delta."""
    connection_id = job.payload["connection_id"]
    if not _active(services, connection_id):
        return
    with graph_failures(services, connection_id):
        if not _has_live_subscription(services, connection_id):
            create_subscription(services, connection_id, services.clock())
        backfill_record(services, connection_id, job.payload["record_id"])
    enqueue_reconcile(services, connection_id, "connected")


def handle_subscribe(services: Services, job: Job) -> None:
    """Replace a lost or expired subscription, then reconcile the gap with delta."""
    connection_id = job.payload["connection_id"]
    if not _active(services, connection_id):
        return
    with graph_failures(services, connection_id):
        if not _has_live_subscription(services, connection_id):
            create_subscription(services, connection_id, services.clock())
    enqueue_reconcile(services, connection_id, job.payload.get("reason", "resubscribed"))
