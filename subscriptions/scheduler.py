"""Builds the APScheduler that runs the periodic jobs, behind the leader lease."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import undefined

from app.records.services import Services
from subscriptions import maintenance, renewal
from subscriptions.leader import Leadership

log = logging.getLogger(__name__)

LEADER_REFRESH_SECONDS = 15


@dataclass(frozen=True)
class PeriodicJob:
    """``func`` every ``seconds``; the first run comes at once when ``at_start``. Without ``seconds``
    it runs once, at start."""

    id: str
    func: Callable[[], object]
    seconds: float | None
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
        if job.seconds is None:
            # However late the scheduler starts after it was built, a run-once job still runs.
            trigger: dict = {"trigger": "date", "run_date": datetime.now(timezone.utc), "misfire_grace_time": None}
        else:
            trigger = {"trigger": "interval", "seconds": job.seconds, "jitter": min(job.seconds / 10, 30),
                       "next_run_time": datetime.now(timezone.utc) if job.at_start else undefined}
        scheduler.add_job(_as_leader(leadership, job), id=job.id, name=job.id, replace_existing=True,
                          max_instances=1, coalesce=True, **trigger)
    return scheduler


def periodic_jobs(services: Services) -> list[PeriodicJob]:
    """Renewal, reconcile backstop, queue pruning, and a keep-alive of the leader lease."""
    config = services.config
    return [
        PeriodicJob("leader-lease", lambda: None, LEADER_REFRESH_SECONDS, at_start=True),
        PeriodicJob("renew-subscriptions", lambda: renewal.renew_due(services), config["RENEWAL_INTERVAL_SECONDS"],
                    at_start=True),
        PeriodicJob("reconcile-after-downtime", lambda: maintenance.reconcile_all(services), None),
        PeriodicJob("reconcile-backstop",
                    lambda: maintenance.reconcile_due(services, config["RECONCILE_INTERVAL_SECONDS"]),
                    min(60, config["RECONCILE_INTERVAL_SECONDS"])),
        PeriodicJob("prune-queue", lambda: maintenance.prune(services), 3600),
    ]
