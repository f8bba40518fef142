"""Renewing subscriptions before they expire: due ones, bounded concurrency, jitter (each renewal waits
for its tenant's share of Graph's subscription write limit: :func:`subscriptions.manager.renew_subscription`)."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from app.core import metrics
from app.core.timeutil import parse_iso
from app.microsoft.failures import FAILURES, Kind, classify
from app.records import subscription_rows
from app.records.connections import mark_reconnect_required
from app.records.services import Services
from subscriptions.manager import renew_subscription

log = logging.getLogger(__name__)

RENEW_WITHIN = timedelta(hours=24)
RENEWAL_CONCURRENCY = 8

def due_subscriptions(services: Services, now: datetime) -> list[dict[str, Any]]:
    """Active subscriptions past half their lifetime or within 24 hours of expiry."""
    rows = services.db().query(
        """
        SELECT s.id, s.connection_id, s.expires_at, COALESCE(s.renewed_at, s.created_at) AS since, c.tenant_id
        FROM subscriptions s JOIN connections c ON c.id = s.connection_id
        WHERE s.status = 'active' AND c.status = 'active'
        """)
    due = []
    for row in rows:
        expires, since = parse_iso(row["expires_at"]), parse_iso(row["since"])
        if expires - now <= RENEW_WITHIN or now >= since + (expires - since) / 2:
            due.append(row)
    return due


def renew_one(services: Services, subscription: dict[str, Any], now: datetime) -> str:
    """Renew one subscription and say how it went (``renewed``, ``recreated``, ``reconnect_required``,
    ``throttled`` or ``failed``)."""
    connection_id = subscription["connection_id"]
    if parse_iso(subscription["expires_at"]) <= now:
        return _recreate(services, connection_id, "expired")
    try:
        renew_subscription(services, subscription, now)
        return "renewed"
    except FAILURES as e:
        failure = classify(e)
    if failure.kind is Kind.GONE:
        return _recreate(services, connection_id, "not_found")
    if failure.kind is Kind.RECONNECT:
        mark_reconnect_required(services, connection_id, failure.detail)
        return "reconnect_required"
    if failure.status == 403:  # stale authorization: one fresh token, one more try
        try:
            services.identity.access_token(connection_id, force_refresh=True)
            renew_subscription(services, subscription, now)
            return "renewed"
        except FAILURES as again:
            failure = classify(again)
    log.warning("Renewal: failed (%s)", failure.reason, extra={"subscription_id": subscription["id"]})
    subscription_rows.note_error(services.db(), subscription["id"], f"{failure.reason}: {failure.detail}")
    return "throttled" if failure.throttled else "failed"


def _recreate(services: Services, connection_id: int, why: str) -> str:
    """Queue a fresh subscription plus a reconcile for the gap (done by a worker)."""
    db = services.db()
    with db.atomic():
        subscription_rows.expire_active(db, connection_id)
        services.queue.enqueue_unless_pending("subscribe", {"connection_id": connection_id, "reason": why},
                                              connection_id=connection_id)
    return "recreated"


def renew_due(services: Services, now: datetime | None = None) -> dict[str, int]:
    """Renew every due subscription with bounded concurrency and jitter."""
    now = now or services.clock()
    due = due_subscriptions(services, now)
    random.shuffle(due)  # jitter: no tenant is always first, retries spread out
    outcomes: dict[str, int] = defaultdict(int)
    with ThreadPoolExecutor(RENEWAL_CONCURRENCY, thread_name_prefix="renewal") as pool:
        for outcome in pool.map(lambda subscription: renew_one(services, subscription, now), due):
            outcomes[outcome] += 1
            metrics.RENEWALS.labels(outcome).inc()
    if due:
        log.info("Renewal: %d due, outcomes %s", len(due), dict(outcomes))
    return dict(outcomes)
