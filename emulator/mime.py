"""Reading the base64 MIME body ``POST /me/sendMail`` accepts with ``Content-Type: text/plain``.

Its attachment parts become file attachments; one with ``Content-Disposition: inline`` is inline, and
its ``Content-ID`` (without the angle brackets) is the attachment's ``contentId``.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses
from typing import cast

from emulator.attachments import Attachment, file_attachment
from emulator.errors import GraphError


@dataclass
class MimeMessage:
    """What a MIME message contributes: Graph-shaped fields plus the threading headers only MIME may set."""

    fields: dict
    internet_message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)


def parse_mime(payload: bytes) -> MimeMessage:
    """Decode and parse; 400 ``ErrorMimeContentInvalidBase64String`` when the base64 is bad."""
    try:
        raw = base64.b64decode(b"".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid() from None
    if not raw.strip():
        raise _invalid()
    parsed = cast(EmailMessage, email.message_from_bytes(raw, policy=email.policy.default))
    fields = {
        "subject": str(parsed.get("Subject", "")),
        "body": _body(parsed),
        "toRecipients": _addresses(parsed, "To"),
        "ccRecipients": _addresses(parsed, "Cc"),
        "bccRecipients": _addresses(parsed, "Bcc"),
        "internetMessageHeaders": [
            {"name": name, "value": str(value)} for name, value in parsed.items() if name.lower().startswith("x-")
        ],
    }
    references = str(parsed.get("References", "")).split()
    return MimeMessage(
        fields=fields,
        internet_message_id=str(parsed["Message-ID"]).strip() if parsed.get("Message-ID") else None,
        in_reply_to=str(parsed["In-Reply-To"]).strip() if parsed.get("In-Reply-To") else None,
        references=references,
        attachments=_attachments(parsed),
    )


def _invalid() -> GraphError:
    return GraphError(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")


def _attachments(parsed: EmailMessage) -> list[Attachment]:
    """Every leaf part but the body that has a file name, a Content-ID or ``Content-Disposition: attachment``."""
    body = parsed.get_body(preferencelist=("html", "plain"))
    rv = []
    for part in parsed.walk():
        if part.is_multipart() or part is body:
            continue
        content_id = str(part.get("Content-ID", "")).strip().strip("<>") or None
        if part.get_filename() or content_id or part.get_content_disposition() == "attachment":
            rv.append(file_attachment(part.get_filename() or "attachment", part.get_payload(decode=True) or b"",
                                      part.get_content_type(), inline=part.get_content_disposition() == "inline",
                                      content_id=content_id))
    return rv


def _addresses(parsed: EmailMessage, header: str) -> list[dict]:
    values = [str(v) for v in parsed.get_all(header, [])]
    return [{"emailAddress": {"name": name or address, "address": address}}
            for name, address in getaddresses(values) if "@" in address]


def _body(parsed: EmailMessage) -> dict:
    part = parsed.get_body(preferencelist=("html", "plain"))
    if part is None:
        return {"contentType": "text", "content": ""}
    content_type = "html" if part.get_content_subtype() == "html" else "text"
    return {"contentType": content_type, "content": part.get_content()}
