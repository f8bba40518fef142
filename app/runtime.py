"""The background half of a process: worker threads and the leader-gated scheduler."""

from __future__ import annotations

import logging
from functools import partial

from flask import Flask

from app import metrics
from app.services import Services

from handlers.dispatch import build_handlers
from handlers.queue import Job
from handlers.worker import WorkerPool
from subscriptions.leader import Leadership
from subscriptions.scheduler import build_scheduler, periodic_jobs

log = logging.getLogger(__name__)

# Heartbeats extend a lease every third of it, so a short lease costs little and means jobs held by a
# process that died (kill -9, power loss) are taken up again within about 20 s.
LEASE_SECONDS = 15.0
REAP_INTERVAL_SECONDS = 5.0



def record_outcome(services: Services, job: Job, outcome: str, reason: str | None) -> None:
    """Count every finished job; a send that ran out of retries is failed visibly."""
    metrics.JOB_OUTCOMES.labels(job.kind, outcome).inc()
    if job.kind == "send" and outcome == "dead":
        services.db().execute(
            "UPDATE outbox SET status = 'failed', error = COALESCE(error, ?) WHERE id = ? AND status NOT IN ('sent', 'failed')",
            [f"gave up: {reason}", job.payload["outbox_id"]])


class Runtime:
    """Starts and stops the workers and the scheduler that run beside (or without) the web server."""

    def __init__(self, app: Flask, *, workers: int | None = None, scheduler: bool = True) -> None:
        services = app.extensions["services"]
        self.pool = WorkerPool(workers or app.config["WORKER_THREADS"], services.queue, build_handlers(services),
                               retry_policy=services.retry, on_outcome=partial(record_outcome, services),
                               lease_seconds=LEASE_SECONDS, reap_interval=REAP_INTERVAL_SECONDS)
        app.extensions["wake_workers"] = self.pool.notify
        self.leadership = Leadership(services.db)
        self.scheduler = build_scheduler(self.leadership, periodic_jobs(services)) if scheduler else None

    def start(self) -> None:
        self.pool.start()
        if self.scheduler is not None:
            self.scheduler.start()
        log.info("Runtime: %d worker(s)%s started", len(self.pool.workers),
                 " and the scheduler" if self.scheduler else "")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop scheduling, let each worker finish its job in hand, release the leader lease."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.leadership.resign()
        if not self.pool.stop(timeout):
            log.warning("Runtime: some workers were still busy after %.0f s; their leases will expire", timeout)
        log.info("Runtime: stopped")
