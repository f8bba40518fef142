"""An HTML mail body as its own document, for the record page's sandboxed frame.

The sender wrote it, so it is shown apart from the page: sanitized (:func:`app.records.mail_html.sanitized_html`),
in a frame the page marks ``sandbox`` (no script, no forms, no navigation of the page), under a
policy that loads nothing but the record's own images. Inline ``cid:`` images point at the
message's kept attachments. Remote images stay blocked (they tell the sender the mail was read,
and from where) until the reader asks for them with ``?images=shown``; only then may the document
load images from the network. Quoted history is folded.
"""

from __future__ import annotations

from flask import Response, render_template, url_for
from sqlite_utils import Database

from app.records import attachments
from app.records.mail_html import fold_quotes, resolve_cids, sanitized_html


def body_document(db: Database, record_id: int, entry_id: int, markup: str, *, remote_images: bool) -> Response:
    """The frame's document for one HTML body of ``record_id``'s entry ``entry_id``."""
    inline = {a["content_id"]: url_for("pages.attachment", record_id=record_id, attachment_id=a["id"])
              for a in attachments.listed(db, [entry_id])[entry_id] if a["content_id"] and a["kept"]}
    body = fold_quotes(resolve_cids(sanitized_html(markup, remote_images=remote_images), inline))
    images = "img-src 'self' https: data:" if remote_images else "img-src 'self'"
    rv = Response(render_template("message_body.html", body=body))
    rv.headers["Content-Security-Policy"] = (f"default-src 'none'; {images}; style-src 'self' 'unsafe-inline'; "
                                             "frame-ancestors 'self'; base-uri 'none'; form-action 'none'")
    rv.headers["X-Frame-Options"] = "SAMEORIGIN"
    rv.headers["Cache-Control"] = "private, no-store"
    return rv
