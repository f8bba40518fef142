"""Builds the APScheduler that runs the periodic jobs, behind the leader lease."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import undefined

from app.services import Services
from subscriptions import jobs
from subscriptions.leader import Leadership

log = logging.getLogger(__name__)

LEADER_REFRESH_SECONDS = 15


@dataclass(frozen=True)
class PeriodicJob:
    """``func`` every ``seconds``; the first run comes at once when ``at_start``."""

    id: str
    func: Callable[[], object]
    seconds: float
    at_start: bool = False


def _as_leader(leadership: Leadership, job: PeriodicJob) -> Callable[[], None]:
    """Run ``job`` only while this process holds the lease; log (never raise) its failures."""

    @functools.wraps(job.func)
    def run() -> None:
        try:
            if leadership.is_leader():
                job.func()
        except Exception:
            log.exception("Scheduler: job %s failed", job.id)

    return run


def build_scheduler(leadership: Leadership, jobs: list[PeriodicJob]) -> BackgroundScheduler:
    """A scheduler with one interval trigger per job; start it with ``.start()``."""
    scheduler = BackgroundScheduler(timezone="UTC")
    for job in jobs:
        scheduler.add_job(
            _as_leader(leadership, job), "interval", seconds=job.seconds, id=job.id, name=job.id,
            replace_existing=True, max_instances=1, coalesce=True, jitter=min(job.seconds / 10, 30),
            next_run_time=datetime.now(timezone.utc) if job.at_start else undefined,
        )
    return scheduler


def periodic_jobs(services: Services) -> list[PeriodicJob]:
    """Renewal, reconcile backstop, queue pruning, and a keep-alive of the leader lease."""
    config = services.config
    return [
        PeriodicJob("leader-lease", lambda: None, LEADER_REFRESH_SECONDS, at_start=True),
        PeriodicJob("renew-subscriptions", lambda: jobs.renew_due(services), config["RENEWAL_INTERVAL_SECONDS"],
                    at_start=True),
        PeriodicJob("reconcile-after-downtime", lambda: jobs.reconcile_all(services), 10 * 365 * 86_400,
                    at_start=True),
        PeriodicJob("reconcile-backstop",
                    lambda: jobs.reconcile_due(services, config["RECONCILE_INTERVAL_SECONDS"]),
                    min(60, config["RECONCILE_INTERVAL_SECONDS"])),
        PeriodicJob("prune-queue", lambda: jobs.prune(services), 3600),
    ]
