"""Delivering events to the records platform: POSTs to ``EVENTS_URL``, signed per Standard Webhooks.

Where it runs: a thread of its own in every process that runs workers (:class:`app.runtime.Runtime`, so
``python -m app`` and ``flask --app wsgi worker``), never a request thread. It claims due events under a
lease (:func:`app.records.events.claim`), as workers claim jobs, rather than delivering from the
scheduler leader alone: a worker started with ``--no-scheduler`` delivers too, the leader's long
periodic jobs (renewing many subscriptions) never hold events back, and a process that dies leaves its
claims to lapse within :data:`LEASE_SECONDS`. Two processes never hold one event at once, so never POST
it at once. Delivery is at least once: a crash between the receiver's 2xx and the commit of
``delivered`` brings a second POST with the same ``webhook-id``, which the receiver drops.

Attempts follow Standard Webhooks' (Svix's) schedule: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h
and 10 h later, the last about 27.6 hours after the first, after which the event is dead until an
operator retries it (``flask --app wsgi events retry``). Any 2xx is success; any other status (a
redirect too: it is not followed), no answer within :data:`TIMEOUT_SECONDS`, or no connection is a
failure. Events are not ordered: one waiting for its retry does not hold back the next (each body has
its ``timestamp``; the pull API lists them in order).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import requests
from sqlite_utils import Database
from standardwebhooks import Webhook

from app.core.db import close_thread_dbs
from app.core.metrics import EVENT_DELIVERIES
from app.records import events

log = logging.getLogger(__name__)

RETRY_DELAYS: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
TIMEOUT_SECONDS = 10.0
LEASE_SECONDS = 15.0  # as the jobs' (app.runtime): a killed process's claims lapse as soon; over one attempt's 10 s
BATCH = 20
POLL_SECONDS = 0.5  # how soon a new event goes out when the loop is idle
MAX_ANSWER_BYTES = 64 * 1024  # read of the receiver's answer, so a kept-alive connection can be reused


class EventDelivery:
    """The delivery loop of one process.

    :param retry_delays: seconds between attempts: the first attempt is at once, each failure waits
        the next delay, and a failure with none left makes the event dead. Tests pass short ones.
    :param session: the HTTP session (an ``app.microsoft.http.Session`` honours ``REQUESTS_CA_BUNDLE``).
    """

    def __init__(self, db: Callable[[], Database], url: str, secret: str, *, session: requests.Session,
                 retry_delays: Sequence[float] = RETRY_DELAYS, timeout: float = TIMEOUT_SECONDS,
                 lease_seconds: float = LEASE_SECONDS, poll_seconds: float = POLL_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        if any(delay < 0 for delay in retry_delays):
            raise ValueError(f"retry delays must not be negative, got {list(retry_delays)!r}")
        if lease_seconds <= timeout:
            raise ValueError(f"the lease ({lease_seconds} s) must outlast an attempt ({timeout} s)")
        self._db, self.url, self._signer, self.session = db, url, Webhook(secret), session
        self.retry_delays, self.timeout, self.lease_seconds = tuple(retry_delays), timeout, lease_seconds
        self.poll_seconds, self.clock = poll_seconds, clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:events"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="event-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop after the attempt in hand (at most :data:`TIMEOUT_SECONDS`); what it claimed lapses."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    attempted = self.deliver_due()
                except Exception:  # the store away, a bug: log it, keep the loop alive
                    log.exception("Events: a delivery round failed")
                    attempted = 0
                if not attempted:
                    self._stop.wait(self.poll_seconds)
        finally:
            close_thread_dbs()

    def deliver_due(self) -> int:
        """Claim the due events and attempt each, oldest first, while the lease lasts; return how many
        were claimed. Those the lease would not cover are handed back for the next round."""
        db, started = self._db(), self.clock()
        claimed = events.claim(db, self.owner, lease_seconds=self.lease_seconds, limit=BATCH, now=started)
        for position, row in enumerate(claimed):
            if self._stop.is_set() or self.clock() + self.timeout + 1 > started + self.lease_seconds:
                events.release(db, [later["id"] for later in claimed[position:]], self.owner)
                break
            self._attempt(db, row)
        return len(claimed)

    def _attempt(self, db: Database, row: dict[str, Any]) -> None:
        error = self._post(row)
        now = self.clock()
        if error is None:
            events.delivered(db, row["id"], self.owner, now=now)
            EVENT_DELIVERIES.labels("delivered").inc()
            return
        made = row["attempts"] + 1
        retry_at = now + self.retry_delays[made - 1] if made <= len(self.retry_delays) else None
        events.failed(db, row["id"], self.owner, error, retry_at=retry_at, now=now)
        EVENT_DELIVERIES.labels("failed" if retry_at is not None else "dead").inc()
        if retry_at is None:
            log.error("Events: %s (%s) is dead after %d attempts: %s", row["webhook_id"], row["type"], made, error)
        else:
            log.warning("Events: %s (%s) attempt %d failed: %s; next in %.0f s", row["webhook_id"], row["type"],
                        made, error, retry_at - now)

    def _post(self, row: dict[str, Any]) -> str | None:
        """POST the event, signed now; None when the receiver took it, else what went wrong."""
        payload, moment = events.encoded(row), datetime.now(timezone.utc)
        headers = {"webhook-id": row["webhook_id"], "webhook-timestamp": str(int(moment.timestamp())),
                   "webhook-signature": self._signer.sign(row["webhook_id"], moment, payload),
                   "Content-Type": "application/json"}
        try:
            with self.session.post(self.url, data=payload, headers=headers, timeout=self.timeout,
                                   allow_redirects=False, stream=True) as rv:
                next(rv.iter_content(MAX_ANSWER_BYTES), b"")
                return None if 200 <= rv.status_code < 300 else f"HTTP {rv.status_code}"
        except requests.RequestException as e:
            return f"no answer: {type(e).__name__}"
