"""What an open record page watches: one fingerprint of everything on it that changes by itself.

A message linked or updated or deleted, an attachment kept, a send moving through its states and
a mailbox connecting or needing reconnection all change it; the page asks for it every second and a
half (:mod:`app.web.live`) and reloads its sections only when it differs. Four indexed lookups, so an
open page costs the store next to nothing.
"""

from __future__ import annotations

import hashlib

from sqlite_utils import Database


def record_version(db: Database, record_id: int) -> str:
    """A short fingerprint of the record's thread, attachments, sends and mailboxes."""
    row = db.execute(
        """
        SELECT (SELECT count(*) FROM messages WHERE record_id = :record),
               (SELECT max(updated_at) FROM messages WHERE record_id = :record),
               (SELECT count(*) FROM attachments a JOIN messages m ON m.id = a.message_id
                 WHERE m.record_id = :record),
               (SELECT count(*) FROM attachment_content c JOIN attachments a ON a.id = c.attachment_id
                 JOIN messages m ON m.id = a.message_id WHERE m.record_id = :record),
               (SELECT count(*) FROM outbox WHERE record_id = :record),
               (SELECT max(updated_at) FROM outbox WHERE record_id = :record),
               (SELECT count(*) FROM record_connections rc WHERE rc.record_id = :record),
               (SELECT max(c.updated_at) FROM record_connections rc JOIN connections c ON c.id = rc.connection_id
                 WHERE rc.record_id = :record)
        """, {"record": record_id}).fetchone()
    return hashlib.sha256(repr(tuple(row)).encode()).hexdigest()[:20]
