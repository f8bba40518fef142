"""What happens once a job is finished: it is counted, and a send that ran out of attempts fails visibly."""

from __future__ import annotations

from app.core import metrics
from app.core.queue import Job
from app.records import outbox
from app.records.services import Services


def record_outcome(services: Services, job: Job, outcome: str, reason: str | None) -> None:
    """The worker's ``on_outcome``: ``outcome`` is ``done``, ``retry`` or ``dead``."""
    metrics.JOB_OUTCOMES.labels(job.kind, outcome).inc()
    if job.kind == "send" and outcome == "dead":
        outbox.give_up(services.db(), job.payload["outbox_id"], reason)
