"""Upload sessions: how a file of 3 MB to 150 MB is attached to a draft, a range of bytes at a time.

``createUploadSession`` takes an ``AttachmentItem`` (``attachmentType`` ``file``, ``name``, ``size``,
optionally ``contentType``, ``isInline``, ``contentId``) and answers 201 with an opaque ``uploadUrl``
that carries its own authorization, an ``expirationDateTime`` and ``nextExpectedRanges: ["0-"]``
(https://learn.microsoft.com/graph/api/attachment-createuploadsession). A file under 3 MB is refused
with ``ErrorAttachmentSizeShouldNotBeLessThanMinimumSize``; it belongs in a plain POST. The ranges are
PUT to the URL in order, without an ``Authorization`` header; each answer is 200 with the next start
(``["2097152"]``) and the same expiry, the last one 201 with a ``Location`` naming the new attachment;
DELETE cancels (https://learn.microsoft.com/graph/outlook-large-attachments). The URL and the
``Location`` have the shape of Outlook's (``.../api/v2.0/Users('{oid}@{tid}')/Messages('{id}')/...``),
on the emulator's host. The session's expiry does not move as ranges arrive.

What Learn leaves open, and the emulator answers: a bearer token on the URL is 401
``InvalidAudienceForResource``, as reported from Outlook (msgraph-sdk-java issue 409); an expired
session is 401 (its token has expired), a cancelled or finished one 404; a range that does not start at
the next expected byte is 416 ``invalidRange`` (https://learn.microsoft.com/graph/errors); a range over
4 MB is 413; a file over 150 MB is 413 ``ErrorMessageSizeExceeded``. Names in the ``AttachmentItem``
are read without regard to case, as Graph reads JSON.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from emulator.attachments import Attachment, file_attachment
from emulator.clock import Clock
from emulator.errors import GraphError, bad_request, item_not_found
from emulator.mail_limits import MailLimits, check_body
from emulator.message import REST_PREFIX, new_id

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)


@dataclass
class UploadSession:
    """One file on its way to a draft; ``resource`` is the draft's path in Outlook's URLs."""

    id: str
    token: str
    client_id: str
    user_id: str
    message_id: str
    resource: str
    name: str
    size: int
    content_type: str | None
    is_inline: bool
    content_id: str | None
    expires: datetime
    received: bytearray = field(default_factory=bytearray)

    def upload_url(self, base_url: str) -> str:
        return f"{base_url}/api/v2.0/{self.resource}/AttachmentSessions('{self.id}')?authtoken={self.token}"

    def location(self, base_url: str, attachment_id: str) -> str:
        return f"{base_url}/api/v2.0/{self.resource}/Attachments('{attachment_id}')"

    def progress(self, base_url: str) -> dict:
        """The answer to a range that is not the last, as Learn shows it (``ExpirationDateTime`` capitalised)."""
        resource = quote(self.resource, safe="'()/")
        return {"@odata.context": f"{base_url}/api/v2.0/$metadata#{resource}/AttachmentSessions/$entity",
                "ExpirationDateTime": precise_time(self.expires), "nextExpectedRanges": [str(len(self.received))]}

    def attachment(self) -> Attachment:
        return file_attachment(self.name, bytes(self.received), self.content_type, inline=self.is_inline,
                               content_id=self.content_id)


def attachment_item(data: dict, limits: MailLimits) -> dict[str, Any]:
    """The checked ``AttachmentItem`` of a createUploadSession body, its names lower-cased."""
    item = next((value for key, value in data.items() if key.lower() == "attachmentitem"), None)
    if not isinstance(item, dict):
        raise bad_request("The 'AttachmentItem' parameter is required.", "ErrorInvalidRequest")
    item = {key.lower(): value for key, value in item.items()}
    if str(item.get("attachmenttype", "")).lower() != "file":
        raise bad_request("An upload session attaches a file: 'attachmentType' must be 'file'.", "ErrorInvalidRequest")
    size, name = item.get("size"), item.get("name")
    if not isinstance(name, str) or not name or not isinstance(size, int) or isinstance(size, bool):
        raise bad_request("The 'AttachmentItem' needs a 'name' and a 'size' in bytes.", "ErrorInvalidRequest")
    if size < limits.min_upload_session_bytes:
        raise bad_request("Attachment size must be greater than the minimum size.",
                          "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize")
    if size > limits.max_attachment_bytes:
        raise GraphError(413, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.")
    return item


def precise_time(value: datetime) -> str:
    """Outlook's seven-digit fractions: ``2019-09-25T01:09:30.7671707Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


class UploadSessions:
    """Every open session, by id; expired ones are dropped when seen and whenever a session is created."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, UploadSession] = {}

    def create(self, item: dict[str, Any], *, client_id: str, user_id: str, message_id: str, resource: str,
               mailbox_key: bytes, lifetime: float) -> UploadSession:
        """A session for a checked :func:`attachment_item`, ready for its first range."""
        now = self.clock.now()
        session = UploadSession(
            id=new_id(REST_PREFIX, mailbox_key), token=secrets.token_urlsafe(48), client_id=client_id,
            user_id=user_id, message_id=message_id, resource=resource, name=item["name"], size=item["size"],
            content_type=item.get("contenttype"), is_inline=item.get("isinline") is True,
            content_id=item.get("contentid"), expires=now + timedelta(seconds=lifetime),
        )
        with self._lock:
            for expired in [s.id for s in self._sessions.values() if s.expires <= now]:
                del self._sessions[expired]
            self._sessions[session.id] = session
        return session

    def open(self, session_id: str, token: str | None) -> UploadSession:
        """The session an upload URL names, if its ``authtoken`` is right and it has not expired."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise item_not_found()
            if not hmac.compare_digest(session.token, token or ""):
                raise GraphError(401, "InvalidAuthenticationToken", "The authentication token is not valid.")
            if session.expires <= self.clock.now():
                del self._sessions[session_id]
                raise GraphError(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
            return session

    def write(self, session: UploadSession, content_range: str | None, body: bytes, limits: MailLimits) -> bool:
        """Take the next range of bytes; True once the file is whole."""
        check_body(body, limits.max_chunk_bytes)
        match = _CONTENT_RANGE.match(content_range or "")
        if match is None:
            raise bad_request("The Content-Range header must be 'bytes {start}-{end}/{total}'.", "ErrorInvalidRequest")
        first, last, total = (int(n) for n in match.groups())
        if total != session.size or len(body) != last - first + 1:
            raise bad_request(f"The range {first}-{last}/{total} does not fit the {len(body)} bytes sent or the "
                              f"session's {session.size}.", "ErrorInvalidRequest")
        with self._lock:
            if first != len(session.received) or last >= session.size:
                raise GraphError(416, "invalidRange", "The specified byte range is invalid or unavailable. The "
                                 f"next expected range starts at {len(session.received)}.")
            session.received += body
            return len(session.received) == session.size

    def close(self, session: UploadSession) -> None:
        """Cancel the session, or forget a finished one."""
        with self._lock:
            self._sessions.pop(session.id, None)
