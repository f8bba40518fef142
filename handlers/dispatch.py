"""The worker's table of job kinds and their handlers."""

from __future__ import annotations

from functools import partial

from app.services import Services
from handlers.failures import graph_failures
from handlers.lifecycle import handle_lifecycle
from handlers.message import handle_messages
from handlers.queue import Job
from handlers.send import handle_send
from handlers.subscribe import handle_connect, handle_subscribe
from handlers.worker import BatchHandler, Handler
from subscriptions.reconcile import reconcile


def handle_reconcile(services: Services, job: Job) -> None:
    with graph_failures(services, job.connection_id):
        reconcile(services, job.payload["connection_id"])


def build_handlers(services: Services) -> dict[str, Handler]:
    return {
        "message": BatchHandler(partial(handle_messages, services), size=20),
        "lifecycle": partial(handle_lifecycle, services),
        "connect": partial(handle_connect, services),
        "subscribe": partial(handle_subscribe, services),
        "reconcile": partial(handle_reconcile, services),
        "send": partial(handle_send, services),
    }
