"""Sending a record's mail as the connected user, exactly once per outbox row.

The Message-ID is minted and stored before anything touches the mailbox, then the draft's
immutable id is stored before ``send``. A retry after a crash therefore always finds its own draft
(by id, or by Message-ID if the crash came before the id was stored): still a draft → send it;
already sent → just record it. Nothing is ever sent twice.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import socket
from typing import Any

from sqlite_utils import Database

from app.core.queue import Job
from app.microsoft.failures import FAILURES, GraphError, Kind, NotFound, Throttled, classify
from app.microsoft.graph import MESSAGE_SELECT, UPLOAD_SESSION_BYTES, GraphClient
from app.records import outbox
from app.records.connections import mark_reconnect_required, unusable_reason
from app.records.services import Services
from handlers.errors import PermanentError
from handlers.failures import job_error

log = logging.getLogger(__name__)

DOMAIN = socket.getfqdn() or "outlook-integration.local"
# A file attachment's own properties need the type cast in $select (https://learn.microsoft.com/graph/api/attachment-get).
ATTACHMENT_MARKER_SELECT = "id,microsoft.graph.fileAttachment/contentId"


def mint_message_id(record_id: int) -> str:
    """A Message-ID that names the record, so replies to it find their way back (rule 1)."""
    return f"<rec{record_id}.{secrets.token_hex(12)}@{DOMAIN}>"


def _recipients(addresses: list[str]) -> list[dict[str, Any]]:
    return [{"emailAddress": {"address": address}} for address in addresses]


def _reply_target(db: Database, record_id: int, connection_id: int) -> dict[str, Any] | None:
    """The newest message of the record's conversation that sits in this mailbox."""
    rows = list(db.query(
        """
        SELECT mc.graph_id, m.subject FROM message_copies mc JOIN messages m ON m.id = mc.message_id
        WHERE m.record_id = ? AND mc.connection_id = ? AND mc.deleted_at IS NULL
        ORDER BY COALESCE(mc.received_at, m.sent_at) DESC, m.id DESC LIMIT 1
        """, [record_id, connection_id]))
    return rows[0] if rows else None


def _thread_participants(db: Database, record_id: int, own_address: str) -> tuple[list[str], str]:
    """Everyone the record's conversation involved (but the sender), and its first subject."""
    addresses: dict[str, None] = {}
    subject = ""
    for row in db.query("SELECT from_address, to_addresses, cc_addresses, subject FROM messages "
                                   "WHERE record_id = ? ORDER BY COALESCE(sent_at, created_at), id", [record_id]):
        subject = subject or (row["subject"] or "")
        for address in [row["from_address"], *(a["address"] for a in json.loads(row["to_addresses"])),
                        *(a["address"] for a in json.loads(row["cc_addresses"]))]:
            if address and address.lower() != own_address.lower():
                addresses.setdefault(address.lower())
    return list(addresses), subject


def _compose(db: Database, graph: GraphClient, row: dict[str, Any], request: dict[str, Any],
             own_address: str) -> dict[str, Any]:
    """Create the draft (a reply where the mailbox holds the conversation) carrying our Message-ID."""
    body = {"contentType": request["body_type"], "content": request["body"]}
    changes: dict[str, Any] = {"body": body, "internetMessageId": row["internet_message_id"]}
    target = _reply_target(db, row["record_id"], row["connection_id"]) if request["reply"] else None
    if target is not None:
        draft = graph.create_reply(target["graph_id"])
        if request["to"]:
            changes["toRecipients"] = _recipients(request["to"])
        if request["cc"]:
            changes["ccRecipients"] = _recipients(request["cc"])
        if request["subject"]:
            changes["subject"] = request["subject"]
        return graph.update_draft(draft["id"], changes)
    to, subject = request["to"], request["subject"]
    if request["reply"]:  # nothing of the conversation in this mailbox: write to its participants
        participants, first_subject = _thread_participants(db, row["record_id"], own_address)
        to = to or participants
        subject = subject or (first_subject if first_subject.lower().startswith("re:") else f"Re: {first_subject}")
        if not to:
            raise PermanentError("no_recipients")
    return graph.create_draft({**changes, "subject": subject or "", "toRecipients": _recipients(to),
                               "ccRecipients": _recipients(request["cc"])})


