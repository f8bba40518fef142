"""Parsing an uploaded raw email (RFC 822/5322), and the rules every path that stores mail shares.

:func:`parse_email` accepts any bytes and either returns a :class:`ParsedEmail` or raises
:class:`InvalidEmail` with a sentence a user can act on; nothing else escapes it. Only the
Message-ID is required: a header that cannot be understood (a malformed ``Date`` or address list)
is left out rather than rejecting the whole email. The reading itself is :mod:`app.records.mime`, linear
in the size of the upload whatever its content.

Uploaded mail and mail fetched from Graph are both sender-controlled, so both keep to the same
bounds before anything is stored: a Message-ID is at most :data:`MAX_MESSAGE_ID_LENGTH` characters
(RFC 5322's line length), ``References`` keeps its last :data:`MAX_REFERENCES` ids (as mail clients
trim it), and a body is cut after :data:`MAX_BODY_BYTES` and marked truncated (:func:`bounded_body`).

Header values from raw bytes may hold bytes that are not UTF-8; they are read with replacement
characters, so every string returned can be stored and served as JSON.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from datetime import timezone
from typing import NamedTuple

from app.core.timeutil import iso
from app.records import mime
from app.records.attachments import NewAttachment
from app.records.mail_html import html_text

PREVIEW_LENGTH = 255
MAX_MESSAGE_ID_LENGTH = 998
MAX_REFERENCES = 100
MAX_BODY_BYTES = 1024 * 1024

_BRACKETED = re.compile(r"<([^<>]*)>")


class InvalidEmail(Exception):
    """The upload is not an email the service can attach; ``reason`` says why, in one sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Address(NamedTuple):
    name: str
    address: str


@dataclass(frozen=True)
class Body:
    """A message body as the service stores it (see :func:`bounded_body`)."""

    content: str | None
    type: str | None  # "text" or "html"
    truncated: bool
    preview: str


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str
    in_reply_to: str | None
    references: tuple[str, ...]
    from_: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    sent_at: str | None  # ISO-8601 UTC, as the database stores times
    subject: str
    body: str | None
    body_type: str | None  # "text" or "html"
    body_preview: str
    body_truncated: bool = False
    attachments: tuple[NewAttachment, ...] = ()


def normalize_message_id(value: str | None) -> str | None:
    """``value`` as one ``<id>`` without whitespace (folding may split an id).

    None if empty or longer than :data:`MAX_MESSAGE_ID_LENGTH`: no mail system makes such an id,
    and it would make an unbounded thread key.
    """
    message_id = _bracketed_id(value)
    return message_id if message_id is not None and len(message_id) <= MAX_MESSAGE_ID_LENGTH else None


def _bracketed_id(value: str | None) -> str | None:
    if not value:
        return None
    found = _BRACKETED.search(value)
    core = "".join((found.group(1) if found else value).split())
    return f"<{core}>" if core else None


def message_ids(value: str | None) -> list[str]:
    """The Message-IDs named in an ``In-Reply-To`` or ``References`` value, in order, once each.

    The ids are the ``<...>`` tokens; comments and folding between them are ignored. A value with
    no angle brackets at all (some mailers omit them) is read as whitespace- or comma-separated ids,
    keeping only tokens with an ``@``.
    """
    if not value:
        return []
    tokens = _BRACKETED.findall(value) or [t for t in re.split(r"[\s,]+", value) if "@" in t]
    ids = (normalize_message_id(token) for token in tokens)
    return list(dict.fromkeys(i for i in ids if i))


def references(value: str | None) -> tuple[str, ...]:
    """The ids of a ``References`` value, keeping the last :data:`MAX_REFERENCES` (the nearest parents)."""
    return tuple(message_ids(value)[-MAX_REFERENCES:])


