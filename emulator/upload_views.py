"""The upload URL createUploadSession hands out: PUT the next range of bytes, or DELETE to cancel.

It stands for Outlook's pre-authenticated endpoint, not Graph: the URL's ``authtoken`` authorizes a
request and a bearer token spoils it (see :mod:`emulator.upload_sessions`). Outlook throttles it per
app and mailbox as Graph's mail calls are, so injected faults and latency apply here too; a fault rule's
``path`` is matched against the whole path (``/api/v2.0/Users('...')/.../AttachmentSessions('...')``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import flask

from emulator.errors import GraphError, item_not_found
from emulator.routing import GraphResponse, split_path

if TYPE_CHECKING:
    from emulator.graph import Graph


def receive(graph: Graph, incoming: flask.Request) -> GraphResponse:
    """One PUT or DELETE on an upload URL; the range that completes the file answers 201 and a ``Location``."""
    if incoming.headers.get("Authorization"):
        raise GraphError(401, "InvalidAudienceForResource", "The audience claim value is invalid for current resource. "
                         f"Audience claim is 'https://graph.microsoft.com/', request url is '{incoming.url}'.")
    segments = split_path(incoming.path)
    if len(segments) < 2 or segments[-2].lower() != "attachmentsessions":
        raise item_not_found()
    uploads, base_url = graph.emulator.uploads, graph.emulator.base_url
    session = uploads.open(segments[-1], incoming.args.get("authtoken"))
    with graph.faults.admit(session.client_id, session.user_id, incoming.method, incoming.path):
        if incoming.method == "DELETE":
            uploads.close(session)
            return GraphResponse(204)
        if not uploads.write(session, incoming.headers.get("Content-Range"), incoming.get_data(), graph.mail.limits):
            return GraphResponse(200, session.progress(base_url))
        uploads.close(session)
        mailbox = graph.mail.mailbox(session.user_id)
        attachment = graph.mail.add_attachment(mailbox, session.message_id, session.attachment())
        return GraphResponse(201, headers={"Location": session.location(base_url, attachment.id)})
