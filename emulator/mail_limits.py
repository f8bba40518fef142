"""The size limits of Outlook mail through Graph, each a setting a test may lower.

Graph refuses a request body over 4 MB (413, "The maximum request length supported is 4MB.", as reported
in python-o365 issue 472; earlier Learn text named the 4 MB request limit), which is why
``POST .../attachments`` takes files only under 3 MB: base64 makes 3 MB of file 4 MB of JSON
(https://learn.microsoft.com/graph/api/message-post-attachments). Files of 3 MB to 150 MB go through an
upload session, in ranges of up to 4 MB (https://learn.microsoft.com/graph/outlook-large-attachments).
Exchange Online limits a message, attachments included, to 35 MB unless an admin raises it, to at most
150 MB (https://learn.microsoft.com/graph/api/attachment-createuploadsession, and the message limits of
https://learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits),
counting the message as it travels, in MIME, where base64 adds a third to every attachment
(https://learn.microsoft.com/exchange/mail-flow/message-size-limits).
MB here is MiB, as in Exchange (its 35 MB default shows as "35 MB (36,700,160 bytes)").

Learn names no error for a message over the limit; the emulator answers 413 with Exchange's
``ErrorMessageSizeExceeded`` and its text, as reported from Graph (microsoft-graph-docs-contrib
issue 2561), when a send or a new attachment would cross it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from emulator.errors import GraphError

if TYPE_CHECKING:
    from emulator.attachments import Attachment
    from emulator.message import Message

MiB = 1024 * 1024


@dataclass(frozen=True)
class MailLimits:
    """Byte limits, and how long an upload session lasts (undocumented; two hours here)."""

    max_message_bytes: int = 35 * MiB
    max_request_bytes: int = 4 * MiB
    min_upload_session_bytes: int = 3 * MiB
    max_attachment_bytes: int = 150 * MiB
    max_chunk_bytes: int = 4 * MiB
    upload_session_seconds: float = 7200.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f"{f.name} must be positive, not {getattr(self, f.name)}")

    def changed(self, **changes: float) -> MailLimits:
        """These limits with some replaced; a ValueError names an unknown or non-positive one."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown mail limit(s) {', '.join(sorted(unknown))}: use "
                             f"{', '.join(f.name for f in fields(self))}")
        return replace(self, **changes)

    def check_message(self, message: Message, adding: Iterable[Attachment] = ()) -> None:
        """413 ``ErrorMessageSizeExceeded`` when the message, with ``adding``, is over :attr:`max_message_bytes`."""
        if _message_size(message, adding) > self.max_message_bytes:
            raise GraphError(413, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.")


def check_body(body: bytes, limit: int) -> None:
    """413 for a request body over ``limit`` bytes (:attr:`MailLimits.max_request_bytes` or ``max_chunk_bytes``).

    Only the status and the message are on record; the code follows Exchange's naming.
    """
    if len(body) > limit:
        raise GraphError(413, "ErrorRequestEntityTooLarge",
                         f"The maximum request length supported is {limit / MiB:g}MB.")


def _message_size(message: Message, adding: Iterable[Attachment] = ()) -> int:
    """The message's size as Exchange measures it, roughly: subject and body, every attachment base64-encoded."""
    text = len(message.subject.encode()) + len(str(message.body.get("content", "")).encode())
    return text + sum(4 * -(-a.size // 3) for a in [*message.attachments, *adding])
