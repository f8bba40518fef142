"""The attachments of a message as the emulator stores them, and how Graph renders them.

Three kinds derive from attachment (https://learn.microsoft.com/graph/api/resources/attachment):
a file, with its bytes as base64 ``contentBytes``
(https://learn.microsoft.com/graph/api/resources/fileattachment); an Outlook item, here always a
message, whose properties come back only with ``$expand=microsoft.graph.itemAttachment/item`` and
whose ``$value`` is its MIME (https://learn.microsoft.com/graph/api/resources/itemattachment,
https://learn.microsoft.com/graph/api/attachment-get); and a link to a file in the cloud, of which v1.0
shows only the base properties, ``size`` being that of the link's metadata
(https://learn.microsoft.com/graph/api/resources/referenceattachment).

An attachment id starts with the bytes of its message's id, as Exchange's do
(``AAMkAGUzY5QKjAAA=`` has ``AAMkAGUzY5QKjAAABEgAQAMkpJI_X-LBFgvrv1PlZYd8=``). ``$select`` takes the
base type's properties; a file's own need the type cast (``microsoft.graph.fileAttachment/contentId``),
and with a ``$select`` only those come back, with ``@odata.type`` and ``id``.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from emulator.errors import GraphError, bad_request, item_not_found
from emulator.fields import apply_fields
from emulator.message import Message, format_time, looks_like_id, new_internet_message_id, new_thread_index

#: The base type's properties, which ``$select`` takes as they are.
BASE_PROPERTIES = ("id", "lastModifiedDateTime", "name", "contentType", "size", "isInline")
#: Every property ``$select`` accepts: the base ones, and a file's own behind the type cast.
PROPERTIES = (*BASE_PROPERTIES, *(f"microsoft.graph.fileAttachment/{name}"
                                  for name in ("contentId", "contentLocation", "contentBytes")))
#: What the Python facade shows of each attachment: everything but the bytes.
SUMMARY = (*BASE_PROPERTIES, "microsoft.graph.fileAttachment/contentId")
_TYPES = {"file": "#microsoft.graph.fileAttachment", "item": "#microsoft.graph.itemAttachment",
          "reference": "#microsoft.graph.referenceAttachment"}
_ATTACHMENT_MARKER = b"\x12\x00\x10\x00"


@dataclass(frozen=True)
class Attachment:
    """One attachment; ``content`` is a file's bytes or an item's MIME.

    Made without an id; :func:`attach` gives each copy on a message one of its own.
    """

    kind: str
    name: str
    content_type: str | None
    size: int
    content: bytes = b""
    is_inline: bool = False
    content_id: str | None = None
    item: Message | None = None
    id: str = ""
    modified: datetime | None = None

    def render(self, select: tuple[str, ...] | None = None, *, with_item: bool = False) -> dict:
        """The Graph JSON: every property of its type, or the ``$select``-ed ones; ``item`` when expanded."""
        values = self._values()
        names = values if select is None else [name.rpartition("/")[2] for name in select]
        rv = {"@odata.type": _TYPES[self.kind], "id": self.id}
        for name in names:
            if name in values:
                rv[name] = values[name]() if callable(values[name]) else values[name]
        if with_item and self.item is not None:
            item = self.item.render(immutable=False)
            del item["@odata.etag"]
            rv["item"] = {"@odata.type": "#microsoft.graph.message", **item}
        return rv

    def _values(self) -> dict[str, Any]:
        rv: dict[str, Any] = {"lastModifiedDateTime": format_time(self.modified), "name": self.name,
                              "contentType": self.content_type, "size": self.size, "isInline": self.is_inline}
        if self.kind == "file":
            rv.update(contentId=self.content_id, contentLocation=None,
                      contentBytes=lambda: base64.b64encode(self.content).decode())
        return rv


def file_attachment(name: str, content: bytes, content_type: str | None = None, *, inline: bool = False,
                    content_id: str | None = None) -> Attachment:
    """A file; without a content type, the one its name suggests (Exchange also guesses one)."""
    content_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Attachment("file", name, content_type, len(content), content, inline, content_id)


def item_attachment(name: str, properties: Any, now: datetime) -> Attachment:
    """A message made from Graph message properties (``subject``, ``body``, ``from``, ``toRecipients``...)."""
    if not isinstance(properties, dict):
        raise bad_request("An item attachment's 'item' must be a message.", "ErrorInvalidRequest")
    if str(properties.get("@odata.type", "microsoft.graph.message")).lstrip("#").lower() != "microsoft.graph.message":
        raise bad_request("The emulator attaches only messages as items.", "ErrorInvalidRequest")
    index = new_thread_index(now)
    message = Message(immutable_id="", rest_id="", folder_id="", internet_message_id=new_internet_message_id(now),
                      conversation_index=index, conversation_id="", created=now, is_draft=True, is_read=True,
                      received=now, sent=now)
    apply_fields(message, properties)
    message.is_draft = False
    mime = _mime(message)
    return Attachment("item", name, None, len(mime), mime, item=message)


def reference_attachment(name: str, source_url: str, content_type: str | None = None) -> Attachment:
    return Attachment("reference", name, content_type, len(name.encode()) + len(source_url.encode()))


def from_graph(data: Any, now: datetime) -> Attachment:
    """An attachment from Graph JSON: ``POST .../attachments`` or a new message's, createReply's or sendMail's.

    A file needs ``name`` and ``contentBytes``; v1.0 cannot create reference attachments.
    """
    if not isinstance(data, dict):
        raise bad_request("An attachment must be an object.", "UnableToDeserializePostBody")
    kind = str(data.get("@odata.type", "")).lstrip("#").lower()
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request("The attachment's 'name' is required.", "ErrorInvalidRequest")
    if kind == "microsoft.graph.fileattachment":
        try:
            content = base64.b64decode(data["contentBytes"], validate=True)
        except (KeyError, binascii.Error, ValueError, TypeError):
            raise bad_request("The 'contentBytes' of a file attachment must be base64.",
                              "UnableToDeserializePostBody") from None
        return file_attachment(name, content, data.get("contentType"), inline=data.get("isInline") is True,
                               content_id=data.get("contentId"))
    if kind == "microsoft.graph.itemattachment":
        return item_attachment(name, data.get("item"), now)
    raise bad_request("An attachment's '@odata.type' must be '#microsoft.graph.fileAttachment' or "
                      "'#microsoft.graph.itemAttachment'.", "UnableToDeserializePostBody")


def from_spec(spec: Any, now: datetime) -> Attachment:
    """An attachment as :meth:`~emulator.mailstore.MailStore.deliver` and the control API take it.

    A file is ``{"name", "content": bytes | "content_base64": str, "content_type"?, "inline"?, "content_id"?}``,
    an attached email ``{"name", "item": {Graph message properties, e.g. "subject"}}``, a link
    ``{"name", "source_url", "content_type"?}``.

    :raise ValueError: for anything else. :raise GraphError: for an item's properties, as Graph would.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise ValueError(f"an attachment needs a 'name': {spec!r}")
    name, content_type = spec["name"], spec.get("content_type")
    if "item" in spec:
        return item_attachment(name, spec["item"], now)
    if "source_url" in spec:
        return reference_attachment(name, str(spec["source_url"]), content_type)
    content = spec.get("content")
    if content is None and isinstance(spec.get("content_base64"), str):
        try:
            content = base64.b64decode(spec["content_base64"], validate=True)
        except binascii.Error:
            raise ValueError(f"the 'content_base64' of attachment {name!r} is not base64") from None
    if not isinstance(content, bytes):
        raise ValueError(f"attachment {name!r} needs 'content' (bytes), 'content_base64', 'item' or 'source_url'")
    return file_attachment(name, content, content_type, inline=spec.get("inline") is True,
                           content_id=spec.get("content_id"))


