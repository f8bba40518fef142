"""Deleting a record with its mail: ``DELETE /api/records/{id}``.

One transaction asks each module that owns a part of the record to delete it: its send requests and
their files (:mod:`app.records.outbox`, which refuses while a send is on its way out), its thread with
the entries' mailbox copies, attachments and kept bytes, and the thread keys (:mod:`app.records.threads`),
the consent attempts remembered on it, the events about it (they name its Message-IDs), which
mailboxes were connected from it, and then the record itself. The connections stay: they are people's mailboxes and may serve other records. With the thread
keys gone, a later reply to the old conversation matches nothing and is not stored.

Nothing in a mailbox is touched: the service never deletes mail it did not draft itself.
"""

from __future__ import annotations

import logging

from sqlite_utils import Database

from app.core.db import erasing, write_transaction
from app.records import connections, consent, events, outbox, records, threads

log = logging.getLogger(__name__)


def purge_record(db: Database, record_id: int) -> None:
    """Delete the record and everything stored of its mail, or nothing: :class:`app.core.errors.NotFound`
    for an unknown record, :class:`app.core.errors.Conflict` ``send_in_flight`` while one of its sends is
    being carried out. The deleted bytes are overwritten in the store (:func:`app.core.db.erasing`)."""
    with erasing(db), write_transaction(db):
        records.get_record(db, record_id)
        sends = outbox.purge_record(db, record_id)
        entries = threads.purge_record(db, record_id)
        consent.forget_record(db, record_id)
        events.forget_record(db, record_id)
        connections.unlink_record(db, record_id)
        records.delete_record(db, record_id)
    log.info("Purged record %s: %d thread entries, %d send requests", record_id, entries, sends)
