"""Backfill: when a mailbox connects from a record, link the record's conversation already in it."""

from __future__ import annotations

import logging
from itertools import islice
from typing import Any

from app.microsoft.graph import MESSAGE_SELECT
from app.records.linked_attachments import link_with_attachments
from app.records.linking import load_connection
from app.records.services import Services

log = logging.getLogger(__name__)

PAGE = 50  # messages linked together (and asked for per page)


def backfill_record(services: Services, connection_id: int, record_id: int) -> int:
    """Find the record's known emails in the newly connected mailbox and link their conversations."""
    db = services.db()
    connection = load_connection(db, connection_id)
    known = [row["message_id"] for row in db.query(
        "SELECT message_id FROM thread_message_ids WHERE record_id = ?", [record_id])]
    linked, conversations = 0, set()
    for message_id in known:
        found, seen = _link_found(services, connection, f"internetMessageId eq '{_quoted(message_id)}'")
        linked, conversations = linked + found, conversations | seen
    for conversation_id in conversations:
        linked += _link_found(services, connection, f"conversationId eq '{_quoted(conversation_id)}'")[0]
    log.info("Backfill: %d message(s) linked for record %s", linked, record_id,
             extra={"connection_id": connection_id})
    return linked


def _quoted(text: str) -> str:
    return text.replace("'", "''")


def _link_found(services: Services, connection: dict[str, Any], filter_: str) -> tuple[int, set[str]]:
    """Link the mailbox's messages matching ``filter_``, a page of them at a time, with their
    attachments; return how many were linked and the conversationIds they carry."""
    linked, conversations = 0, set()
    messages = services.graph_for(connection["id"]).find_messages(filter_, MESSAGE_SELECT, top=PAGE)
    while page := list(islice(messages, PAGE)):
        linked += link_with_attachments(services, connection, page)
        conversations.update(message["conversationId"] for message in page if message.get("conversationId"))
    return linked, conversations
