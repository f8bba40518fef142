"""One Outlook message as the emulator stores it, and how Graph renders it.

Ids imitate Exchange's: url-safe base64 that usually ends in ``=`` and is case-sensitive. A message
has an immutable id for life and a REST id that is replaced whenever it changes folder.
``conversationIndex`` follows [MS-OXOMSG]: a 22-byte header (0x01, 5 bytes of FILETIME, a 16-byte
thread GUID) plus one 5-byte block per reply; ``conversationId`` is derived from the mailbox and the
thread GUID, so copies of one thread agree within a mailbox. ``hasAttachments`` counts only attachments
that are not inline: a message whose only attachments are inline images has none
(https://learn.microsoft.com/graph/api/resources/message#properties).
"""

from __future__ import annotations

import base64
import html
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime, formataddr, parseaddr
from typing import TYPE_CHECKING

from emulator.errors import bad_request

if TYPE_CHECKING:
    from emulator.attachments import Attachment

REST_PREFIX = b"\x00\x03\x24\x00"
IMMUTABLE_PREFIX = b"\x00\x09\x00\x2e"
_ID_SHAPE = re.compile(r"^[A-Za-z0-9_-]{16,}={0,2}$")
_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)

#: Every property ``$select`` accepts, in Graph's order. The last two come back only when selected.
PROPERTIES = (
    "createdDateTime", "lastModifiedDateTime", "changeKey", "categories", "receivedDateTime", "sentDateTime",
    "hasAttachments", "internetMessageId", "subject", "bodyPreview", "importance", "parentFolderId",
    "conversationId", "conversationIndex", "isDeliveryReceiptRequested", "isReadReceiptRequested", "isRead",
    "isDraft", "webLink", "inferenceClassification", "body", "sender", "from", "toRecipients", "ccRecipients",
    "bccRecipients", "replyTo", "flag", "id", "uniqueBody", "internetMessageHeaders",
)
DEFAULT_PROPERTIES = PROPERTIES[:-2]


def new_id(prefix: bytes, mailbox_key: bytes) -> str:
    """A fresh Exchange-looking item id: url-safe base64 of 62 bytes, so it ends in ``=``."""
    return base64.urlsafe_b64encode(prefix + mailbox_key + b"F\x00" + secrets.token_bytes(40)).decode()


def looks_like_id(value: str) -> bool:
    """False for strings Exchange would reject as malformed before looking anything up."""
    return bool(_ID_SHAPE.match(value))


