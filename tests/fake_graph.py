"""An in-process stand-in for :class:`app.microsoft.graph.GraphClient`, and a real ``Services`` around it.

:class:`FakeGraph` answers the calls the handlers make, in the shapes the real client returns:
``get_messages`` gives ``{id: (status, body, headers)}`` as one ``$batch`` does, ``find_messages``
yields messages, ``delta_pages`` yields pages carrying ``value`` and ``@odata.nextLink`` or, on the
last, ``@odata.deltaLink``. It keeps a mailbox of message dicts keyed by immutable id, records every
call in :attr:`FakeGraph.calls`, and :meth:`FakeGraph.fail_next` makes the next call of an operation
raise a given exception (a ``GraphError`` of :mod:`app.microsoft.graph`, or an identity error of
:mod:`app.microsoft.identity`, which the real client raises when no token can be had).

The end-to-end tests run the real client against the emulator over HTTP; these unit tests trade that
for speed. Two simplifications: a folder is named by its well-known name (``inbox``, ``sentitems``,
``drafts``) in ``parentFolderId``, where Graph puts an opaque id; and a delta round is one call,
its ``@odata.nextLink`` pages following without further calls.
"""

from __future__ import annotations

import base64
import copy
import itertools
import re
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any

import pytest

from app import build_services
from app.core.config import load_settings
from app.core.migrations import migrate
from app.core.queue import Job, JobState
from app.core.timeutil import parse_iso
from app.microsoft.failures import GraphError, NotFound
from app.microsoft.graph import BATCH_LIMIT
from app.microsoft.identity import SignIn
from app.records import threads
from app.records.connections import save_connection
from app.records.records import create_record
from app.records.services import Services

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc)
MAILBOX = "megan@contoso.example"
VENDOR = "dana@acme.example"
TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"  # a tenant id is a lower-case GUID
DELTA_URL = "https://graph.fake/v1.0/me/mailFolders/{folder}/messages/delta"
MIN_SUBSCRIPTION_LIFETIME = timedelta(minutes=45)
_BY_MESSAGE_ID = re.compile(r"^internetMessageId eq '((?:[^']|'')*)'$")
_REPLY_PREFIX = re.compile(r"^(?:re:\s*)+", re.IGNORECASE)


def error_body(code: str, message: str) -> dict[str, Any]:
    """Graph's error response body."""
    return {"error": {"code": code, "message": message}}


def graph_time(moment: datetime) -> str:
    """A timestamp as Graph writes one, with seven fractional digits: ``2026-11-10T12:00:00.0000000Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def graph_message(graph_id: str, internet_message_id: str, *, received: datetime, subject: str = "Onboarding",
                  sender: str = VENDOR, to: str = MAILBOX, in_reply_to: str | None = None,
                  conversation_id: str = "conv-onboarding") -> dict[str, Any]:
    """A received message with the fields of ``MESSAGE_SELECT``; ``in_reply_to`` also becomes its References."""
    headers = [{"name": "In-Reply-To", "value": in_reply_to}, {"name": "References", "value": in_reply_to}]
    return {
        "id": graph_id, "internetMessageId": internet_message_id, "conversationId": conversation_id,
        "isDraft": False, "subject": subject,
        "from": {"emailAddress": {"name": sender.split("@")[0].title(), "address": sender}},
        "toRecipients": [{"emailAddress": {"name": "", "address": to}}], "ccRecipients": [],
        "sentDateTime": graph_time(received - timedelta(seconds=2)), "receivedDateTime": graph_time(received),
        "bodyPreview": f"About {subject}", "body": {"contentType": "text", "content": f"About {subject}"},
        "internetMessageHeaders": headers if in_reply_to else [],
    }


def file_attachment(attachment_id: str, name: str, content: bytes, content_type: str = "application/pdf", *,
                    inline: bool = False, content_id: str | None = None) -> dict[str, Any]:
    """A ``fileAttachment`` as ``GET …/attachments/{id}`` returns it (bytes in ``contentBytes``)."""
    return {"@odata.type": "#microsoft.graph.fileAttachment", "id": attachment_id, "name": name,
            "contentType": content_type, "size": len(content), "isInline": inline, "contentId": content_id,
            "contentBytes": base64.b64encode(content).decode()}


def item_attachment(attachment_id: str, name: str) -> dict[str, Any]:
    """An attached Outlook item: described, with no bytes to read."""
    return {"@odata.type": "#microsoft.graph.itemAttachment", "id": attachment_id, "name": name,
            "contentType": None, "size": 2048, "isInline": False}


_DESCRIBED = ("@odata.type", "id", "name", "contentType", "size", "isInline")  # ATTACHMENTS_EXPAND's $select


def _public(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message as Graph returns it unexpanded: without its attachments."""
    return {key: copy.deepcopy(value) for key, value in message.items() if key != "attachments"}


