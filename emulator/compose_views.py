"""Changing mail: drafts, PATCH, DELETE, move, createReply, reply, send and sendMail.

Status codes follow Graph: 201 with the message for create, createReply and move; 200 for PATCH;
204 for DELETE; 202 with no body for reply, send and sendMail (which never reveal an id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator import transport
from emulator.errors import bad_request
from emulator.mail_views import check_options
from emulator.mailbox import Mailbox
from emulator.message import Message
from emulator.mime import parse_mime
from emulator.routing import SEND_MAIL, WRITE_MAIL, GraphRequest, GraphResponse

if TYPE_CHECKING:
    from emulator.graph import Graph

REPLY_PARAMETERS = ("comment", "message")


def create_message(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    check_options(request, set())
    draft = transport.create_draft(graph.mail, mailbox, request.json())
    return _message(graph, request, mailbox, draft, 201)


def update_message(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    check_options(request, set())
    message = graph.mail.change_message(mailbox, request.params["id"], request.json())
    return _message(graph, request, mailbox, message, 200)


def delete_message(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    graph.mail.delete(mailbox.user_id, request.params["id"])
    return GraphResponse(204)


def move_message(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    destination = request.parameters("destinationId").get("destinationId")
    if not isinstance(destination, str) or not destination:
        raise bad_request("The 'destinationId' parameter is required.", "ErrorInvalidRequest")
    message = graph.mail.move_message(mailbox, request.params["id"], destination)
    return _message(graph, request, mailbox, message, 201)


def create_reply(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    draft = transport.create_reply(graph.mail, mailbox, request.params["id"], request.parameters(*REPLY_PARAMETERS))
    return _message(graph, request, mailbox, draft, 201)


def reply(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    transport.reply(graph.mail, mailbox, request.params["id"], request.parameters(*REPLY_PARAMETERS))
    return GraphResponse(202)


def send(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    transport.send_draft(graph.mail, mailbox, request.params["id"])
    return GraphResponse(202)


def send_mail(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    """JSON ``{"message", "saveToSentItems"}``, or base64 MIME when the content type is text/plain."""
    if (request.headers.get("Content-Type") or "").lower().startswith("text/plain"):
        mime = parse_mime(request.body)
        transport.send_mail(graph.mail, mailbox, mime.fields, mime=mime)
        return GraphResponse(202)
    data = request.parameters("message", "saveToSentItems")
    message, save = data.get("message"), data.get("saveToSentItems", True)
    if not isinstance(message, dict):
        raise bad_request("The 'message' parameter is required.", "ErrorInvalidRequest")
    if not isinstance(save, bool):
        raise bad_request("The 'saveToSentItems' parameter must be a boolean.", "ErrorInvalidRequest")
    transport.send_mail(graph.mail, mailbox, message, save_to_sent=save)
    return GraphResponse(202)


def _message(graph: Graph, request: GraphRequest, mailbox: Mailbox, message: Message, status: int) -> GraphResponse:
    body = graph.mail.render(mailbox, message, immutable=request.immutable_ids)
    context = f"{graph.root}/$metadata#users('{mailbox.user_id}')/messages/$entity"
    return GraphResponse(status, {"@odata.context": context, **body})


ROUTES = [
    ("POST", "/messages", create_message, WRITE_MAIL),
    ("PATCH", "/messages/{id}", update_message, WRITE_MAIL),
    ("DELETE", "/messages/{id}", delete_message, WRITE_MAIL),
    ("POST", "/messages/{id}/move", move_message, WRITE_MAIL),
    ("POST", "/messages/{id}/createReply", create_reply, WRITE_MAIL),
    ("POST", "/messages/{id}/reply", reply, SEND_MAIL),
    ("POST", "/messages/{id}/send", send, SEND_MAIL),
    ("POST", "/sendMail", send_mail, SEND_MAIL),
]
