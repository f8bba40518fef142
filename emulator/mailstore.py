"""All mailboxes, and the Python facade tests and the control API use to change them.

Each mailbox has its own lock; the store's lock guards only the mailbox and address tables.
Listeners (the subscription service) get every :class:`~emulator.mailbox.ChangeEvent` after the
mailbox lock is released, so a slow listener never blocks mail operations on other threads.
Adding or removing an attachment changes the message: a new change key and an ``updated`` event.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable

from emulator.attachments import SUMMARY, Attachment, attach, find_attachment, from_spec
from emulator.clock import Clock
from emulator.fields import apply_fields, require_draft
from emulator.mail_limits import MailLimits
from emulator.mailbox import ChangeEvent, Mailbox
from emulator.message import (
    PROPERTIES,
    Message,
    as_recipient,
    conversation_id,
    new_internet_message_id,
    new_thread_index,
    reply_index,
)

logger = logging.getLogger(__name__)

Listener = Callable[[ChangeEvent], None]


@dataclass
class Incoming:
    """A message arriving in a mailbox from outside (or as another emulator user's sent copy)."""

    subject: str
    body: dict
    sender: dict
    to: list[dict]
    cc: list[dict] = field(default_factory=list)
    reply_to: list[dict] = field(default_factory=list)
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    internet_message_id: str | None = None
    headers: list[dict] = field(default_factory=list)
    thread_index: bytes | None = None
    conversation_of: str | None = None
    new_conversation: bool = False
    folder: str = "inbox"
    received_at: datetime | None = None
    sent_at: datetime | None = None
    attachments: list[Attachment] = field(default_factory=list)


class MailStore:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        #: Message, request and upload size limits; replace it to change them (:meth:`MailLimits.changed`).
        self.limits = MailLimits()
        self._lock = threading.Lock()
        self._mailboxes: dict[str, Mailbox] = {}
        self._addresses: dict[str, str] = {}
        self._listeners: list[Listener] = []
        #: Every message any user sent, oldest first (Graph JSON plus ``userId``), for tests to inspect.
        self.outbound: list[dict] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def ensure_mailbox(self, user_id: str, email: str, display_name: str) -> Mailbox:
        """The user's mailbox, created with the well-known folders on first use."""
        with self._lock:
            mailbox = self._mailboxes.get(user_id)
            if mailbox is None:
                mailbox = self._mailboxes[user_id] = Mailbox(user_id, email, display_name)
            mailbox.email, mailbox.display_name = email, display_name
            self._addresses[email.lower()] = user_id
            return mailbox

    def mailbox(self, user_id: str) -> Mailbox:
        """:raise KeyError: when the user has no mailbox."""
        return self._mailboxes[user_id]

    def find_mailbox(self, id_or_address: str) -> Mailbox | None:
        """A mailbox by user id or email address (any case), as ``/users/{id | userPrincipalName}`` names it."""
        mailbox = self._mailboxes.get(id_or_address)
        if mailbox is None:
            user_id = self._addresses.get(id_or_address.lower())
            mailbox = self._mailboxes.get(user_id) if user_id else None
        return mailbox

    def mutate(self, mailbox: Mailbox, change: Callable[[datetime], tuple[object, list[ChangeEvent]]]) -> object:
        """Run ``change(now)`` under the mailbox lock, then hand its events to the listeners."""
        with mailbox.lock:
            rv, events = change(self.clock.now())
        self.publish(events)
        return rv

    def publish(self, events: Iterable[ChangeEvent]) -> None:
        for event in events:
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:
                    logger.exception("Mail store: listener failed on %s event for %s", event.change_type,
                                     event.user_id)

    def render(self, mailbox: Mailbox, message: Message, *, immutable: bool = False,
               select: tuple[str, ...] | None = None) -> dict:
        with mailbox.lock:
            return message.render(immutable=immutable, select=select)

    def snapshot(self, mailbox: Mailbox, message: Message) -> dict:
        """Every property, headers included, the attachments without their bytes, and the immutable id:
        what the Python facade returns."""
        with mailbox.lock:
            rv = message.render(immutable=False, select=PROPERTIES)
            rv["attachments"] = [a.render(SUMMARY) for a in message.attachments]
            rv["@emulator.immutableId"] = message.immutable_id
            return rv

    def deliver(self, user_id: str, *, subject: str, body: str | dict, sender: str | dict,
                to: Iterable[str | dict], cc: Iterable[str | dict] = (), in_reply_to: str | None = None,
                references: Iterable[str] = (), internet_message_id: str | None = None,
                conversation_of: str | None = None, new_conversation: bool = False, folder: str = "inbox",
                received_at: datetime | None = None, headers: Iterable[tuple[str, str]] = (),
                attachments: Iterable[dict] = ()) -> dict:
        """An inbound email arrives; returns its Graph JSON (with ``@emulator.immutableId``).

        It joins the conversation of the message its In-Reply-To/References name in this mailbox,
        or of ``conversation_of``; ``new_conversation=True`` starts a new one regardless, as Exchange
        does for some external replies. ``attachments`` are dicts as :func:`emulator.attachments.from_spec`
        reads them, e.g. ``{"name": "W-9.pdf", "content": pdf_bytes}`` or, for an inline image the HTML
        body shows with ``<img src="cid:logo">``, ``{"name": "logo.png", "content": png, "inline": True,
        "content_id": "logo"}``.
        """
        now = self.clock.now()
        incoming = Incoming(
            subject=subject, body=body if isinstance(body, dict) else {"contentType": "text", "content": body},
            sender=as_recipient(sender), to=[as_recipient(r) for r in to], cc=[as_recipient(r) for r in cc],
            in_reply_to=in_reply_to, references=list(references), internet_message_id=internet_message_id,
            headers=[{"name": n, "value": v} for n, v in headers], conversation_of=conversation_of,
            new_conversation=new_conversation, folder=folder, received_at=received_at,
            attachments=[from_spec(spec, now) for spec in attachments],
        )
        mailbox = self.mailbox(user_id)
        return self.snapshot(mailbox, self.receive(mailbox, incoming))

    def receive(self, mailbox: Mailbox, incoming: Incoming) -> Message:
        """Store an incoming message, threading it into a conversation."""
        def change(now: datetime) -> tuple[Message, list[ChangeEvent]]:
            folder = mailbox.folder(incoming.folder)
            received = incoming.received_at or now
            index = self._thread_index(mailbox, incoming, received)
            immutable_id, rest_id = mailbox.new_ids()
            message = Message(
                immutable_id=immutable_id, rest_id=rest_id, folder_id=folder.id,
                internet_message_id=incoming.internet_message_id or new_internet_message_id(received),
                conversation_index=index, conversation_id=conversation_id(mailbox.key, index), created=now,
                subject=incoming.subject, body=incoming.body, from_=incoming.sender, sender=incoming.sender,
                to=incoming.to, cc=incoming.cc, reply_to=incoming.reply_to, in_reply_to=incoming.in_reply_to,
                references=incoming.references, custom_headers=incoming.headers,
                received=received, sent=incoming.sent_at or received,
            )
            for attachment in incoming.attachments:
                attach(message, attachment, now)
            return message, mailbox.add(message, now)
        return self.mutate(mailbox, change)

    def add_attachment(self, mailbox: Mailbox, message_id: str, attachment: Attachment) -> Attachment:
        """Attach to a draft (400 for any other message, 413 past :attr:`MailLimits.max_message_bytes`)."""
        def change(now: datetime) -> tuple[Attachment, list[ChangeEvent]]:
            message = mailbox.get(message_id)
            require_draft(message)
            self.limits.check_message(message, [attachment])
            return attach(message, attachment, now), mailbox.touch(message, now)
        return self.mutate(mailbox, change)

    def delete_attachment(self, mailbox: Mailbox, message_id: str, attachment_id: str) -> None:
        def change(now: datetime) -> tuple[None, list[ChangeEvent]]:
            message = mailbox.get(message_id)
            message.attachments.remove(find_attachment(message, attachment_id))
            return None, mailbox.touch(message, now)
        self.mutate(mailbox, change)

    def _thread_index(self, mailbox: Mailbox, incoming: Incoming, now: datetime) -> bytes:
        if incoming.conversation_of:
            return reply_index(mailbox.get(incoming.conversation_of).conversation_index, now)
        if incoming.new_conversation:
            return new_thread_index(now)
        if incoming.thread_index:
            return incoming.thread_index
        for parent_id in [incoming.in_reply_to, *reversed(incoming.references)]:
            parents = mailbox.by_internet_id(parent_id) if parent_id else []
            if parents:
                return reply_index(parents[0].conversation_index, now)
        return new_thread_index(now)

    def move(self, user_id: str, message_id: str, folder: str) -> dict:
        """Move a message (REST id changes, immutable id stays); returns its new Graph JSON."""
        mailbox = self.mailbox(user_id)
        return self.snapshot(mailbox, self.move_message(mailbox, message_id, folder))

    def move_message(self, mailbox: Mailbox, message_id: str, folder: str) -> Message:
        def change(now: datetime) -> tuple[Message, list[ChangeEvent]]:
            message = mailbox.get(message_id)
            return message, mailbox.move(message, mailbox.folder(folder), now)
        return self.mutate(mailbox, change)

    def delete(self, user_id: str, message_id: str) -> None:
        """Delete as Graph's DELETE does: into Deleted Items, or for good when already there."""
        mailbox = self.mailbox(user_id)

        def change(now: datetime) -> tuple[None, list[ChangeEvent]]:
            message = mailbox.get(message_id)
            trash = mailbox.folder("deleteditems")
            if message.folder_id == trash.id:
                return None, mailbox.remove(message, now)
            return None, mailbox.move(message, trash, now)
        self.mutate(mailbox, change)

    def update(self, user_id: str, message_id: str, changes: dict) -> dict:
        """Apply Graph properties (``{"isRead": True}``...), as ``PATCH /messages/{id}`` does."""
        mailbox = self.mailbox(user_id)
        return self.snapshot(mailbox, self.change_message(mailbox, message_id, changes))

    def change_message(self, mailbox: Mailbox, message_id: str, changes: dict) -> Message:
        def change(now: datetime) -> tuple[Message, list[ChangeEvent]]:
            message = mailbox.get(message_id)
            old_internet_id = message.internet_message_id
            apply_fields(message, changes)
            mailbox.reindex(message, old_internet_id)
            return message, mailbox.touch(message, now)
        return self.mutate(mailbox, change)

    def get(self, user_id: str, message_id: str) -> dict:
        mailbox = self.mailbox(user_id)
        with mailbox.lock:
            return self.snapshot(mailbox, mailbox.get(message_id))

    def messages(self, user_id: str, folder: str | None = None) -> list[dict]:
        """Every message of a mailbox (or one folder), newest first."""
        return self.message_page(user_id, folder)[1]

    def message_page(self, user_id: str, folder: str | None = None, offset: int = 0,
                     limit: int | None = None) -> tuple[int, list[dict]]:
        """(How many messages the mailbox or folder holds, the ``limit`` newest after the ``offset`` newest)."""
        mailbox = self.mailbox(user_id)
        with mailbox.lock:
            found = mailbox.messages(mailbox.folder(folder) if folder else None)
            found.sort(key=lambda m: m.received or m.created, reverse=True)
            shown = found[offset:None if limit is None else offset + limit]
            return len(found), [self.snapshot(mailbox, m) for m in shown]

    def folder_counts(self, user_id: str) -> list[tuple[str, str, int]]:
        """The mailbox's folders as (well-known name, display name, number of messages)."""
        mailbox = self.mailbox(user_id)
        with mailbox.lock:
            return [(f.name, f.display_name, len(f.members)) for f in mailbox.folders.values()]

    def invalidate_sync_state(self, user_id: str | None = None) -> None:
        """Forget delta tokens (one user's, or everyone's): the next delta call gets 410 ``syncStateNotFound``."""
        with self._lock:
            mailboxes = [self._mailboxes[user_id]] if user_id else list(self._mailboxes.values())
        for mailbox in mailboxes:
            with mailbox.lock:
                mailbox.sync_states.clear()
