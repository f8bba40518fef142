"""Backfill: when a mailbox connects from a record, link the record's conversation already in it."""

from __future__ import annotations

import logging

from app.microsoft.graph import MESSAGE_SELECT
from app.records.linking import link_graph_message, load_connection
from app.records.services import Services

log = logging.getLogger(__name__)


def backfill_record(services: Services, connection_id: int, record_id: int) -> int:
    """Find the record's known emails in the newly connected mailbox and link their conversations."""
    db = services.db()
    connection = load_connection(db, connection_id)
    graph = services.graph_for(connection_id)
    known = [row["message_id"] for row in db.query(
        "SELECT message_id FROM thread_message_ids WHERE record_id = ?", [record_id])]
    conversations: set[str] = set()
    linked = 0
    for message_id in known:
        quoted = message_id.replace("'", "''")
        for message in graph.find_messages(f"internetMessageId eq '{quoted}'", MESSAGE_SELECT):
            linked += bool(link_graph_message(db, connection, message))
            if message.get("conversationId"):
                conversations.add(message["conversationId"])
    for conversation_id in conversations:
        quoted = conversation_id.replace("'", "''")
        for message in graph.find_messages(f"conversationId eq '{quoted}'", MESSAGE_SELECT):
            linked += bool(link_graph_message(db, connection, message))
    log.info("Backfill: %d message(s) linked for record %s", linked, record_id,
             extra={"connection_id": connection_id})
    return linked
