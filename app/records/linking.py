"""Fetched Graph messages → record threads, shared by notifications, backfill, reconcile and sends.

:func:`link_graph_messages` asks the threading rules (:mod:`app.records.matching`) which records
each message belongs to and links it to each; an unrelated message (or a draft) is not stored at all.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.core.timeutil import now_iso
from app.records import organizations, threads
from app.records.matching import CandidateMessage, match_messages


def load_connection(db: Database, connection_id: int) -> dict[str, Any] | None:
    """The connection, with the organization its tenant belongs to (read once, so linking a batch of
    messages does not ask it for each)."""
    rows = list(db.query("SELECT id, tenant_id, user_id, email, status FROM connections WHERE id = ?",
                         [connection_id]))
    return {**rows[0], "organization_id": organizations.of_tenant(db, rows[0]["tenant_id"])} if rows else None


def link_graph_messages(db: Database, connection: dict[str, Any], messages: list[dict[str, Any]], *,
                        source: str = "graph") -> list[list[int]]:
    """Link each of a mailbox's ``messages`` to every record the threading rules tie it to; return
    each one's record ids (none: unrelated, not stored). ``connection`` is as :func:`load_connection`
    reads it.

    Only records of the mailbox's organization count (isolation rule 2): a reply citing a Message-ID
    another customer's record knows is not linked there.
    """
    keys = threads.StoredThreadKeys(db, connection["organization_id"])
    matches = match_messages(keys, [CandidateMessage.from_graph(message, connection["id"]) for message in messages])
    links = [threads.Link(record_id, message, match.reason) for message, match in zip(messages, matches)
             if match is not None for record_id in match.record_ids]
    threads.link_messages(db, connection["id"], links, mailbox_address=connection["email"] or "", source=source)
    return [list(match.record_ids) if match else [] for match in matches]


def link_graph_message(db: Database, connection: dict[str, Any], message: dict[str, Any], *,
                       source: str = "graph") -> list[int]:
    """:func:`link_graph_messages` of one message."""
    return link_graph_messages(db, connection, [message], source=source)[0]


def link_sent_message(db: Database, send: dict[str, Any], draft: dict[str, Any]) -> None:
    """Put a message the service just sent (an outbox row, :mod:`app.records.outbox`) on its record at
    once (outbound, source ``sent``).

    The draft's immutable id is also the Sent Items copy's id, so the later Sent Items
    notification updates this same entry instead of adding a second one.
    """
    sent = {**draft, "isDraft": False, "internetMessageId": send["internet_message_id"],
            "from": {"emailAddress": {"address": send["email"] or ""}}, "sentDateTime": now_iso()}
    entry = threads.link_message(db, send["record_id"], send["connection_id"], sent,
                                 mailbox_address=send["email"] or "", source="sent", reason="sent")
    if send["request"]["automated"]:
        threads.mark_automated(db, entry)
