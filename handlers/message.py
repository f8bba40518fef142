"""The message handler: fetch what changed (up to 20 per ``$batch``) and link it to record threads."""

from __future__ import annotations

import time
from collections.abc import Mapping

from app.core import metrics
from app.core.queue import Job
from app.microsoft.failures import classify, error_from
from app.microsoft.graph import ATTACHMENTS_EXPAND, MESSAGE_SELECT
from app.records import threads
from app.records.linked_attachments import store_attachments
from app.records.linking import link_graph_messages, load_connection
from app.records.services import Services
from handlers.errors import PermanentError, RetryLater
from handlers.failures import graph_failures, job_error


def _batch_item_outcome(services: Services, connection_id: int, status: int, body: object,
                        headers: Mapping) -> Exception | None:
    """What a failed ``$batch`` item means for its jobs (None: nothing left to do)."""
    if status == 404:  # deleted since, or a transient Outbox copy; a later notification covers it
        return None
    if status == 0:
        return RetryLater("missing_batch_response")
    return job_error(services, connection_id, classify(error_from(status, body, headers)))


def _every_job(fetch: Mapping[str, list[Job]], outcome: Exception) -> dict[int, Exception]:
    return {job.id: outcome for group in fetch.values() for job in group}


def handle_messages(services: Services, jobs: list[Job]) -> dict[int, Exception | None]:
    """Process a batch of message jobs of one connection; return each job's outcome."""
    connection_id = jobs[0].connection_id
    db = services.db()
    connection = load_connection(db, connection_id)
    if connection is None or connection["status"] == "disconnected":
        return {job.id: None for job in jobs}  # the user disconnected: these no longer matter
    if connection["status"] != "active":
        # Visible, and retryable (`flask --app wsgi queue retry-dead`) once the user reconnects.
        return {job.id: PermanentError("reconnect_required") for job in jobs}
    outcomes: dict[int, Exception | None] = {}
    fetch: dict[str, list[Job]] = {}
    for job in jobs:
        if job.payload["change_type"] == "deleted":
            threads.mark_deleted(db, connection_id, job.payload["message_id"])
            outcomes[job.id] = None
        else:
            fetch.setdefault(job.payload["message_id"], []).append(job)
    if not fetch:
        return outcomes
    graph = services.graph_for(connection_id)
    try:
        with graph_failures(services, connection_id):
            results = graph.get_messages(list(fetch), MESSAGE_SELECT, ATTACHMENTS_EXPAND)
    except (RetryLater, PermanentError) as e:
        return {**outcomes, **_every_job(fetch, e)}
    fetched = {message_id: results.get(message_id, (0, None, {})) for message_id in fetch}
    found = [message_id for message_id, (status, _, _) in fetched.items() if status == 200]
    linked = link_graph_messages(db, connection, [fetched[message_id][1] for message_id in found])
    with_records = [message_id for message_id, records in zip(found, linked) if records]
    try:
        with graph_failures(services, connection_id):
            store_attachments(services, connection_id, [fetched[message_id][1] for message_id in with_records])
    except (RetryLater, PermanentError) as e:  # linked, but an attachment could not be read: again later
        return {**outcomes, **_every_job(fetch, e)}
    now = time.time()
    for job in (job for message_id, records in zip(found, linked) if records for job in fetch[message_id]):
        metrics.NOTIFICATION_TO_LINKED.observe(max(0.0, now - job.created_at))  # created: received
    for message_id, (status, body, headers) in fetched.items():
        outcome = None if status == 200 else _batch_item_outcome(services, connection_id, status, body, headers)
        outcomes.update({job.id: outcome for job in fetch[message_id]})
    return outcomes
