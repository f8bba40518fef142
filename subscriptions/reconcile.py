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

from app.graph import GraphError
from app.services import Services
from app.timeutil import now_iso, odata, parse_iso
from handlers.linking import MESSAGE_SELECT, link_graph_message, load_connection, mark_message_deleted

log = logging.getLogger(__name__)

FOLDERS = ("inbox", "sentitems")
INITIAL_WINDOW = timedelta(days=30)
RESYNC_MARGIN = timedelta(hours=1)


def enqueue_reconcile(services: Services, connection_id: int, reason: str) -> None:
    """Queue a reconcile, unless one is already waiting to run for this connection."""
    services.queue.enqueue_unless_pending("reconcile", {"connection_id": connection_id, "reason": reason},
                                          connection_id=connection_id)


def _delta_state(services: Services, connection_id: int, folder: str) -> dict[str, Any]:
    rows = list(services.db().query("SELECT * FROM delta_state WHERE connection_id = ? AND folder = ?",
                                    [connection_id, folder]))
    return rows[0] if rows else {"delta_link": None, "last_received_at": None}


def _save_delta_state(services: Services, connection_id: int, folder: str, delta_link: str | None,
                      last_received_at: str | None) -> None:
    services.db().execute(
        """
        INSERT INTO delta_state (connection_id, folder, delta_link, last_received_at, synced_at)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (connection_id, folder) DO UPDATE SET delta_link = excluded.delta_link,
            last_received_at = COALESCE(excluded.last_received_at, last_received_at), synced_at = excluded.synced_at
        """, [connection_id, folder, delta_link, last_received_at, now_iso()])


def _sync_folder(services: Services, connection: dict[str, Any], folder: str, since: str | None) -> int:
    """Follow one folder's delta to its new deltaLink; return how many messages were linked."""
    graph = services.graph_for(connection["id"])
    state = _delta_state(services, connection["id"], folder)
    link = None if since else state["delta_link"]
    if link is None and since is None:
        since = odata(services.clock() - INITIAL_WINDOW)
    linked, newest = 0, state["last_received_at"]
    delta_link = None
    for page in graph.delta_pages(folder, link, MESSAGE_SELECT, received_since=since):
        for item in page.get("value", []):
            if "@removed" in item:
                mark_message_deleted(services, connection["id"], item["id"])
                continue
            linked += bool(link_graph_message(services, connection, item))
            received = item.get("receivedDateTime")
            if received and (newest is None or received > newest):
                newest = received
        delta_link = page.get("@odata.deltaLink", delta_link)
    _save_delta_state(services, connection["id"], folder, delta_link, newest)
    return linked


def _restart_window(services: Services, connection_id: int, folder: str) -> str:
    last = _delta_state(services, connection_id, folder)["last_received_at"]
    start = parse_iso(last) - RESYNC_MARGIN if last else services.clock() - INITIAL_WINDOW
    return odata(start)


def reconcile(services: Services, connection_id: int) -> int:
    """Delta-sync the connection's folders; return how many messages were linked (or re-linked)."""
    connection = load_connection(services, connection_id)
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


def backfill_record(services: Services, connection_id: int, record_id: int) -> int:
    """Find the record's known emails in the newly connected mailbox and link their conversations."""
    connection = load_connection(services, connection_id)
    graph = services.graph_for(connection_id)
    known = [row["message_id"] for row in services.db().query(
        "SELECT message_id FROM thread_message_ids WHERE record_id = ?", [record_id])]
    conversations: set[str] = set()
    linked = 0
    for message_id in known:
        quoted = message_id.replace("'", "''")
        for message in graph.find_messages(f"internetMessageId eq '{quoted}'", MESSAGE_SELECT):
            linked += bool(link_graph_message(services, connection, message))
            if message.get("conversationId"):
                conversations.add(message["conversationId"])
    for conversation_id in conversations:
        quoted = conversation_id.replace("'", "''")
        for message in graph.find_messages(f"conversationId eq '{quoted}'", MESSAGE_SELECT):
            linked += bool(link_graph_message(services, connection, message))
    log.info("Backfill: %d message(s) linked for record %s", linked, record_id,
             extra={"connection_id": connection_id})
    return linked
