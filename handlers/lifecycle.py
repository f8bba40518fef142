"""Lifecycle events: keep the subscription alive and fill any gap with delta.

- ``reauthorizationRequired``: renew with PATCH, which also reauthorizes. The service never calls
  ``/reauthorize``, so a PATCH and a reauthorize can never meet within Graph's 10-minute window.
- ``subscriptionRemoved``: create a new subscription, then reconcile.
- ``missed``: reconcile.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from app.core.queue import Job
from app.core.timeutil import parse_iso
from app.records import subscription_rows
from app.records.services import Services
from handlers.failures import graph_failures
from subscriptions.manager import create_subscription, renew_subscription
from subscriptions.reconcile import enqueue_reconcile

log = logging.getLogger(__name__)

RENEWED_RECENTLY = timedelta(minutes=1)  # Graph sends reauthorizationRequired repeatedly; one PATCH answers all


def handle_lifecycle(services: Services, job: Job) -> None:
    subscription_id, event = job.payload["subscription_id"], job.payload["event"]
    rows = list(services.db().query(
        "SELECT s.*, c.status AS connection_status FROM subscriptions s JOIN connections c ON c.id = s.connection_id "
        "WHERE s.id = ?", [subscription_id]))
    if not rows or rows[0]["connection_status"] != "active":
        return
    subscription = rows[0]
    connection_id = subscription["connection_id"]
    log.info("Lifecycle: %s", event, extra={"connection_id": connection_id, "subscription_id": subscription_id})
    now = services.clock()
    with graph_failures(services, connection_id):
        if event == "reauthorizationRequired" and subscription["status"] == "active":
            renewed = subscription["renewed_at"]
            if renewed is None or now - parse_iso(renewed) > RENEWED_RECENTLY:
                renew_subscription(services, subscription, now)
        elif event == "subscriptionRemoved" and subscription["status"] == "active":
            subscription_rows.mark_removed(services.db(), subscription_id)
            create_subscription(services, connection_id, now)
            enqueue_reconcile(services, connection_id, "subscription_removed")
        elif event == "missed":
            enqueue_reconcile(services, connection_id, "missed")
