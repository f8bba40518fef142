"""Writing Graph JSON onto a message: which properties a client may set, and when.

Exchange lets any message change its read state, flag or categories, but subject, body, recipients,
headers and attachments only while it is a draft; custom headers must start with ``x-``
(``InvalidInternetMessageHeader``).
"""

from __future__ import annotations

from typing import Any, Callable

from emulator.errors import GraphError, bad_request
from emulator.message import Message, as_recipient

_DRAFT_ONLY = {
    "subject", "body", "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "from", "sender",
    "internetMessageId", "internetMessageHeaders",
}


def recipients(value: Any, name: str) -> list[dict]:
    if not isinstance(value, list):
        raise bad_request(f"Property '{name}' must be a collection of recipients.")
    return [as_recipient(item) for item in value]


def body(value: Any) -> dict:
    if not isinstance(value, dict) or not isinstance(value.get("content", ""), str):
        raise bad_request("Property 'body' must be an itemBody with 'contentType' and 'content'.")
    content_type = str(value.get("contentType", "text")).lower()
    if content_type not in ("text", "html"):
        raise bad_request(f"Invalid contentType '{value.get('contentType')}'.")
    return {"contentType": content_type, "content": value.get("content", "")}


def custom_headers(value: Any) -> list[dict]:
    """Headers a client may add when creating a message: only ``x-`` ones."""
    if not isinstance(value, list):
        raise bad_request("Property 'internetMessageHeaders' must be a collection.")
    rv = []
    for header in value:
        name = header.get("name") if isinstance(header, dict) else None
        if not isinstance(name, str) or not name.lower().startswith("x-"):
            raise GraphError(400, "InvalidInternetMessageHeader",
                             f"The internet message header name '{name}' should start with 'x-' or 'X-'.")
        rv.append({"name": name, "value": str(header.get("value", ""))})
    return rv


def _set(attribute: str, convert: Callable[[Any], Any]) -> Callable[[Message, Any], None]:
    def setter(message: Message, value: Any) -> None:
        setattr(message, attribute, convert(value))
    return setter


def _typed(kind: type, name: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if not isinstance(value, kind):
            raise bad_request(f"Invalid value for property '{name}'.")
        return value
    return convert


_SETTERS: dict[str, Callable[[Message, Any], None]] = {
    "isRead": _set("is_read", _typed(bool, "isRead")),
    "importance": _set("importance", _typed(str, "importance")),
    "categories": _set("categories", _typed(list, "categories")),
    "flag": _set("flag", _typed(dict, "flag")),
    "subject": _set("subject", lambda v: "" if v is None else str(v)),
    "body": _set("body", body),
    "toRecipients": _set("to", lambda v: recipients(v, "toRecipients")),
    "ccRecipients": _set("cc", lambda v: recipients(v, "ccRecipients")),
    "bccRecipients": _set("bcc", lambda v: recipients(v, "bccRecipients")),
    "replyTo": _set("reply_to", lambda v: recipients(v, "replyTo")),
    "from": _set("from_", as_recipient),
    "sender": _set("sender", as_recipient),
    "internetMessageId": _set("internet_message_id", _typed(str, "internetMessageId")),
    "internetMessageHeaders": _set("custom_headers", custom_headers),
}


def apply_fields(message: Message, data: dict) -> None:
    """Set Graph properties on a message, as ``POST /messages`` or ``PATCH /messages/{id}`` would.

    :raise GraphError: 400 for read-only or unknown properties, and for draft-only ones on a sent
        or received message.
    """
    for name, value in data.items():
        if name.startswith("@odata."):
            continue
        setter = _SETTERS.get(name)
        if setter is None:
            raise bad_request(f"The property '{name}' does not exist on type 'microsoft.graph.message' "
                              "or cannot be written.", "ErrorInvalidProperty")
        if name in _DRAFT_ONLY:
            require_draft(message)
        setter(message, value)


def require_draft(message: Message) -> None:
    """What Exchange answers to a change of a sent or received message's content, attachments included.

    Learn documents nothing for adding an attachment to a message that is not a draft; the emulator
    answers as it does to a change of the subject or body there.
    """
    if not message.is_draft:
        raise bad_request("Update operation is not supported for some properties of a sent message.",
                          "ErrorInvalidPropertyUpdateSentMessage")
