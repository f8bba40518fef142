"""The background half of a process: worker threads, the event delivery loop and the leader-gated scheduler."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

from flask import Flask

from app.core.db import is_postgres, store_location
from app.core.dialects import JOBS_CHANNEL
from app.core.postgres import Listener
from app.microsoft.http import Session
from app.records.services import Services
from app.web.context import services_of
from handlers.event_delivery import RETRY_DELAYS, EventDelivery
from handlers.outcomes import record_outcome
from handlers.registry import build_handlers
from handlers.retry import job_retry
from handlers.worker import WorkerPool
from subscriptions.leader import Leadership
from subscriptions.scheduler import build_scheduler, periodic_jobs

log = logging.getLogger(__name__)

# Heartbeats extend a lease every third of it, so a short lease costs little and means jobs held by a
# process that died (kill -9, power loss) are taken up again within about 20 s.
LEASE_SECONDS = 15.0
REAP_INTERVAL_SECONDS = 5.0


def busy_mailboxes(services: Services) -> set[int]:
    """The connections whose Graph budget is held whole, or waits out a Retry-After, in the store's
    shared slots (by this process's or another's requests)."""
    slots = services.mailbox_slots
    return {int(mailbox) for mailbox in slots.full() if mailbox.isdigit()} if slots is not None else set()


class Runtime:
    """Starts and stops the workers, the event delivery (when ``EVENTS_URL`` is set) and the scheduler
    that run beside (or without) the web server."""

    def __init__(self, app: Flask, *, workers: int | None = None, scheduler: bool = True,
                 event_delays: Sequence[float] = RETRY_DELAYS) -> None:
        """``event_delays``: the waits between an event's delivery attempts (tests pass short ones)."""
        services = services_of(app)
        config = services.config
        self.pool = WorkerPool(workers or config["WORKER_THREADS"], services.queue, build_handlers(services),
                               retry_policy=job_retry(config["JOB_MAX_ATTEMPTS"], config["JOB_RETRY_MAX_DELAY_SECONDS"]),
                               on_outcome=partial(record_outcome, services),
                               lease_seconds=LEASE_SECONDS, reap_interval=REAP_INTERVAL_SECONDS,
                               busy_elsewhere=partial(busy_mailboxes, services))
        services.on_enqueue = self.pool.wakeup.notify  # the one place it is set: this process now has workers to wake
        # On PostgreSQL, work may be queued by another process (a gunicorn web process, another host):
        # its commit's notification wakes this process's workers too.
        location = store_location(config)
        self.listener = (Listener(location, JOBS_CHANNEL, lambda _payload: self.pool.wakeup.notify())
                         if is_postgres(location) else None)
        self.events = (EventDelivery(services.db, config["EVENTS_URL"], config["EVENTS_SECRET"],
                                     session=Session(config["REQUESTS_CA_BUNDLE"] or True, pool_size=1),
                                     retry_delays=event_delays)
                       if config["EVENTS_URL"] else None)
        self.leadership = Leadership(services.db)
        self.scheduler = build_scheduler(self.leadership, periodic_jobs(services)) if scheduler else None

    def start(self) -> None:
        if self.listener is not None:
            self.listener.start()
        self.pool.start()
        if self.events is not None:
            self.events.start()
        if self.scheduler is not None:
            self.scheduler.start()
        log.info("Runtime: up to %d worker(s)%s%s started", self.pool.size,
                 ", event delivery" if self.events else "", " and the scheduler" if self.scheduler else "")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop scheduling, let each worker finish its job in hand, release the leader lease."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.leadership.resign()
        if self.events is not None:
            self.events.stop()
        if not self.pool.stop(timeout):
            log.warning("Runtime: some workers were still busy after %.0f s; their leases will expire", timeout)
        if self.listener is not None:
            self.listener.stop()
        log.info("Runtime: stopped")
