"""A leader lease in SQLite, so only one process runs the scheduled jobs at a time.

Any number of processes may run a scheduler (``python -m app``, ``flask --app wsgi worker``,
several gunicorn workers); each scheduled job first checks :meth:`Leadership.is_leader`, and
only the holder of the unexpired lease row does the work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from sqlite_utils import Database

from app.core.leases import acquire_lease, release_lease

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"


class Leadership:
    """This process's claim on the scheduler lease."""

    def __init__(self, db_factory: Callable[[], Database], *, ttl: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._db_factory = db_factory
        self._ttl = ttl
        self._clock = clock
        self._leader = False
        self._lock = threading.Lock()

    def is_leader(self) -> bool:
        """Refresh the lease and say whether this process holds it."""
        with self._lock:
            leader = acquire_lease(self._db_factory(), LEASE_NAME, self.owner, self._ttl, self._clock())
            if leader != self._leader:
                log.info("Scheduler %s: %s leadership", self.owner, "took" if leader else "lost")
            self._leader = leader
            return leader

    def resign(self) -> None:
        if self._leader:
            release_lease(self._db_factory(), LEASE_NAME, self.owner)
            self._leader = False
