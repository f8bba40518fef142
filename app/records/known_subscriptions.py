"""The subscriptions change notifications may come from, looked up (and briefly cached, decrypted)
for every item the receiver verifies."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.core.crypto import Cipher
from app.core.db import thread_db
from app.core.timeutil import now_iso
from app.records.notifications import KnownSubscription

SUBSCRIPTION_CACHE_SECONDS = 30.0
# Graph can deliver for a new subscription before the worker that created it has stored it (its
# create call is still returning), so an unknown id is remembered only long enough to blunt a flood.
UNKNOWN_CACHE_SECONDS = 1.0
MAX_CACHED_SUBSCRIPTIONS = 100_000


class SubscriptionDirectory:
    """Looks up (and briefly caches, decrypted) the subscriptions notifications may come from.

    Replaced subscriptions stay routable until ``routable_until`` so late deliveries still count.
    The cache takes no lock: a dict read or write is atomic under the GIL, and two threads that
    miss at once both load the same row. With a lock, a request thread switched out while holding
    it stalled the others on every lookup of the batch (bench/findings.md, "No lock on the
    subscription cache").
    """

    def __init__(self, database_path: str, cipher: Cipher, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._database_path = database_path
        self._cipher = cipher
        self._clock = clock
        self._cache: dict[str, tuple[float, KnownSubscription | None]] = {}

    def lookup(self, subscription_id: str) -> KnownSubscription | None:
        now = self._clock()
        cached = self._cache.get(subscription_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        known = self._load(subscription_id)
        if len(self._cache) >= MAX_CACHED_SUBSCRIPTIONS:
            self._cache = {}
        ttl = SUBSCRIPTION_CACHE_SECONDS if known is not None else UNKNOWN_CACHE_SECONDS
        self._cache[subscription_id] = (now + ttl, known)
        return known

    def _load(self, subscription_id: str) -> KnownSubscription | None:
        if len(subscription_id) > 128:
            return None
        rows = list(thread_db(self._database_path).query(
            """
            SELECT s.connection_id, s.client_state, c.tenant_id FROM subscriptions s
            JOIN connections c ON c.id = s.connection_id
            WHERE s.id = ? AND s.routable_until > ? AND c.status = 'active'
            """, [subscription_id, now_iso()]))
        if not rows:
            return None
        client_state = self._cipher.decrypt_text(rows[0]["client_state"])
        return KnownSubscription(rows[0]["connection_id"], rows[0]["tenant_id"], client_state.encode())
