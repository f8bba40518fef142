"""An attachment's bytes as a download, for the API and the record page alike.

The bytes are the sender's: the answer makes the browser save them, never show them
(``Content-Disposition: attachment``), with the stored type taken as given (``nosniff``) and, should
anything render it anyway, no script and no origin to act for (``Content-Security-Policy: sandbox``).
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Response
from sqlite_utils import Database

from app.core.errors import NotFound
from app.records import attachments


def attachment_response(db: Database, record_id: int, attachment_id: int) -> Response:
    """The download of one of ``record_id``'s kept attachments; :class:`NotFound` otherwise."""
    found = attachments.download(db, record_id, attachment_id)
    if found is None:
        raise NotFound("attachment_not_found",
                       f"Record {record_id} has no attachment {attachment_id} whose content is kept.")
    listing, content = found
    ascii_name = listing["name"].encode("ascii", "replace").decode().replace('"', "'").replace("?", "_")
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(listing['name'], safe='')}"
    return Response(content, mimetype=listing["content_type"], headers={
        "Content-Disposition": disposition, "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox", "Cache-Control": "private, no-store"})
