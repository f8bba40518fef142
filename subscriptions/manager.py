"""Creating, renewing and removing a connection's Graph subscription.

One subscription per connection on ``/users/{id}/messages`` (inbox and sent items alike), with a
lifecycle URL (it can only be set at creation). Its ``clientState`` is random per subscription and
stored encrypted, so a copy of the database alone cannot forge notifications. Graph decides the
expiry; we always store the one it granted.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from app.core import ratelimit
from app.core.timeutil import iso, parse_iso
from app.microsoft.failures import FAILURES, GraphError, Kind, NotFound, classify
from app.microsoft.graph import GraphClient
from app.records import subscription_rows
from app.records.connections import mark_disconnected
from app.records.services import Services

log = logging.getLogger(__name__)

CHANGE_TYPES = "created,updated,deleted"
MAX_LIFETIME = timedelta(minutes=10_080)  # current Graph docs for Outlook resources
OLDER_MAX_LIFETIME = timedelta(minutes=4_230)  # older docs; some tenants still enforce it
LIFETIME_MARGIN = timedelta(minutes=15)
EXPIRY_REJECTED = re.compile(r"expiration", re.IGNORECASE)
DUPLICATE_ID = re.compile(r"Subscription Id <?([0-9a-fA-F-]{36})>? already exists")
# Graph allows 500 subscription writes (create, renew, delete) per tenant in 20 s
# (https://learn.microsoft.com/graph/throttling-limits#subscription-service-limits). The count is in
# fixed windows of 20 s, so any 20 s spans at most two of them: 225 a window keeps within 450.
SUBSCRIPTION_WRITES = ratelimit.Limit("subscription_writes", 225, 20.0)


def lifetimes(preferred: timedelta = MAX_LIFETIME) -> list[timedelta]:
    """Lifetimes to ask for, longest first: the configured maximum, then the older 4,230-minute limit."""
    return [preferred - LIFETIME_MARGIN] + ([OLDER_MAX_LIFETIME - LIFETIME_MARGIN]
                                            if preferred > OLDER_MAX_LIFETIME else [])


def _connection(services: Services, connection_id: int) -> dict[str, Any]:
    rows = list(services.db().query("SELECT id, user_id, tenant_id, status FROM connections WHERE id = ?",
                                    [connection_id]))
    if not rows:
        raise LookupError(f"connection {connection_id} does not exist")
    return rows[0]


def _spend_write(services: Services, connection_id: int) -> None:
    """Wait for a subscription write of the connection's tenant within :data:`SUBSCRIPTION_WRITES`.

    Counted in the store, so the workers and the renewal leader of every process share one count.
    """
    tenant_id = _connection(services, connection_id)["tenant_id"]
    while (pause := ratelimit.hit(services.db(), SUBSCRIPTION_WRITES, tenant_id, time.time())) is not None:
        log.info("Subscriptions: tenant's write budget spent, waiting %d s", pause,
                 extra={"connection_id": connection_id})
        time.sleep(pause)


def _request_body(services: Services, user_id: str, client_state: str, expires: datetime) -> dict[str, Any]:
    base = services.config["PUBLIC_BASE_URL"]
    return {
        "changeType": CHANGE_TYPES,
        "notificationUrl": f"{base}/webhooks/graph",
        "lifecycleNotificationUrl": f"{base}/webhooks/graph/lifecycle",
        "resource": f"/users/{user_id}/messages",
        "expirationDateTime": iso(expires),
        "clientState": client_state,
    }


def _post_subscription(graph: GraphClient, body_for: Any, now: datetime, spend: Callable[[], None]) -> dict[str, Any]:
    """POST with the longest lifetime Graph accepts; clear a leftover duplicate (409) once."""
    cleared_duplicate = False
    options = lifetimes()
    while True:
        try:
            spend()
            return graph.create_subscription(body_for(now + options[0]))
        except GraphError as e:
            duplicate = DUPLICATE_ID.search(e.message)
            if e.status == 409 and duplicate and not cleared_duplicate:
                # A subscription from an earlier attempt whose clientState we never stored. It may
                # expire between the 409 and the delete: gone either way.
                with contextlib.suppress(NotFound):
                    spend()
                    graph.delete_subscription(duplicate.group(1))
                cleared_duplicate = True
            elif e.status == 400 and EXPIRY_REJECTED.search(e.message) and len(options) > 1:
                log.info("Subscriptions: lifetime %s rejected, retrying with %s", options[0], options[1])
                options = options[1:]
            else:
                raise


def create_subscription(services: Services, connection_id: int, now: datetime) -> str:
    """Create the connection's subscription and retire any earlier one; return the new id.

    Must run in the worker: Graph validates the notification URL while this call is in flight.
    """
    connection = _connection(services, connection_id)
    client_state = secrets.token_urlsafe(48)
    graph = services.graph_for(connection_id)
    created = _post_subscription(
        graph, lambda expires: _request_body(services, connection["user_id"], client_state, expires), now,
        partial(_spend_write, services, connection_id))
    granted = iso(parse_iso(created["expirationDateTime"]))
    subscription_rows.store_created(
        services.db(), connection_id, created, change_type=CHANGE_TYPES,
        resource=created.get("resource") or f"/users/{connection['user_id']}/messages",
        encrypted_client_state=services.cipher.encrypt(client_state), expires_at=granted, now=iso(now))
    log.info("Subscriptions: created, expires %s", granted,
             extra={"connection_id": connection_id, "subscription_id": created["id"]})
    return created["id"]


def renew_subscription(services: Services, subscription: dict[str, Any], now: datetime) -> str:
    """PATCH a later expiry (which also reauthorizes); store what Graph granted."""
    graph = services.graph_for(subscription["connection_id"])
    renewed = None
    for lifetime in lifetimes():
        try:
            _spend_write(services, subscription["connection_id"])
            renewed = graph.renew_subscription(subscription["id"], iso(now + lifetime))
            break
        except GraphError as e:
            if not (e.status == 400 and EXPIRY_REJECTED.search(e.message)):
                raise
    if renewed is None:
        raise GraphError(400, "ExpiryRejected", "Graph rejected every subscription lifetime")
    granted = iso(parse_iso(renewed["expirationDateTime"]))
    subscription_rows.renewed(services.db(), subscription["id"], granted, iso(now))
    return granted


def remove_subscriptions(services: Services, connection_id: int) -> int:
    """Stop a connection's subscriptions: deleted on Graph (best effort, the grant may already be
    gone) and always locally. Returns how many were active."""
    active = subscription_rows.active_ids(services.db(), connection_id)
    graph = services.graph_for(connection_id)
    for subscription_id in active:
        try:
            _spend_write(services, connection_id)
            graph.delete_subscription(subscription_id)
        except FAILURES as e:
            if classify(e).kind is not Kind.GONE:  # the local removal below still stops processing
                log.warning("Subscriptions: could not delete on Graph (%s)", type(e).__name__,
                            extra={"subscription_id": subscription_id})
    subscription_rows.remove_all(services.db(), connection_id)
    return len(active)


def disconnect(services: Services, connection_id: int) -> None:
    """The user disconnects: delete the Graph subscriptions, wipe the tokens, keep the records' history."""
    remove_subscriptions(services, connection_id)
    services.identity.forget(connection_id)
    mark_disconnected(services.db(), connection_id)
