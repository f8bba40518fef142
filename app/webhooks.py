"""The Graph notification receiver: validate, persist in one transaction, answer 202. Fast.

No Graph or msal call and no matching happens here: Graph allows 3 seconds per delivery and
throttles (then drops) endpoints that are slow. The worker does the rest.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable

from flask import Blueprint, Response, current_app, request

from app import metrics
from app.notifications import Accepted, InvalidNotification, KnownSubscription, parse_batch, verify_item
from app.errors import error_response
from app.storage import get_db
from app.timeutil import now_iso
from handlers.queue import NewJob

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

MAX_NOTIFICATION_BYTES = 1024 * 1024
SUBSCRIPTION_CACHE_SECONDS = 30.0


class SubscriptionDirectory:
    """Looks up (and briefly caches, decrypted) the subscriptions notifications may come from.

    Replaced subscriptions stay routable until ``routable_until`` so late deliveries still count.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, KnownSubscription | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, subscription_id: str) -> KnownSubscription | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(subscription_id)
        if cached and cached[0] > now:
            return cached[1]
        known = self._load(subscription_id)
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[subscription_id] = (now + SUBSCRIPTION_CACHE_SECONDS, known)
        return known

    @staticmethod
    def _load(subscription_id: str) -> KnownSubscription | None:
        if len(subscription_id) > 128:
            return None
        rows = list(get_db().query(
            """
            SELECT s.connection_id, s.client_state, c.tenant_id FROM subscriptions s
            JOIN connections c ON c.id = s.connection_id
            WHERE s.id = ? AND s.routable_until > ? AND c.status = 'active'
            """, [subscription_id, now_iso()]))
        if not rows:
            return None
        client_state = current_app.extensions["cipher"].decrypt_text(rows[0]["client_state"])
        return KnownSubscription(rows[0]["connection_id"], rows[0]["tenant_id"], client_state.encode())


def _validation_response() -> Response:
    """Echo Graph's validation token, decoded, as text/plain (Flask has already URL-decoded it)."""
    return Response(request.args["validationToken"], status=200, mimetype="text/plain")


def _receive(endpoint: str) -> Response:
    if "validationToken" in request.args:
        return _validation_response()
    if (request.content_length or 0) > MAX_NOTIFICATION_BYTES:
        return error_response(413, "payload_too_large", "Notification batches are limited to 1 MiB.")
    if request.mimetype != "application/json":
        return error_response(415, "unsupported_media_type", "Notifications must be application/json.")
    try:
        items = parse_batch(request.get_data(cache=False))
    except InvalidNotification as e:
        metrics.NOTIFICATIONS_REJECTED.labels(reason=e.reason).inc()
        log.warning("Receiver %s: rejected a delivery: %s", endpoint, e.reason)
        return error_response(400, e.reason, "The body is not a Graph change-notification batch.")
    metrics.NOTIFICATIONS_RECEIVED.inc(len(items))
    extensions = current_app.extensions
    accepted = _verify(endpoint, items, extensions["subscription_directory"].lookup)
    if accepted:
        try:
            extensions["queue"].enqueue_many(
                [NewJob(a.kind, a.payload, a.dedupe_key, a.connection_id) for a in accepted])
        except sqlite3.Error:
            log.exception("Receiver %s: could not persist %d notification(s); Graph will retry", endpoint,
                          len(accepted))
            return error_response(503, "storage_unavailable", "Could not persist the notifications; retry.")
        metrics.NOTIFICATIONS_ACCEPTED.inc(len(accepted))
        extensions["wake_workers"]()
    return Response(status=202)


def _verify(endpoint: str, items: list, lookup: Callable[[str], KnownSubscription | None]) -> list[Accepted]:
    """The genuine items of a delivery; the others are counted and logged by reason."""
    received_at = time.time()
    accepted: list[Accepted] = []
    rejected: Counter[str] = Counter()
    for item in items:
        outcome = verify_item(item, lookup, received_at)
        if type(outcome) is str:
            rejected[outcome] += 1
        else:
            accepted.append(outcome)
    for reason, count in rejected.items():
        metrics.NOTIFICATIONS_REJECTED.labels(reason=reason).inc(count)
        log.warning("Receiver %s: rejected %d notification(s): %s", endpoint, count, reason)
    return accepted


@bp.post("/graph")
def graph_notifications():
    return _receive("notifications")


@bp.post("/graph/lifecycle")
def graph_lifecycle():
    return _receive("lifecycle")