class FakeGraph:
    """The Graph calls of one mailbox, in memory.

    :param clock: Graph's "now" (subscription expiries, send times); :func:`unit_services` gives the
        service the same clock.
    """

    def __init__(self, clock: Callable[[], datetime] = lambda: NOW, *, address: str = MAILBOX) -> None:
        self.clock, self.address = clock, address
        self.messages: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.max_subscription_minutes = 10_080
        self.granted_lifetime: timedelta | None = None  # Graph may grant less than was asked for
        self.page_size = 10
        self._failures: defaultdict[str, deque[tuple[Exception, bool]]] = defaultdict(deque)
        self._batch_answers: dict[str, tuple[int, Any, dict[str, str]]] = {}
        self._ids = itertools.count(1)
        self._seq = 0
        self._changed: dict[str, int] = {}  # message id → sequence number of its last change
        self._departed: dict[str, tuple[str, int]] = {}  # message id → (folder it left, sequence number)
        self._delta_tokens: dict[str, tuple[str, int, str | None]] = {}  # token → (folder, seq, window)

    # -- what a test sets up and inspects ----------------------------------------------------

    def fail_next(self, operation: str, error: Exception, *, answer_lost: bool = False) -> None:
        """The next call of ``operation`` (a method name) raises ``error``; several queue up in order.

        With ``answer_lost`` the call first takes effect, as when Graph did the work but its answer
        never came back (a timeout, a dropped connection).
        """
        self._failures[operation].append((error, answer_lost))

    def answer_next_batch(self, message_id: str, status: int, *, code: str = "ErrorItemNotFound",
                          headers: Mapping[str, str] | None = None) -> None:
        """In the next ``$batch`` asking for it, the item ``message_id`` (or an attachment id) fails
        with ``status`` instead of the mailbox's answer."""
        self._batch_answers[message_id] = (status, error_body(code, f"Item failed with {status}."), dict(headers or {}))

    def deliver(self, message: dict[str, Any], folder: str = "inbox") -> dict[str, Any]:
        """Put ``message`` (Graph's shape; ``id`` is its immutable id) into ``folder``, new or changed."""
        stored = {"isDraft": False, **copy.deepcopy(message), "parentFolderId": folder}
        self.messages[stored["id"]] = stored
        self._touch(stored["id"])
        return copy.deepcopy(stored)

    def remove(self, message_id: str) -> None:
        """The user deleted the message for good: the folder's next delta round reports it ``@removed``."""
        self._leave(self.messages.pop(message_id))

    def forget_delta_tokens(self) -> None:
        """Graph lost the sync state: every deltaLink issued so far gets 410 ``syncStateNotFound``."""
        self._delta_tokens.clear()

    def calls_of(self, operation: str) -> list[tuple[Any, ...]]:
        """The arguments of each call of ``operation``, in order."""
        return [args for name, args in self.calls if name == operation]

    def in_folder(self, folder: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(m) for m in self.messages.values() if m["parentFolderId"] == folder]

    # -- messages ------------------------------------------------------------------------------

    def get_messages(self, ids: list[str], select: str, expand: str | None = None) -> dict[str, tuple[int, Any, Any]]:
        if len(ids) > BATCH_LIMIT:
            raise ValueError(f"a $batch holds at most {BATCH_LIMIT} requests, got {len(ids)}")
        self._call("get_messages", list(ids), select)
        return self._answer("get_messages", {message_id: self._batch_answers.pop(message_id, None)
                                             or self._batch_item(message_id, expand) for message_id in ids})

    def get_attachments(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, Any, Any]]:
        if len(pairs) > BATCH_LIMIT:
            raise ValueError(f"a $batch holds at most {BATCH_LIMIT} requests, got {len(pairs)}")
        self._call("get_attachments", list(pairs))
        found = {}
        for message_id, attachment_id in pairs:
            attachment = self._attachment(message_id, attachment_id)
            found[(message_id, attachment_id)] = self._batch_answers.pop(attachment_id, None) or (
                (200, copy.deepcopy(attachment), {}) if attachment else
                (404, error_body("ErrorItemNotFound", "The specified object was not found in the store."), {}))
        return self._answer("get_attachments", found)

    def get_attachment_content(self, message_id: str, attachment_id: str, max_bytes: int) -> bytes | None:
        self._call("get_attachment_content", message_id, attachment_id)
        attachment = self._attachment(message_id, attachment_id)
        if attachment is None:
            raise NotFound(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        content = base64.b64decode(attachment["contentBytes"])
        return self._answer("get_attachment_content", content if len(content) <= max_bytes else None)

    def get_message(self, message_id: str, select: str) -> dict:
        self._call("get_message", message_id, select)
        return self._answer("get_message", _public(self._message(message_id)))

    def find_messages(self, filter_: str, select: str, *, top: int = 50) -> Iterator[dict]:
        self._call("find_messages", filter_, select)
        match = _BY_MESSAGE_ID.match(filter_)
        if match is None:
            raise NotImplementedError(f"FakeGraph filters by internetMessageId only, not {filter_!r}")
        wanted = match.group(1).replace("''", "'")
        found = [_public(m) for m in self.messages.values() if m.get("internetMessageId") == wanted]
        yield from self._answer("find_messages", found)

    def create_draft(self, message: dict[str, Any]) -> dict:
        self._call("create_draft", copy.deepcopy(message))
        return self._answer("create_draft", self.deliver({**self._new_draft(), **message}, "drafts"))

    def create_reply(self, message_id: str) -> dict:
        """A reply draft: to the original's sender, in its conversation, citing it (as Exchange does)."""
        self._call("create_reply", message_id)
        original = self._message(message_id)
        cited = original["internetMessageId"]
        return self._answer("create_reply", self.deliver({
            **self._new_draft(), "conversationId": original.get("conversationId"),
            "subject": "RE: " + _REPLY_PREFIX.sub("", original.get("subject") or ""),
            "toRecipients": [original["from"]] if original.get("from") else [],
            "internetMessageHeaders": [{"name": "In-Reply-To", "value": cited}, {"name": "References", "value": cited}],
        }, "drafts"))

    def update_draft(self, message_id: str, changes: dict[str, Any]) -> dict:
        self._call("update_draft", message_id, copy.deepcopy(changes))
        self._message(message_id).update(copy.deepcopy(changes))
        self._touch(message_id)
        return self._answer("update_draft", copy.deepcopy(self.messages[message_id]))

    def send_draft(self, message_id: str) -> None:
        """The draft moves to Sent Items, keeping its immutable id."""
        self._call("send_draft", message_id)
        draft = self._message(message_id)
        if not draft["isDraft"]:
            raise GraphError(400, "ErrorInvalidOperation", "Only a draft can be sent.")
        self._leave(draft)
        sent_at = graph_time(self.clock())
        draft.update({"isDraft": False, "parentFolderId": "sentitems", "sentDateTime": sent_at,
                      "receivedDateTime": sent_at})
        self._touch(message_id)
        self._answer("send_draft", None)

    def delete_draft(self, message_id: str) -> None:
        self._call("delete_draft", message_id)
        self._message(message_id)
        self.remove(message_id)
        self._answer("delete_draft", None)

    def delta_pages(self, folder: str, delta_link: str | None, select: str,
                    received_since: str | None = None) -> Iterator[dict]:
        """One delta round: everything in the folder (within the window) first, then what changed since."""
        self._call("delta_pages", folder, delta_link, received_since)
        if delta_link is None:
            since, window = -1, received_since
        else:
            state = self._delta_tokens.get(delta_link.rpartition("$deltatoken=")[2])
            if state is None or state[0] != folder:
                raise GraphError(410, "syncStateNotFound", "The sync state generation is not found.")
            _, since, window = state
        items = self._answer("delta_pages", self._delta_items(folder, since, window))
        token = uuid.uuid4().hex
        self._delta_tokens[token] = (folder, self._seq, window)
        base = DELTA_URL.format(folder=folder)
        pages = [items[i:i + self.page_size] for i in range(0, len(items), self.page_size)] or [[]]
        for number, value in enumerate(pages, start=1):
            last = number == len(pages)
            link = ("@odata.deltaLink", f"{base}?$deltatoken={token}") if last else (
                "@odata.nextLink", f"{base}?$skiptoken={token}-{number}")
            yield {"@odata.context": "https://graph.fake/v1.0/$metadata#Collection(message)", "value": value,
                   link[0]: link[1]}

    # -- subscriptions -------------------------------------------------------------------------

    def create_subscription(self, body: dict[str, Any]) -> dict:
        """Graph's checks: an expiry beyond the maximum is a 400, a live twin (same resource,
        change types and URL) a 409 naming it."""
        self._call("create_subscription", copy.deepcopy(body))
        expires = self._grant(body["expirationDateTime"])
        for existing in self.subscriptions.values():
            if (all(existing[key] == body.get(key) for key in ("resource", "changeType", "notificationUrl"))
                    and parse_iso(existing["expirationDateTime"]) > self.clock()):
                raise GraphError(409, "ExtensionError",
                                 f"Subscription Id {existing['id']} already exists for the requested combination")
        subscription = {**copy.deepcopy(body), "id": str(uuid.uuid4()), "expirationDateTime": graph_time(expires)}
        self.subscriptions[subscription["id"]] = subscription
        return self._answer("create_subscription", copy.deepcopy(subscription))

    def renew_subscription(self, subscription_id: str, expiration: str) -> dict:
        self._call("renew_subscription", subscription_id, expiration)
        subscription = self._subscription(subscription_id)
        subscription["expirationDateTime"] = graph_time(self._grant(expiration))
        return self._answer("renew_subscription", copy.deepcopy(subscription))

    def delete_subscription(self, subscription_id: str) -> None:
        self._call("delete_subscription", subscription_id)
        self._subscription(subscription_id)
        del self.subscriptions[subscription_id]
        self._answer("delete_subscription", None)

    # -- the mailbox and Graph's rules ---------------------------------------------------------

    def _call(self, operation: str, *args: Any) -> None:
        """Record the call; raise its injected failure, unless that comes after the call took effect."""
        self.calls.append((operation, args))
        pending = self._failures[operation]
        if pending and not pending[0][1]:
            raise pending.popleft()[0]

    def _answer(self, operation: str, answer: Any) -> Any:
        """``answer``, unless it was to be lost on the way back."""
        pending = self._failures[operation]
        if pending and pending[0][1]:
            raise pending.popleft()[0]
        return answer

    def _message(self, message_id: str) -> dict[str, Any]:
        if message_id not in self.messages:
            raise NotFound(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return self.messages[message_id]

    def _batch_item(self, message_id: str, expand: str | None) -> tuple[int, Any, dict[str, str]]:
        if message_id not in self.messages:
            return 404, error_body("ErrorItemNotFound", "The specified object was not found in the store."), {}
        message = self.messages[message_id]
        described = [{key: a.get(key) for key in _DESCRIBED} for a in message.get("attachments", [])]
        return 200, {**_public(message), **({"attachments": described} if expand else {})}, {}

    def _attachment(self, message_id: str, attachment_id: str) -> dict[str, Any] | None:
        found = [a for a in self.messages.get(message_id, {}).get("attachments", []) if a["id"] == attachment_id]
        return found[0] if found else None

    def _new_draft(self) -> dict[str, Any]:
        number = next(self._ids)
        return {"id": f"AAMk-draft-{number}", "isDraft": True, "internetMessageId": f"<draft{number}@fake.example>",
                "conversationId": f"conv-draft-{number}", "subject": "", "toRecipients": [], "ccRecipients": [],
                "from": {"emailAddress": {"name": "", "address": self.address}},
                "createdDateTime": graph_time(self.clock())}

    def _touch(self, message_id: str) -> None:
        self._seq += 1
        self._changed[message_id] = self._seq
        self._departed.pop(message_id, None)

    def _leave(self, message: dict[str, Any]) -> None:
        self._seq += 1
        self._departed[message["id"]] = (message["parentFolderId"], self._seq)

    def _delta_items(self, folder: str, since: int, window: str | None) -> list[dict[str, Any]]:
        present = sorted((m for m in self.messages.values() if m["parentFolderId"] == folder
                          and self._changed[m["id"]] > since and _received_within(m, window)),
                         key=lambda m: self._changed[m["id"]])
        removed = [] if since < 0 else [
            {"id": message_id, "@removed": {"reason": "deleted"}}
            for message_id, (left, seq) in self._departed.items() if left == folder and seq > since]
        return [_public(m) for m in present] + removed

    def _grant(self, requested_text: str) -> datetime:
        requested, now = parse_iso(requested_text), self.clock()
        if requested - now > timedelta(minutes=self.max_subscription_minutes):
            raise GraphError(400, "ExtensionError", "Subscription expiration can only be "
                             f"{self.max_subscription_minutes} minutes in the future.")
        granted = min(requested, now + self.granted_lifetime) if self.granted_lifetime else requested
        return max(granted, now + MIN_SUBSCRIPTION_LIFETIME)

    def _subscription(self, subscription_id: str) -> dict[str, Any]:
        if subscription_id not in self.subscriptions:
            raise NotFound(404, "ResourceNotFound", f"The object {subscription_id} was not found.")
        return self.subscriptions[subscription_id]


def _received_within(message: dict[str, Any], window: str | None) -> bool:
    if window is None:
        return True
    received = message.get("receivedDateTime")
    return received is not None and parse_iso(received) >= parse_iso(window)


class StubIdentity:
    """Stands in for :class:`app.microsoft.identity.Identity`: hands out a token, notes what it forgot."""

    def __init__(self) -> None:
        self.forgotten: list[int] = []

    def access_token(self, connection_id: int, *, force_refresh: bool = False) -> str:
        return f"token-{connection_id}"

    def forget(self, connection_id: int) -> None:
        self.forgotten.append(connection_id)


# -- a real Services around the fake ---------------------------------------------------------------

def unit_services(config: Mapping[str, Any], graph: FakeGraph) -> Services:
    """The service's collaborators over a migrated database, with ``graph`` for every mailbox and its clock."""
    services = build_services(load_settings({}, overrides=config))
    migrate(services.db())
    services.graph_for = lambda connection_id: graph
    services.identity = StubIdentity()
    services.clock = graph.clock
    return services


def connect(services: Services, record_id: int, email: str = MAILBOX) -> int:
    """Connect a mailbox from the record, as the sign-in callback does; return the connection id."""
    sign_in = SignIn(tenant_id=TENANT, user_id=f"user-{email}", email=email, display_name="Megan Bowen",
                     scopes="Mail.ReadWrite Mail.Send User.Read", token_cache="{}")
    return save_connection(services.db(), services.cipher, sign_in, record_id, services.queue)


def upload(services: Services, record_id: int, message_id: str, subject: str = "Onboarding") -> None:
    """Attach an email from the vendor to the record, as ``POST /api/records/{id}/emails`` does."""
    email = EmailMessage()
    email["Message-ID"] = message_id
    email["From"] = f"Dana <{VENDOR}>"
    email["To"] = f"Megan Bowen <{MAILBOX}>"
    email["Subject"] = subject
    email["Date"] = "Mon, 02 Nov 2026 09:00:00 +0000"
    email.set_content("Attached are our W-9 and banking details.")
    threads.store_upload(services.db(), record_id, bytes(email))


def job(kind: str, payload: dict[str, Any], connection_id: int, job_id: int = 1) -> Job:
    """A job as the worker hands it to a handler: claimed, first attempt."""
    return Job(id=job_id, kind=kind, payload=payload, connection_id=connection_id, attempts=1, dedupe_key=None,
               state=JobState.RUNNING, run_after=0.0, lease_owner="unit", lease_expires_at=None, last_error=None,
               created_at=time.time(), finished_at=None)


# -- fixtures, imported by the unit tests that use them -------------------------------------------

FIRST_ID = "<po-4711@acme.example>"  # the vendor's email uploaded to the record


@pytest.fixture
def graph() -> FakeGraph:
    return FakeGraph()


@pytest.fixture
def services(app_config, graph):
    return unit_services(app_config, graph)


@pytest.fixture
def record(services) -> int:
    """A record with the vendor's first email uploaded."""
    record_id = create_record(services.db(), "Acme vendor file")["id"]
    upload(services, record_id, FIRST_ID)
    return record_id


@pytest.fixture
def connection(services, record) -> int:
    """The mailbox connected from that record."""
    return connect(services, record)
