"""The scheduler's periodic jobs, as plain functions of the services and the current time."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from app import metrics
from app.connections import mark_reconnect_required
from app.graph import GraphError, NotFound, Throttled
from app.identity import IdentityConfigError, IdentityUnavailable, ReconnectRequired
from app.services import Services
from app.timeutil import iso, now_iso, parse_iso
from subscriptions.manager import renew_subscription
from subscriptions.reconcile import enqueue_reconcile

log = logging.getLogger(__name__)

RENEW_WITHIN = timedelta(hours=24)
RENEWAL_CONCURRENCY = 8
TENANT_WRITES_PER_WINDOW = 450  # Graph allows 500 subscription writes per 20 s per tenant; keep a margin
TENANT_WINDOW_SECONDS = 20.0
DONE_RETENTION_SECONDS = 86_400.0
DEAD_RETENTION_SECONDS = 14 * 86_400.0


class TenantRateLimit:
    """At most ``limit`` calls per ``window`` seconds per tenant (a sliding log), shared by threads."""

    def __init__(self, limit: int = TENANT_WRITES_PER_WINDOW, window: float = TENANT_WINDOW_SECONDS) -> None:
        self.limit, self.window = limit, window
        self._calls: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def wait(self, tenant_id: str) -> None:
        while True:
            with self._lock:
                calls, now = self._calls[tenant_id], time.monotonic()
                while calls and calls[0] <= now - self.window:
                    calls.popleft()
                if len(calls) < self.limit:
                    calls.append(now)
                    return
                pause = calls[0] + self.window - now
            time.sleep(pause)


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
    """Renew one subscription and say how it went (``renewed``, ``recreated``, ``reconnect``...)."""
    connection_id = subscription["connection_id"]
    if parse_iso(subscription["expires_at"]) <= now:
        return _recreate(services, connection_id, "expired")
    try:
        renew_subscription(services, subscription, now)
        return "renewed"
    except NotFound:
        return _recreate(services, connection_id, "not_found")
    except ReconnectRequired as e:
        mark_reconnect_required(services, connection_id, e.reason)
        return "reconnect_required"
    except GraphError as e:
        if e.status == 403:  # stale authorization: one fresh token, one more try
            try:
                services.identity.access_token(connection_id, force_refresh=True)
                renew_subscription(services, subscription, now)
                return "renewed"
            except (GraphError, IdentityUnavailable) as again:
                e = again
        _note_error(services, subscription["id"], e)
        return "throttled" if isinstance(e, Throttled) else "failed"
    except (IdentityUnavailable, IdentityConfigError) as e:
        _note_error(services, subscription["id"], e)
        return "failed"


def _recreate(services: Services, connection_id: int, why: str) -> str:
    """Queue a fresh subscription plus a reconcile for the gap (done by a worker)."""
    db = services.db()
    with db.atomic():
        db.execute("UPDATE subscriptions SET status = 'expired', updated_at = ? WHERE connection_id = ? "
                   "AND status = 'active'", [now_iso(), connection_id])
        services.queue.enqueue_unless_pending("subscribe", {"connection_id": connection_id, "reason": why},
                                              connection_id=connection_id)
    return "recreated"


def _note_error(services: Services, subscription_id: str, error: Exception) -> None:
    log.warning("Renewal: failed (%s)", type(error).__name__, extra={"subscription_id": subscription_id})
    services.db().execute("UPDATE subscriptions SET last_error = ?, updated_at = ? WHERE id = ?",
                          [f"{type(error).__name__}: {error}"[:500], now_iso(), subscription_id])


def renew_due(services: Services, now: datetime | None = None, *,
              limiter: TenantRateLimit | None = None) -> dict[str, int]:
    """Renew every due subscription with bounded concurrency, jitter, and per-tenant rate limits."""
    now = now or services.clock()
    limiter = limiter or TenantRateLimit()
    due = due_subscriptions(services, now)
    random.shuffle(due)  # jitter: no tenant is always first, retries spread out

    def renew(subscription: dict[str, Any]) -> str:
        limiter.wait(subscription["tenant_id"])
        return renew_one(services, subscription, now)

    outcomes: dict[str, int] = defaultdict(int)
    with ThreadPoolExecutor(RENEWAL_CONCURRENCY, thread_name_prefix="renewal") as pool:
        for outcome in pool.map(renew, due):
            outcomes[outcome] += 1
            metrics.RENEWALS.labels(outcome).inc()
    if due:
        log.info("Renewal: %d due, outcomes %s", len(due), dict(outcomes))
    return dict(outcomes)


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
    """Drop finished jobs after a day (dead letters after two weeks)."""
    now = time.time() if now is None else now
    return services.queue.prune(DONE_RETENTION_SECONDS, dead_older_than=DEAD_RETENTION_SECONDS, now=now)
