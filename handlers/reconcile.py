"""The reconcile job: catch a connection up with delta (:mod:`subscriptions.reconcile`)."""

from __future__ import annotations

from app.core.queue import Job
from app.records.services import Services
from handlers.failures import graph_failures
from subscriptions.reconcile import reconcile


def handle_reconcile(services: Services, job: Job) -> None:
    with graph_failures(services, job.connection_id):
        reconcile(services, job.payload["connection_id"])
