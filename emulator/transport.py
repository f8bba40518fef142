"""Composing and sending: drafts, createReply, reply, send, sendMail.

A sent message lands in the sender's Sent Items (its REST id changes, its immutable id stays) and a
copy, with the same ``internetMessageId`` and Thread-Index, arrives in the inbox of every recipient
who is an emulator user, so two-user conversations can be played out. As reported for Exchange, the
Sent Items copy does not show the custom ``x-`` headers; the recipients' copies do. Every copy carries
the attachments, each copy's with ids of its own. A new message, createReply's ``message`` and
sendMail's may hold ``attachments`` (https://learn.microsoft.com/graph/api/user-sendmail,
https://learn.microsoft.com/graph/api/message-createreply); a message over
:attr:`~emulator.mail_limits.MailLimits.max_message_bytes` is not sent (413 ``ErrorMessageSizeExceeded``).
"""

from __future__ import annotations

import html
import re
from datetime import datetime

from emulator.attachments import SUMMARY, attach, from_graph
from emulator.errors import GraphError, bad_request
from emulator.fields import apply_fields
from emulator.mailbox import ChangeEvent, Mailbox
from emulator.mailstore import Incoming, MailStore
from emulator.message import (
    PROPERTIES,
    Message,
    address_of,
    conversation_id,
    new_internet_message_id,
    new_thread_index,
    reply_index,
)
from emulator.mime import MimeMessage

Outgoing = tuple[Incoming, list[str]]
_REPLY_PREFIX = re.compile(r"^(?:(?:RE|FW|FWD|AW|WG)\s*:\s*)+", re.IGNORECASE)


def create_draft(store: MailStore, mailbox: Mailbox, data: dict) -> Message:
    """``POST /messages``: a new draft in Drafts, in a conversation of its own."""
    def change(now: datetime) -> tuple[Message, list[ChangeEvent]]:
        draft = _new_draft(mailbox, now, new_thread_index(now))
        _write(draft, data, now)
        return draft, mailbox.add(draft, now)
    return store.mutate(mailbox, change)


def create_reply(store: MailStore, mailbox: Mailbox, message_id: str, data: dict) -> Message:
    """``POST /messages/{id}/createReply``: a draft answering the original's sender (or its ``replyTo``).

    Exchange fills In-Reply-To and References and keeps the conversation; the client may then PATCH it.
    """
    comment, overrides = _reply_arguments(data)

    def change(now: datetime) -> tuple[Message, list[ChangeEvent]]:
        original = mailbox.get(message_id)
        draft = _new_draft(mailbox, now, reply_index(original.conversation_index, now))
        draft.subject = "RE: " + _REPLY_PREFIX.sub("", original.subject)
        draft.to = list(original.reply_to) or ([original.from_] if original.from_ else [])
        draft.in_reply_to = original.internet_message_id
        draft.references = [*original.references, original.internet_message_id]
        draft.body = {"contentType": "html", "content": _quote(comment, original)}
        _write(draft, overrides, now)
        return draft, mailbox.add(draft, now)
    return store.mutate(mailbox, change)


def reply(store: MailStore, mailbox: Mailbox, message_id: str, data: dict) -> None:
    """``POST /messages/{id}/reply``: createReply and send in one step; a reply that cannot go leaves no draft."""
    draft = create_reply(store, mailbox, message_id, data)
    try:
        send_draft(store, mailbox, draft.immutable_id)
    except GraphError:
        store.mutate(mailbox, lambda now: (None, mailbox.remove(draft, now)))
        raise


def send_draft(store: MailStore, mailbox: Mailbox, message_id: str) -> None:
    """``POST /messages/{id}/send``: the draft moves to Sent Items and copies go to emulator recipients."""
    def change(now: datetime) -> tuple[Outgoing, list[ChangeEvent]]:
        draft = mailbox.get(message_id)
        if not draft.is_draft:
            raise bad_request("Only a draft can be sent.", "ErrorInvalidOperation")
        _check_recipients(draft)
        store.limits.check_message(draft)
        outgoing = _finish(store, mailbox, draft, now)
        return outgoing, mailbox.move(draft, mailbox.folder("sentitems"), now)
    _distribute(store, store.mutate(mailbox, change))


