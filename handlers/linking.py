"""Fetched Graph messages → record threads, shared by notifications, backfill, reconcile and sends."""

from __future__ import annotations

import logging
from typing import Any

from app.services import Services
from handlers.matching import CandidateMessage, match_record
from app.timeutil import now_iso
from handlers.thread_store import SqliteThreadKeys, link_message, mark_deleted

log = logging.getLogger(__name__)

# internetMessageHeaders only come back when $select-ed; they carry In-Reply-To and References.
MESSAGE_SELECT = ",".join((
    "id", "internetMessageId", "conversationId", "conversationIndex", "isDraft", "subject", "from",
    "toRecipients", "ccRecipients", "sentDateTime", "receivedDateTime", "bodyPreview", "body",
    "parentFolderId", "changeKey", "internetMessageHeaders",
))


def load_connection(services: Services, connection_id: int) -> dict[str, Any] | None:
    rows = list(services.db().query("SELECT id, tenant_id, user_id, email, status FROM connections WHERE id = ?",
                                    [connection_id]))
    return rows[0] if rows else None


def link_graph_message(services: Services, connection: dict[str, Any], message: dict[str, Any], *,
                       source: str = "graph") -> list[int]:
    """Link ``message`` to every record the threading rules tie it to; return their ids.

    An unrelated message (or a draft) is not stored at all.
    """
    db = services.db()
    match = match_record(SqliteThreadKeys(db), CandidateMessage.from_graph(message, connection["id"]))
    if match is None:
        return []
    for record_id in match.record_ids:
        link_message(db, record_id, connection["id"], message, mailbox_address=connection["email"] or "",
                     source=source, reason=match.reason)
    return list(match.record_ids)


def mark_message_deleted(services: Services, connection_id: int, graph_id: str) -> None:
    """The message left the mailbox: keep it in the record's history, marked deleted."""
    mark_deleted(services.db(), connection_id, graph_id)


def link_sent_message(services: Services, outbox: dict[str, Any], draft: dict[str, Any],
                      request: dict[str, Any]) -> None:
    """Put a message the service just sent on its record at once (outbound, source ``sent``).

    The draft's immutable id is also the Sent Items copy's id, so the later Sent Items
    notification updates this same entry instead of adding a second one.
    """
    db = services.db()
    sent = {**draft, "isDraft": False, "internetMessageId": outbox["internet_message_id"],
            "from": {"emailAddress": {"address": outbox["email"] or ""}}, "sentDateTime": now_iso()}
    entry = link_message(db, outbox["record_id"], outbox["connection_id"], sent, mailbox_address=outbox["email"] or "",
                         source="sent", reason="sent")
    if request["automated"]:
        db.execute("UPDATE messages SET automated = 1 WHERE id = ?", [entry])
