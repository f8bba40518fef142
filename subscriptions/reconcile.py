"""Catching up with delta queries: the backstop for anything notifications missed.

Per connection, the inbox and Sent Items are each followed with a stored deltaLink. A reconcile
runs after ``missed`` and ``subscriptionRemoved``, after downtime, when a mailbox connects, and
every ``RECONCILE_INTERVAL_SECONDS``. A delta token Graph no longer knows (410 or
``syncStateNotFound``) restarts the folder from a time window. Every message goes through the
same idempotent linking as notifications.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from app.core.timeutil import odata, parse_iso
from app.microsoft.failures import GraphError
from app.microsoft.graph import MESSAGE_SELECT
from app.records import delta_state, threads
from app.records.linked_attachments import link_with_attachments
from app.records.linking import load_connection
from app.records.services import Services

log = logging.getLogger(__name__)

FOLDERS = ("inbox", "sentitems")
INITIAL_WINDOW = timedelta(days=30)
RESYNC_MARGIN = timedelta(hours=1)


def enqueue_reconcile(services: Services, connection_id: int, reason: str) -> None:
    """Queue a reconcile, unless one is already waiting to run for this connection."""
    services.queue.enqueue_unless_pending("reconcile", {"connection_id": connection_id, "reason": reason},
                                          connection_id=connection_id)


def _sync_folder(services: Services, connection: dict[str, Any], folder: str, since: str | None) -> int:
    """Follow one folder's delta to its new deltaLink; return how many messages were linked."""
    graph, db = services.graph_for(connection["id"]), services.db()
    state = delta_state.load(db, connection["id"], folder)
    link = None if since else state["delta_link"]
    if link is None and since is None:
        since = odata(services.clock() - INITIAL_WINDOW)
    linked, newest = 0, state["last_received_at"]
    delta_link = None
    for page in graph.delta_pages(folder, link, MESSAGE_SELECT, received_since=since):
        items = page.get("value", [])
        for item in items:
            if "@removed" in item:
                threads.mark_deleted(db, connection["id"], item["id"])
        present = [item for item in items if "@removed" not in item]
        linked += link_with_attachments(services, connection, present)
        newest = max([newest or "", *(item.get("receivedDateTime") or "" for item in present)]) or None
        delta_link = page.get("@odata.deltaLink", delta_link)
    delta_state.save(db, connection["id"], folder, delta_link, newest)
    return linked


def _restart_window(services: Services, connection_id: int, folder: str) -> str:
    last = delta_state.load(services.db(), connection_id, folder)["last_received_at"]
    start = parse_iso(last) - RESYNC_MARGIN if last else services.clock() - INITIAL_WINDOW
    return odata(start)


def reconcile(services: Services, connection_id: int) -> int:
    """Delta-sync the connection's folders; return how many messages were linked (or re-linked)."""
    connection = load_connection(services.db(), connection_id)
    if connection is None or connection["status"] != "active":
        return 0
    linked = 0
    for folder in FOLDERS:
        try:
            linked += _sync_folder(services, connection, folder, None)
        except GraphError as e:
            if e.status != 410 and e.code != "syncStateNotFound":
                raise
            log.warning("Reconcile: delta token of %s expired, resyncing from a time window", folder,
                        extra={"connection_id": connection_id})
            linked += _sync_folder(services, connection, folder, _restart_window(services, connection_id, folder))
    log.info("Reconcile: %d message(s) linked", linked, extra={"connection_id": connection_id})
    return linked