def send_mail(store: MailStore, mailbox: Mailbox, data: dict, *, save_to_sent: bool = True,
              mime: MimeMessage | None = None) -> None:
    """``POST /sendMail`` with JSON ``data`` (the ``message`` object) or a parsed MIME message."""
    def change(now: datetime) -> tuple[Outgoing, list[ChangeEvent]]:
        message = _new_draft(mailbox, now, new_thread_index(now))
        message.folder_id = mailbox.folder("sentitems").id
        _write(message, data, now)
        if mime is not None:
            _thread_from_mime(mailbox, message, mime, now)
            for attachment in mime.attachments:
                attach(message, attachment, now)
        _check_recipients(message)
        store.limits.check_message(message)
        outgoing = _finish(store, mailbox, message, now)
        return outgoing, mailbox.add(message, now) if save_to_sent else []
    _distribute(store, store.mutate(mailbox, change))


def _distribute(store: MailStore, sent: Outgoing) -> None:
    outgoing, addresses = sent
    for address in addresses:
        recipient = store.find_mailbox(address)
        if recipient is not None:
            store.receive(recipient, outgoing)


def _new_draft(mailbox: Mailbox, now: datetime, index: bytes) -> Message:
    immutable_id, rest_id = mailbox.new_ids()
    me = {"emailAddress": {"name": mailbox.display_name, "address": mailbox.email}}
    return Message(
        immutable_id=immutable_id, rest_id=rest_id, folder_id=mailbox.folder("drafts").id,
        internet_message_id=new_internet_message_id(now), conversation_index=index,
        conversation_id=conversation_id(mailbox.key, index), created=now, is_draft=True, is_read=True,
        from_=me, sender=me, received=now, sent=now,
    )


def _write(message: Message, data: dict, now: datetime) -> None:
    """Set the Graph properties of a new message, its ``attachments`` among them."""
    properties = dict(data)
    items = properties.pop("attachments", [])
    if not isinstance(items, list):
        raise bad_request("Property 'attachments' must be a collection of attachments.")
    apply_fields(message, properties)
    for item in items:
        attach(message, from_graph(item, now), now)


def _thread_from_mime(mailbox: Mailbox, message: Message, mime: MimeMessage, now: datetime) -> None:
    message.internet_message_id = mime.internet_message_id or message.internet_message_id
    message.in_reply_to, message.references = mime.in_reply_to, mime.references
    for parent_id in [mime.in_reply_to, *reversed(mime.references)]:
        parents = mailbox.by_internet_id(parent_id) if parent_id else []
        if parents:
            message.conversation_index = reply_index(parents[0].conversation_index, now)
            message.conversation_id = conversation_id(mailbox.key, message.conversation_index)
            return


def _finish(store: MailStore, mailbox: Mailbox, message: Message, now: datetime) -> Outgoing:
    """Turn a draft into a sent message, log it in ``store.outbound``; returns the copy and its addresses."""
    message.is_draft = False
    message.sent = message.received = now
    message.from_ = message.sender = {"emailAddress": {"name": mailbox.display_name, "address": mailbox.email}}
    store.outbound.append({**message.render(immutable=False, select=PROPERTIES), "userId": mailbox.user_id,
                           "attachments": [a.render(SUMMARY) for a in message.attachments]})
    outgoing = Incoming(
        subject=message.subject, body=dict(message.body), sender=message.from_, to=list(message.to),
        cc=list(message.cc), reply_to=list(message.reply_to), in_reply_to=message.in_reply_to,
        references=list(message.references), internet_message_id=message.internet_message_id,
        headers=list(message.custom_headers), thread_index=message.conversation_index, sent_at=now,
        attachments=list(message.attachments),
    )
    message.hide_custom_headers = True
    addresses = [address_of(r).lower() for r in [*message.to, *message.cc, *message.bcc]]
    return outgoing, list(dict.fromkeys(a for a in addresses if a))


def _check_recipients(message: Message) -> None:
    if not (message.to or message.cc or message.bcc):
        raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient is not valid., "
                         "A message can't be sent because it contains no recipients.")


def _reply_arguments(data: dict) -> tuple[str, dict]:
    comment = data.get("comment") or ""
    overrides = data.get("message") or {}
    if not isinstance(comment, str) or not isinstance(overrides, dict):
        raise bad_request("Invalid 'comment' or 'message' parameter.")
    if comment and "body" in overrides:
        raise bad_request("The comment and the message body cannot both be specified.", "ErrorInvalidRequest")
    return comment, overrides


def _quote(comment: str, original: Message) -> str:
    sender = html.escape(address_of(original.from_))
    quoted = original.body.get("content", "")
    if original.body.get("contentType") != "html":
        quoted = html.escape(quoted).replace("\n", "<br>")
    return (f"<html><body><div>{html.escape(comment)}</div><hr><div><b>From:</b> {sender}<br>"
            f"<b>Subject:</b> {html.escape(original.subject)}</div><div>{quoted}</div></body></html>")
