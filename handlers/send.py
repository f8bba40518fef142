"""Sending a record's mail as the connected user, exactly once per outbox row.

The Message-ID is minted and stored before anything touches the mailbox, then the draft's
immutable id is stored before ``send``. A retry after a crash therefore always finds its own draft
(by id, or by Message-ID if the crash came before the id was stored): still a draft → send it;
already sent → just record it. Nothing is ever sent twice.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
from typing import Any

from app.connections import mark_reconnect_required
from app.graph import GraphClient, GraphError, NotFound, Throttled
from app.identity import IdentityConfigError, IdentityUnavailable, ReconnectRequired
from app.services import Services
from app.timeutil import now_iso
from handlers.errors import PermanentError, RetryLater
from handlers.failures import retry_after_throttle
from handlers.linking import MESSAGE_SELECT, link_sent_message
from handlers.queue import Job
from handlers.thread_store import add_message_id

log = logging.getLogger(__name__)

DOMAIN = socket.getfqdn() or "outlook-integration.local"


def mint_message_id(record_id: int) -> str:
    """A Message-ID that names the record, so replies to it find their way back (rule 1)."""
    return f"<rec{record_id}.{secrets.token_hex(12)}@{DOMAIN}>"


def _recipients(addresses: list[str]) -> list[dict[str, Any]]:
    return [{"emailAddress": {"address": address}} for address in addresses]


def _update(services: Services, outbox_id: int, **fields: Any) -> None:
    assignments = ", ".join(f"{name} = ?" for name in fields)
    services.db().execute(f"UPDATE outbox SET {assignments}, updated_at = ? WHERE id = ?",
                          [*fields.values(), now_iso(), outbox_id])


def _reply_target(services: Services, record_id: int, connection_id: int) -> dict[str, Any] | None:
    """The newest message of the record's conversation that sits in this mailbox."""
    rows = list(services.db().query(
        """
        SELECT mc.graph_id, m.subject FROM message_copies mc JOIN messages m ON m.id = mc.message_id
        WHERE m.record_id = ? AND mc.connection_id = ? AND mc.deleted_at IS NULL
        ORDER BY COALESCE(mc.received_at, m.sent_at) DESC, m.id DESC LIMIT 1
        """, [record_id, connection_id]))
    return rows[0] if rows else None


def _thread_participants(services: Services, record_id: int, own_address: str) -> tuple[list[str], str]:
    """Everyone the record's conversation involved (but the sender), and its first subject."""
    addresses: dict[str, None] = {}
    subject = ""
    for row in services.db().query("SELECT from_address, to_addresses, cc_addresses, subject FROM messages "
                                   "WHERE record_id = ? ORDER BY COALESCE(sent_at, created_at), id", [record_id]):
        subject = subject or (row["subject"] or "")
        for address in [row["from_address"], *(a["address"] for a in json.loads(row["to_addresses"])),
                        *(a["address"] for a in json.loads(row["cc_addresses"]))]:
            if address and address.lower() != own_address.lower():
                addresses.setdefault(address.lower())
    return list(addresses), subject


def _compose(services: Services, graph: GraphClient, outbox: dict[str, Any], request: dict[str, Any],
             own_address: str) -> dict[str, Any]:
    """Create the draft (a reply where the mailbox holds the conversation) carrying our Message-ID."""
    body = {"contentType": request["body_type"], "content": request["body"]}
    changes: dict[str, Any] = {"body": body, "internetMessageId": outbox["internet_message_id"]}
    target = _reply_target(services, outbox["record_id"], outbox["connection_id"]) if request["reply"] else None
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
        participants, first_subject = _thread_participants(services, outbox["record_id"], own_address)
        to = to or participants
        subject = subject or (first_subject if first_subject.lower().startswith("re:") else f"Re: {first_subject}")
        if not to:
            raise PermanentError("no_recipients")
    return graph.create_draft({**changes, "subject": subject or "", "toRecipients": _recipients(to),
                               "ccRecipients": _recipients(request["cc"])})


def _existing_draft(graph: GraphClient, outbox: dict[str, Any]) -> dict[str, Any] | None:
    """Our draft from an earlier attempt, by stored id or else by our Message-ID."""
    if outbox["draft_id"]:
        try:
            return graph.get_message(outbox["draft_id"], MESSAGE_SELECT)
        except NotFound:
            raise PermanentError("draft_deleted") from None
    quoted = outbox["internet_message_id"].replace("'", "''")
    return next(graph.find_messages(f"internetMessageId eq '{quoted}'", MESSAGE_SELECT, top=1), None)


def send(services: Services, outbox_id: int) -> None:
    db = services.db()
    rows = list(db.query("SELECT o.*, c.status AS connection_status, c.status_reason, c.email FROM outbox o "
                         "JOIN connections c ON c.id = o.connection_id WHERE o.id = ?", [outbox_id]))
    if not rows or rows[0]["status"] in ("sent", "failed"):
        return
    outbox = rows[0]
    if outbox["connection_status"] != "active":
        _update(services, outbox_id, status="failed", error=f"reconnect_required: {outbox['status_reason']}")
        return
    request = json.loads(outbox["request"])
    if not outbox["internet_message_id"]:
        outbox["internet_message_id"] = mint_message_id(outbox["record_id"])
        with db.atomic():
            _update(services, outbox_id, status="sending", internet_message_id=outbox["internet_message_id"])
            add_message_id(db, outbox["record_id"], outbox["internet_message_id"], generated=True)
    graph = services.graph_for(outbox["connection_id"])
    draft = _existing_draft(graph, outbox)
    if draft is None:
        draft = _compose(services, graph, outbox, request, outbox["email"] or "")
        _update(services, outbox_id, draft_id=draft["id"])
    if draft.get("isDraft", True):
        try:
            graph.send_draft(draft["id"])
        except GraphError as e:
            if not isinstance(e, Throttled) and e.status < 500:
                graph.delete_draft(draft["id"])  # our own unsent draft: the one thing we may delete
            raise
    with db.atomic():
        _update(services, outbox_id, status="sent", error=None, sent_at=now_iso())
        link_sent_message(services, outbox, draft, request)
    log.info("Outbox: sent %s", outbox_id, extra={"connection_id": outbox["connection_id"]})


def handle_send(services: Services, job: Job) -> None:
    """Worker entry point: map failures to retry, dead letter, or a failed send with its reason."""
    outbox_id = job.payload["outbox_id"]
    try:
        send(services, outbox_id)
    except ReconnectRequired as e:
        mark_reconnect_required(services, job.connection_id, e.reason)
    except Throttled as e:
        _update(services, outbox_id, error=f"retrying: {e}")
        raise retry_after_throttle(e) from None
    except IdentityUnavailable as e:
        _update(services, outbox_id, error=f"retrying: {e}")
        raise RetryLater("identity_unavailable", e.retry_after) from None
    except (GraphError, IdentityConfigError, PermanentError) as e:
        reason = e.message if isinstance(e, GraphError) else str(e)
        _update(services, outbox_id, status="failed", error=reason[:500])
        raise PermanentError("send_failed") from None