def attach(message: Message, attachment: Attachment, now: datetime) -> Attachment:
    """Add a copy of ``attachment`` to the message, with an id of its own; returns the copy."""
    rv = replace(attachment, id=_new_id(message), modified=now)
    message.attachments.append(rv)
    return rv


def find_attachment(message: Message, attachment_id: str) -> Attachment:
    """One of the message's attachments; 400 for a malformed id, 404 for an unknown one."""
    for attachment in message.attachments:
        if attachment.id == attachment_id:
            return attachment
    if not looks_like_id(attachment_id):
        raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
    raise item_not_found()


def _new_id(message: Message) -> str:
    key = base64.urlsafe_b64decode(message.rest_id) + _ATTACHMENT_MARKER + secrets.token_bytes(16)
    return base64.urlsafe_b64encode(key).decode()


def _mime(message: Message) -> bytes:
    """The message as RFC 5322 bytes: its full ``internetMessageHeaders``, then its body."""
    rv = EmailMessage()
    for header in message.internet_headers():
        if header["name"].lower() not in ("mime-version", "content-type"):
            rv[header["name"]] = header["value"]
    subtype = "html" if message.body.get("contentType") == "html" else "plain"
    rv.set_content(message.body.get("content", ""), subtype=subtype)
    return rv.as_bytes()
