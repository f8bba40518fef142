"""A message's attachments: list, get, ``$value``, add, delete, and createUploadSession.

As Graph documents them, under ``/messages/{id}`` and ``/mailFolders/{folder}/messages/{id}``:
https://learn.microsoft.com/graph/api/message-list-attachments,
https://learn.microsoft.com/graph/api/attachment-get,
https://learn.microsoft.com/graph/api/message-post-attachments,
https://learn.microsoft.com/graph/api/attachment-delete. Reading needs Mail.Read or
Mail.ReadWrite, writing Mail.ReadWrite; only a draft takes new attachments. ``$value`` is a file's
bytes in its own content type, an attached message's MIME (``message/rfc822``), and 405 for a link.
The upload URL createUploadSession hands out is served by :mod:`emulator.upload_views`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from emulator import attachments
from emulator.errors import bad_request, method_not_allowed
from emulator.fields import require_draft
from emulator.mail_views import check_options
from emulator.mailbox import Mailbox
from emulator.message import Message
from emulator.odata import parse_select
from emulator.routing import READ_ATTACHMENTS, WRITE_MAIL, GraphRequest, GraphResponse
from emulator.upload_sessions import attachment_item, precise_time

if TYPE_CHECKING:
    from emulator.graph import Graph

_EXPAND_ITEM = "microsoft.graph.itemattachment/item"


def list_attachments(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    select, with_item = _read_options(request)
    with mailbox.lock:
        value = [a.render(select, with_item=with_item) for a in _message(request, mailbox).attachments]
    return GraphResponse(200, {"@odata.context": _context(graph, request, mailbox), "value": value})


def get_attachment(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    select, with_item = _read_options(request)
    with mailbox.lock:
        attachment = attachments.find_attachment(_message(request, mailbox), request.params["attachment"])
        body = attachment.render(select, with_item=with_item)
    return GraphResponse(200, {"@odata.context": _context(graph, request, mailbox) + "/$entity", **body})


def attachment_value(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    check_options(request, set())
    with mailbox.lock:
        attachment = attachments.find_attachment(_message(request, mailbox), request.params["attachment"])
    if attachment.kind == "reference":
        raise method_not_allowed(request.method)
    content_type = attachment.content_type if attachment.kind == "file" else "message/rfc822"
    return GraphResponse(200, attachment.content, {"Content-Type": content_type or "application/octet-stream"})


def add_attachment(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    check_options(request, set())
    _check_folder(request, mailbox)
    new = attachments.from_graph(request.json(), graph.emulator.clock.now())
    attachment = graph.mail.add_attachment(mailbox, request.params["id"], new)
    return GraphResponse(201, {"@odata.context": _context(graph, request, mailbox) + "/$entity", **attachment.render()})


def delete_attachment(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    _check_folder(request, mailbox)
    graph.mail.delete_attachment(mailbox, request.params["id"], request.params["attachment"])
    return GraphResponse(204)


def create_upload_session(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    """201 with the session; see :mod:`emulator.upload_sessions`."""
    check_options(request, set())
    limits = graph.mail.limits
    item = attachment_item(request.json(), limits)
    with mailbox.lock:
        message = _message(request, mailbox)
        require_draft(message)
        message_id = message.immutable_id
    tenant_id = graph.emulator.directory.user(mailbox.user_id).tenant_id
    session = graph.emulator.uploads.create(
        item, client_id=request.principal.client_id, user_id=mailbox.user_id, message_id=message_id,
        resource=f"Users('{mailbox.user_id}@{tenant_id}')/Messages('{request.params['id']}')",
        mailbox_key=mailbox.key, lifetime=limits.upload_session_seconds)
    return GraphResponse(201, {
        "@odata.context": f"{graph.root}/$metadata#microsoft.graph.uploadSession",
        "uploadUrl": session.upload_url(graph.emulator.base_url),
        "expirationDateTime": precise_time(session.expires),
        "nextExpectedRanges": ["0-"],
    })


def _message(request: GraphRequest, mailbox: Mailbox) -> Message:
    _check_folder(request, mailbox)
    return mailbox.get(request.params["id"])


def _check_folder(request: GraphRequest, mailbox: Mailbox) -> None:
    """404 when a ``/mailFolders/{folder}/...`` path names no folder."""
    if "folder" in request.params:
        mailbox.folder(request.params["folder"])


def _read_options(request: GraphRequest) -> tuple[tuple[str, ...] | None, bool]:
    """``$select`` over the attachment properties, and whether ``$expand`` asks for an item's properties."""
    check_options(request, {"$select", "$expand"})
    expand = request.args.get("$expand")
    if expand is not None and expand.strip().lower() != _EXPAND_ITEM:
        raise bad_request(f"Could not find a property named '{expand}' on type 'microsoft.graph.attachment'.",
                          "RequestBroker--ParseUri")
    return parse_select(request.args.get("$select"), attachments.PROPERTIES, "attachment"), expand is not None


def _context(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> str:
    message_id = quote(request.params["id"], safe="")
    return f"{graph.root}/$metadata#users('{mailbox.user_id}')/messages('{message_id}')/attachments"


ROUTES = [
    route
    for prefix in ("/messages/{id}", "/mailFolders/{folder}/messages/{id}")
    for route in [
        ("GET", f"{prefix}/attachments", list_attachments, READ_ATTACHMENTS),
        ("POST", f"{prefix}/attachments", add_attachment, WRITE_MAIL),
        ("POST", f"{prefix}/attachments/createUploadSession", create_upload_session, WRITE_MAIL),
        ("GET", f"{prefix}/attachments/{{attachment}}", get_attachment, READ_ATTACHMENTS),
        ("DELETE", f"{prefix}/attachments/{{attachment}}", delete_attachment, WRITE_MAIL),
        ("GET", f"{prefix}/attachments/{{attachment}}/$value", attachment_value, READ_ATTACHMENTS),
    ]
]
