"""Parsing an uploaded raw email (RFC 822/5322), and the Message-ID rules every path shares.

:func:`parse_email` accepts any bytes and either returns a :class:`ParsedEmail` or raises
:class:`InvalidEmail` with a sentence a user can act on; nothing else escapes it. Only the
Message-ID is required: a header that cannot be understood (a malformed ``Date`` or address list)
is left out rather than rejecting the whole email.

Header values from raw bytes may hold undecodable bytes (Python keeps them as surrogate escapes);
:func:`_text` turns them into UTF-8 with replacement characters, so every string returned can be
stored and served as JSON.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import html
import re
from dataclasses import dataclass
from datetime import timezone
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import NamedTuple

from app.timeutil import iso

PREVIEW_LENGTH = 255

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


def normalize_message_id(value: str | None) -> str | None:
    """``value`` as one ``<id>`` without whitespace (folding may split an id), or None if empty."""
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


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse an uploaded email; raise :class:`InvalidEmail` if it is not one we can attach."""
    if not isinstance(raw, (bytes, bytearray)):
        raise InvalidEmail("The upload must be the raw bytes of an email (message/rfc822).")
    if not raw.strip():
        raise InvalidEmail("The upload is empty.")
    try:
        msg = email.message_from_bytes(bytes(raw), policy=email.policy.default)
        headers: dict[str, str] = {}
        for name, value in msg.raw_items():
            headers.setdefault(name.lower(), _text(value))  # the first of a repeated header wins
    except Exception as e:  # the parser is lenient; anything it still trips on is bad input
        raise InvalidEmail("The upload could not be read as an email.") from e
    if not headers:
        raise InvalidEmail("The upload has no email headers; it does not look like an email.")
    message_id = normalize_message_id(headers.get("message-id"))
    if message_id is None:
        raise InvalidEmail("The email has no Message-ID header, so it cannot be threaded.")
    in_reply_to = message_ids(headers.get("in-reply-to"))
    body, body_type = _body(msg)
    return ParsedEmail(
        message_id=message_id,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=tuple(message_ids(headers.get("references"))),
        from_=next(iter(_addresses(msg, "from")), None),
        to=_addresses(msg, "to"),
        cc=_addresses(msg, "cc"),
        sent_at=_date(headers.get("date")),
        subject=_header(msg, "subject"),
        body=body,
        body_type=body_type,
        body_preview=preview(body, body_type),
    )


def preview(body: str | None, body_type: str | None) -> str:
    """The first :data:`PREVIEW_LENGTH` characters of ``body`` as plain text, whitespace collapsed."""
    if not body:
        return ""
    if body_type == "html":
        body = _html_text(body)
    return " ".join(body.split())[:PREVIEW_LENGTH]


def _text(value: str) -> str:
    """Undo surrogate escapes: raw header bytes decoded as UTF-8, replacing what is not UTF-8."""
    text = str(value)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (a utf-7 part can decode to one)
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


def _header(msg: EmailMessage, name: str) -> str:
    """A header decoded (RFC 2047 encoded-words included), or its raw text if decoding fails."""
    try:
        value = msg[name]
    except Exception:  # the header parsers raise assorted errors on hostile input
        value = _raw(msg, name)
    return _text(value or "").strip()


def _raw(msg: EmailMessage, name: str) -> str:
    return next((value for key, value in msg.raw_items() if key.lower() == name), "")


def _addresses(msg: EmailMessage, name: str) -> tuple[Address, ...]:
    """The addresses of an address header; a malformed one falls back to the lenient utils parser."""
    try:
        header = msg[name]
        pairs = [(a.display_name, a.addr_spec) for a in header.addresses] if header is not None else []
    except Exception:  # as in _header
        pairs = email.utils.getaddresses([_raw(msg, name)])
    return tuple(Address(_text(n), _text(a)) for n, a in pairs if a and "@" in a)


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


def _body(msg: EmailMessage) -> tuple[str | None, str | None]:
    """The text/plain body if there is one, else the text/html one, with its type."""
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except Exception:  # a broken MIME structure: keep the headers, drop the body
        return None, None
    if part is None:
        return None, None
    body_type = "html" if part.get_content_subtype() == "html" else "text"
    try:
        content = part.get_content()
    except Exception:  # an unknown charset or a broken transfer encoding: decode leniently
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return _text(content), body_type


_INVISIBLE = frozenset({"script", "style", "head", "title"})
_BREAKS = frozenset({"br", "p", "div", "li", "tr", "td", "th", "table", "ul", "ol", "blockquote", "hr",
                     "h1", "h2", "h3", "h4", "h5", "h6"})


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML document; block tags separate words, inline ones do not."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _INVISIBLE:
            self._hidden += 1
        if tag in _BREAKS:
            self.chunks.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE and self._hidden:
            self._hidden -= 1
        if tag in _BREAKS:
            self.chunks.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.chunks.append(data)


def _html_text(markup: str) -> str:
    extractor = _TextExtractor()
    try:
        extractor.feed(markup)
        extractor.close()
    except AssertionError:  # _markupbase gives up on some malformed declarations, such as "<!["
        return html.unescape(re.sub(r"<[^>]*>", " ", markup))
    return "".join(extractor.chunks)
