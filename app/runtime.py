"""The background half of a process: worker threads and the leader-gated scheduler."""

from __future__ import annotations

import logging

from flask import Flask

from handlers.dispatch import build_handlers
from handlers.retry import Retry
from handlers.worker import WorkerPool
from subscriptions.leader import Leadership
from subscriptions.scheduler import build_scheduler, periodic_jobs

log = logging.getLogger(__name__)

RETRY_POLICY = Retry(max_attempts=12, base_delay=2.0, cap=900.0)


class Runtime:
    """Starts and stops the workers and the scheduler that run beside (or without) the web server."""

    def __init__(self, app: Flask, *, workers: int | None = None, scheduler: bool = True) -> None:
        services = app.extensions["services"]
        self.pool = WorkerPool(workers or app.config["WORKER_THREADS"], services.queue, build_handlers(services),
                               retry_policy=RETRY_POLICY)
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
