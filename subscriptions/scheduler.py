"""Builds the APScheduler that runs the periodic jobs, behind the leader lease."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler

from subscriptions.leader import Leadership

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    id: str
    func: Callable[[], object]
    seconds: float


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
            _as_leader(leadership, job), "interval", seconds=job.seconds, id=job.id,
            replace_existing=True, max_instances=1, coalesce=True,
        )
    return scheduler
