"""The worker's table of job kinds and their handlers."""

from __future__ import annotations

from functools import partial

from app.microsoft.graph import BATCH_LIMIT  # a mailbox's message jobs are fetched in one $batch
from app.records.services import Services
from handlers.lifecycle import handle_lifecycle
from handlers.message import handle_messages
from handlers.reconcile import handle_reconcile
from handlers.send import handle_send
from handlers.subscribe import handle_connect, handle_subscribe
from handlers.worker import BatchHandler, Handler

# A burst's notifications come in several POSTs close together; a fresh partial batch waits this long
# for the rest, so the burst is fetched in full $batches (bench.e2e's burst stage measures it).
GATHER_SECONDS = 0.05


def build_handlers(services: Services) -> dict[str, Handler]:
    return {
        "message": BatchHandler(partial(handle_messages, services), size=BATCH_LIMIT, gather=GATHER_SECONDS),
        "lifecycle": partial(handle_lifecycle, services),
        "connect": partial(handle_connect, services),
        "subscribe": partial(handle_subscribe, services),
        "reconcile": partial(handle_reconcile, services),
        "send": partial(handle_send, services),
    }
