"""The subscriptions change notifications may come from, looked up (and briefly cached, decrypted)
for every item the receiver verifies.

On PostgreSQL, web processes on many hosts each hold a cache, and a worker process anywhere creates
and removes subscriptions: every change that alters a lookup's answer is announced on
:data:`app.core.dialects.SUBSCRIPTIONS_CHANNEL` as it commits (:func:`announce_change`), and each
directory forgets what it cached of it. On SQLite the cache lapses by itself, as it always has.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlite_utils import Database

from app.core.crypto import Cipher
from app.core.db import is_postgres, thread_db
from app.core.dialects import SUBSCRIPTIONS_CHANNEL, dialect_of
from app.core.postgres import Listener
from app.core.timeutil import now_iso, parse_iso, utcnow
from app.records.notifications import KnownSubscription

ANY = "*"

SUBSCRIPTION_CACHE_SECONDS = 30.0
# Graph can deliver for a new subscription before the worker that created it has stored it (its
# create call is still returning), so an unknown id is remembered only long enough to blunt a flood.
UNKNOWN_CACHE_SECONDS = 1.0
MAX_CACHED_SUBSCRIPTIONS = 100_000


def announce_change(db: Database, subscription_id: str = ANY) -> None:
    """Every process's directory forgets what it cached of ``subscription_id`` (by default: of every
    subscription) once the current transaction commits."""
    dialect_of(db).notify(db, SUBSCRIPTIONS_CHANNEL, subscription_id)


class SubscriptionDirectory:
    """Looks up (and briefly caches, decrypted) the subscriptions notifications may come from.

    Replaced subscriptions stay routable until ``routable_until`` so late deliveries still count.
    The cache takes no lock: a dict read or write is atomic under the GIL, and two threads that
    miss at once both load the same row. With a lock, a request thread switched out while holding
    it stalled the others on every lookup of the batch (bench/findings.md, "No lock on the
    subscription cache"). A subscription is cached no longer than it stays routable.

    On PostgreSQL the first lookup starts a :class:`app.core.postgres.Listener` for the changes
    (started then, not at construction: a gunicorn web process builds the app after its fork, and
    a worker process, which builds it too, never looks anything up).
    """

    def __init__(self, database_path: str, cipher: Cipher, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._database_path = database_path
        self._cipher = cipher
        self._clock = clock
        self._cache: dict[str, tuple[float, KnownSubscription | None]] = {}
        self._listener: Listener | None = None
        self._listener_lock = threading.Lock()
        self.listening = threading.Event()  # set once changes elsewhere reach this cache (PostgreSQL)

    def forget(self, subscription_id: str) -> None:
        """Drop what the cache holds of ``subscription_id``; of everything for :data:`ANY`."""
        if subscription_id == ANY:
            self._cache = {}
        else:
            self._cache.pop(subscription_id, None)

    def _listen(self) -> None:
        with self._listener_lock:
            if self._listener is None:
                # Listening (again) after a gap may have missed changes: start from an empty cache.
                self._listener = Listener(self._database_path, SUBSCRIPTIONS_CHANNEL, self.forget,
                                          on_listening=self._listening).start()

    def _listening(self) -> None:
        self.forget(ANY)
        self.listening.set()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()

    def lookup(self, subscription_id: str) -> KnownSubscription | None:
        if self._listener is None and is_postgres(self._database_path):
            self._listen()
        now = self._clock()
        cached = self._cache.get(subscription_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        known = self._load(subscription_id)
        if len(self._cache) >= MAX_CACHED_SUBSCRIPTIONS:
            self._cache = {}
        ttl = UNKNOWN_CACHE_SECONDS if known is None else min(SUBSCRIPTION_CACHE_SECONDS, known[1])
        self._cache[subscription_id] = (now + ttl, known[0] if known else None)
        return known[0] if known else None

    def _load(self, subscription_id: str) -> tuple[KnownSubscription, float] | None:
        """The subscription, and for how many more seconds it is routable."""
        if len(subscription_id) > 128:
            return None
        rows = list(thread_db(self._database_path).query(
            """
            SELECT s.connection_id, s.client_state, s.routable_until, c.tenant_id FROM subscriptions s
            JOIN connections c ON c.id = s.connection_id
            WHERE s.id = ? AND s.routable_until > ? AND c.status = 'active'
            """, [subscription_id, now_iso()]))
        if not rows:
            return None
        client_state = self._cipher.decrypt_text(rows[0]["client_state"])
        routable_for = (parse_iso(rows[0]["routable_until"]) - utcnow()).total_seconds()
        return KnownSubscription(rows[0]["connection_id"], rows[0]["tenant_id"], client_state.encode()), routable_for