def format_time(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def as_recipient(value: object) -> dict:
    """Graph's ``{"emailAddress": {"name", "address"}}`` from ``"Name <a@b>"``, ``"a@b"`` or a dict."""
    if isinstance(value, dict):
        inner = value.get("emailAddress", value)
        address = inner.get("address") if isinstance(inner, dict) else None
        if not isinstance(address, str) or "@" not in address:
            raise bad_request(f"At least one recipient is not valid: {value!r}.", "ErrorInvalidRecipients")
        return {"emailAddress": {"name": inner.get("name") or address, "address": address}}
    name, address = parseaddr(str(value))
    if "@" not in address:
        raise bad_request(f"At least one recipient is not valid: {value!r}.", "ErrorInvalidRecipients")
    return {"emailAddress": {"name": name or address, "address": address}}


def address_of(recipient: dict | None) -> str:
    return (recipient or {}).get("emailAddress", {}).get("address", "")


def new_thread_index(now: datetime) -> bytes:
    """The 22-byte header that starts a new conversation."""
    return b"\x01" + (_filetime(now) >> 24).to_bytes(5, "big") + secrets.token_bytes(16)


def reply_index(parent: bytes, now: datetime) -> bytes:
    """The parent's index plus one 5-byte child block (delta code, 31-bit time delta, random, sequence)."""
    delta = max(0, _filetime(now) - (int.from_bytes(parent[1:6], "big") << 24))
    code, bits = (0, delta >> 18) if delta < 1 << 49 else (1, delta >> 23)
    block = ((code << 31) | (bits & 0x7FFFFFFF)).to_bytes(4, "big") + bytes([secrets.randbelow(16) << 4])
    return parent + block


def conversation_id(mailbox_key: bytes, index: bytes) -> str:
    return base64.urlsafe_b64encode(b"\x00\x04\x24\x00" + mailbox_key + b"\x10\x00" + index[6:22]).decode()


def new_change_key() -> str:
    return "CQAAABYAAAD" + base64.b64encode(secrets.token_bytes(15)).decode()


def new_internet_message_id(now: datetime) -> str:
    stamp = now.strftime("%y%m%d%H%M%S")
    return f"<{secrets.token_hex(8).upper()}{stamp}@DM6PR{secrets.randbelow(10**6):06d}.namprd.prod.outlook.com>"


def body_preview(body: dict) -> str:
    text = body.get("content") or ""
    if (body.get("contentType") or "").lower() == "html":
        text = html.unescape(_TAGS.sub(" ", text))
    return _SPACES.sub(" ", text).strip()[:255]


def _filetime(moment: datetime) -> int:
    delta = moment - _FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


@dataclass
class Message:
    """Mutable state of one message; the owning mailbox's lock guards every change."""

    immutable_id: str
    rest_id: str
    folder_id: str
    internet_message_id: str
    conversation_index: bytes
    conversation_id: str
    created: datetime
    change_key: str = field(default_factory=new_change_key)
    subject: str = ""
    body: dict = field(default_factory=lambda: {"contentType": "text", "content": ""})
    from_: dict | None = None
    sender: dict | None = None
    to: list[dict] = field(default_factory=list)
    cc: list[dict] = field(default_factory=list)
    bcc: list[dict] = field(default_factory=list)
    reply_to: list[dict] = field(default_factory=list)
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    custom_headers: list[dict] = field(default_factory=list)
    hide_custom_headers: bool = False
    is_draft: bool = False
    is_read: bool = False
    importance: str = "normal"
    categories: list[str] = field(default_factory=list)
    flag: dict = field(default_factory=lambda: {"flagStatus": "notFlagged"})
    attachments: list[Attachment] = field(default_factory=list)
    received: datetime | None = None
    sent: datetime | None = None
    modified: datetime | None = None
    seq: int = 0
    entered_seq: int = 0

    @property
    def etag(self) -> str:
        return f'W/"{self.change_key}"'

    def render(self, *, immutable: bool, select: tuple[str, ...] | None = None) -> dict:
        """The Graph JSON of this message, with ``$select``-ed properties (``id`` and etag always)."""
        wanted = select or DEFAULT_PROPERTIES
        values = self._values(immutable)
        rv = {"@odata.etag": self.etag, "id": values["id"]}
        for name in wanted:
            rv[name] = values[name]() if callable(values[name]) else values[name]
        return rv

    def _values(self, immutable: bool) -> dict:
        return {
            "id": self.immutable_id if immutable else self.rest_id,
            "createdDateTime": format_time(self.created),
            "lastModifiedDateTime": format_time(self.modified or self.created),
            "changeKey": self.change_key,
            "categories": list(self.categories),
            "receivedDateTime": format_time(self.received or self.created),
            "sentDateTime": format_time(self.sent),
            "hasAttachments": any(not a.is_inline for a in self.attachments),
            "internetMessageId": self.internet_message_id,
            "subject": self.subject,
            "bodyPreview": lambda: body_preview(self.body),
            "importance": self.importance,
            "parentFolderId": self.folder_id,
            "conversationId": self.conversation_id,
            "conversationIndex": base64.b64encode(self.conversation_index).decode(),
            "isDeliveryReceiptRequested": False,
            "isReadReceiptRequested": False,
            "isRead": self.is_read,
            "isDraft": self.is_draft,
            "webLink": f"https://outlook.office365.com/owa/?ItemID={self.rest_id}&exvsurl=1&viewmodel=ReadMessageItem",
            "inferenceClassification": "focused",
            "body": dict(self.body),
            "uniqueBody": dict(self.body),
            "sender": self.sender,
            "from": self.from_,
            "toRecipients": list(self.to),
            "ccRecipients": list(self.cc),
            "bccRecipients": list(self.bcc),
            "replyTo": list(self.reply_to),
            "flag": dict(self.flag),
            "internetMessageHeaders": self.internet_headers,
        }

    def internet_headers(self) -> list[dict]:
        """RFC 5322 headers: a draft shows only what was set on it, a sent or received message the full set."""
        threading = [("In-Reply-To", self.in_reply_to)] if self.in_reply_to else []
        if self.references:
            threading.append(("References", " ".join(self.references)))
        custom = [] if self.hide_custom_headers else [(h["name"], h["value"]) for h in self.custom_headers]
        if self.is_draft:
            pairs = threading + custom
        else:
            pairs = [
                ("MIME-Version", "1.0"),
                ("Content-Type", "text/html; charset=\"utf-8\"" if self.body.get("contentType") == "html"
                 else "text/plain; charset=\"utf-8\""),
                ("Message-ID", self.internet_message_id),
                *threading,
                ("Subject", self.subject),
                ("From", _header_address(self.from_)),
                ("To", ", ".join(_header_address(r) for r in self.to)),
                *([("Cc", ", ".join(_header_address(r) for r in self.cc))] if self.cc else []),
                ("Date", format_datetime(self.sent or self.created)),
                ("Thread-Topic", re.sub(r"^(?:(?:RE|FW|AW|WG):\s*)+", "", self.subject, flags=re.I)),
                ("Thread-Index", base64.b64encode(self.conversation_index).decode()),
                *custom,
            ]
        return [{"name": name, "value": value} for name, value in pairs]


def _header_address(recipient: dict | None) -> str:
    inner = (recipient or {}).get("emailAddress", {})
    return formataddr((inner.get("name") or "", inner.get("address") or ""))