def _existing_draft(graph: GraphClient, row: dict[str, Any]) -> dict[str, Any] | None:
    """Our draft from an earlier attempt, by stored id or else by our Message-ID (an attempt that
    stopped between creating the draft and storing its id)."""
    if row["draft_id"]:
        try:
            return graph.get_message(row["draft_id"], MESSAGE_SELECT)
        except NotFound:
            raise PermanentError("draft_deleted") from None
    quoted = row["internet_message_id"].replace("'", "''")
    return next(graph.find_messages(f"internetMessageId eq '{quoted}'", MESSAGE_SELECT, top=1), None)


def _attachment_marker(outbox_id: int, position: int) -> str:
    """The ``contentId`` a send's attachment carries on its draft, so a retry sees it is there."""
    return f"outbox{outbox_id}.{position}@{DOMAIN}"


def _attach(db: Database, graph: GraphClient, row: dict[str, Any], draft_id: str) -> None:
    """Put the send's files on its draft, each once: a retry after a crash first asks the draft
    which it already carries (an upload cut off between two ranges left no attachment, so that one
    is uploaded again, whole)."""
    files = row["request"].get("attachments") or []
    if not files:
        return
    present = {a.get("contentId") for a in graph.list_attachments(draft_id, ATTACHMENT_MARKER_SELECT)}
    for position, file in enumerate(files):
        marker = _attachment_marker(row["id"], position)
        if marker in present:
            continue
        content = outbox.attachment_content(db, row["id"], position)
        item = {"name": file["name"], "contentType": file["content_type"], "isInline": False, "contentId": marker}
        if len(content) < UPLOAD_SESSION_BYTES:
            graph.add_attachment(draft_id, {"@odata.type": "#microsoft.graph.fileAttachment", **item,
                                            "contentBytes": base64.b64encode(content).decode()})
        else:
            graph.upload_attachment(draft_id, item, content)


def _delete_own_draft(graph: GraphClient, draft_id: str) -> None:
    """Delete our own unsent draft, the one mailbox item the service may delete. If that fails too,
    the send's own failure is still the one that counts (a throttled delete must not turn a refused
    send into a retry)."""
    try:
        graph.delete_draft(draft_id)
    except FAILURES as e:
        log.warning("Outbox: could not delete an unsent draft (%s)", classify(e).reason)


def send(services: Services, db: Database, outbox_id: int) -> None:
    """Carry out one send request, resuming wherever an earlier attempt stopped."""
    row = outbox.pending(db, outbox_id)
    if row is None:
        return
    if row["connection_status"] != "active":
        outbox.fail(db, outbox_id, unusable_reason(row["connection_status"], row["status_reason"]))
        return
    graph = services.graph_for(row["connection_id"])
    if row["internet_message_id"]:  # an earlier attempt got this far: its draft may exist
        draft = _existing_draft(graph, row)
    elif outbox.start_sending(db, row, mint_message_id(row["record_id"])):  # the first attempt: no draft yet
        draft = None
    else:  # its record was purged after the request was read: it must not go out
        return
    if draft is None:
        draft = _compose(db, graph, row, row["request"], row["email"] or "")
        outbox.remember_draft(db, outbox_id, draft["id"])
    if draft.get("isDraft", True):
        try:  # a refusal of the attachments (the message too large) or of the send leaves no draft
            _attach(db, graph, row, draft["id"])
            graph.send_draft(draft["id"])
        except GraphError as e:
            if not isinstance(e, Throttled) and e.status < 500:
                _delete_own_draft(graph, draft["id"])
            raise
    outbox.mark_sent(db, row, draft)
    log.info("Outbox: sent %s", outbox_id, extra={"connection_id": row["connection_id"]})


def handle_send(services: Services, job: Job) -> None:
    """Worker entry point: a failure is retried, or fails the send with its reason, as
    :mod:`app.microsoft.failures` says sends must treat it (``Failure.for_send``)."""
    outbox_id, db = job.payload["outbox_id"], services.db()
    try:
        send(services, db, outbox_id)
    except FAILURES as e:
        failure = classify(e)
        kind = failure.for_send
        if kind is Kind.RECONNECT:  # fails this send and the mailbox's other pending ones; nothing to retry
            mark_reconnect_required(services, job.connection_id, failure.detail)
            return
        if kind in (Kind.TRANSIENT, Kind.DEFERRED):
            outbox.note_retrying(db, outbox_id, str(e))
            raise job_error(services, job.connection_id, failure, kind) from None
        outbox.fail(db, outbox_id, failure.detail)
        raise PermanentError("send_failed") from None
    except PermanentError as e:
        outbox.fail(db, outbox_id, str(e))
        raise PermanentError("send_failed") from None