def bounded_body(content: str | None, body_type: str | None, given_preview: str | None = None) -> Body:
    """``content`` cut after :data:`MAX_BODY_BYTES` of UTF-8 (at a character boundary), with its preview.

    ``given_preview`` is Graph's own ``bodyPreview`` when there is one; otherwise the preview is
    made from the (cut) body.
    """
    truncated = False
    if content is not None and len(content) > MAX_BODY_BYTES // 4:  # shorter ones cannot be over
        encoded = content.encode("utf-8", "surrogatepass")
        if len(encoded) > MAX_BODY_BYTES:
            content = encoded[:MAX_BODY_BYTES].decode("utf-8", "ignore")
            truncated = True
    shown = given_preview[:PREVIEW_LENGTH] if given_preview is not None else preview(content, body_type)
    return Body(content, body_type, truncated, shown)


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse an uploaded email; raise :class:`InvalidEmail` if it is not one we can attach."""
    if not isinstance(raw, (bytes, bytearray)):
        raise InvalidEmail("The upload must be the raw bytes of an email (message/rfc822).")
    raw = bytes(raw)
    if not raw.strip():
        raise InvalidEmail("The upload is empty.")
    budget = mime.Budget()
    try:
        fields, content_start = mime.read_headers(raw, 0, budget, envelope=True)
        if not fields:
            raise InvalidEmail("The upload has no email headers; it does not look like an email.")
        headers = {name: mime.header_value(value) or "" for name, value in fields.items()}
        message_id = _message_id(headers.get("message-id"))
        part = mime.find_body(raw, mime.Part(fields, content_start, len(raw), budget=budget))
        attachments = _attachments(raw, mime.Part(fields, content_start, len(raw)))
    except mime.HeadersTooLarge as e:
        raise InvalidEmail(e.reason) from None
    in_reply_to = message_ids(headers.get("in-reply-to"))
    body = bounded_body(mime.content(raw, part) if part else None,
                        ("html" if part.content_type() == "text/html" else "text") if part else None)
    return ParsedEmail(
        message_id=message_id,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=references(headers.get("references")),
        from_=next(iter(_addresses(headers.get("from"))), None),
        to=_addresses(headers.get("to")),
        cc=_addresses(headers.get("cc")),
        sent_at=_date(headers.get("date")),
        subject=mime.decode_words(headers.get("subject", "")),
        body=body.content,
        body_type=body.type,
        body_preview=body.preview,
        body_truncated=body.truncated,
        attachments=attachments,
    )


def _attachments(raw: bytes, message: mime.Part) -> tuple[NewAttachment, ...]:
    """The upload's attachments: its parts other than the body, each with its bytes. A part marked
    ``inline`` or carrying a ``Content-ID`` without being marked ``attachment`` is inline (an image
    an HTML body shows by ``cid:``). Parts are told apart by their position in the message."""
    found = []
    for number, part in enumerate(mime.attachment_parts(raw, message), start=1):
        data = mime.payload(raw, part)
        kind = part.content_type()
        fallback = "message.eml" if kind == "message/rfc822" else f"attachment-{number}"
        content_id = part.content_id()
        inline = part.disposition() == "inline" or (content_id is not None and not part.is_attachment())
        found.append(NewAttachment(source_key=f"part-{number}", name=part.filename() or fallback, content_type=kind,
                                   size=len(data), inline=inline, content_id=content_id, content=data))
    return tuple(found)


def _message_id(value: str | None) -> str:
    message_id = _bracketed_id(value)
    if message_id is None:
        raise InvalidEmail("The email has no Message-ID header, so it cannot be threaded.")
    if len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise InvalidEmail(f"The email's Message-ID is {len(message_id):,} characters long; "
                           f"it may be at most {MAX_MESSAGE_ID_LENGTH}.")
    return message_id


def preview(body: str | None, body_type: str | None) -> str:
    """The first :data:`PREVIEW_LENGTH` characters of ``body`` as plain text, whitespace collapsed."""
    if not body:
        return ""
    if body_type == "html":
        body = html_text(body, PREVIEW_LENGTH)
    return " ".join(body[:PREVIEW_LENGTH * 64].split())[:PREVIEW_LENGTH]


def _addresses(value: str | None) -> tuple[Address, ...]:
    return tuple(Address(name, address) for name, address in mime.addresses(value or ""))


def _date(value: str | None) -> str | None:
    """The ``Date`` header as ISO-8601 UTC; None when missing or unreadable. No zone means UTC."""
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return iso(moment)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
