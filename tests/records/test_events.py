"""Events: written with the change they describe, once per change, claimed under a lease, listed in order."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from app.core.db import open_db
from app.core.queue import JobQueue
from app.microsoft.identity import SignIn
from app.records import connections, consent, events, outbox
from app.records.threads import Link, link_messages, mark_deleted
from tests.records.test_threads import MAILBOX, graph_message
from tests.tables import table

pytestmark = pytest.mark.both_engines

STAMP = "2024-05-01T12:00:00.000000+00:00"
TENANT = "8c5c2b51-0d0b-4ad6-a6a7-3f2c3e8e9f10"


@pytest.fixture
def db(db_path):
    db = open_db(db_path)
    table(db, "organizations").insert({"id": 2, "name": "Acme", "created_at": STAMP, "updated_at": STAMP})
    table(db, "tenants").insert({"id": TENANT, "created_at": STAMP, "updated_at": STAMP})
    table(db, "organization_tenants").insert({"tenant_id": TENANT, "organization_id": 2})
    table(db, "connections").insert({"id": 1, "tenant_id": TENANT, "user_id": "u1", "email": MAILBOX,
                                     "created_at": STAMP, "updated_at": STAMP})
    table(db, "records").insert({"id": 10, "title": "Record 10", "organization_id": 2, "created_at": STAMP})
    yield db
    db.close()


def emitted(db) -> list[dict]:
    return events.page(db, after=0, limit=1000)[0]


def kinds(db) -> list[str]:
    return [event["type"] for event in emitted(db)]


def link(db, *messages):
    return link_messages(db, 1, [Link(10, message, "references") for message in messages], mailbox_address=MAILBOX)


def queue_send(db, key="k1") -> int:
    table(db, "outbox").insert({"idempotency_key": key, "record_id": 10, "connection_id": 1, "request": "{}",
                                "status": "queued", "created_at": STAMP, "updated_at": STAMP})
    return table(db, "outbox").get(key, pk="idempotency_key")["id"]


def test_a_new_message_is_linked_once_however_often_it_is_notified(db):
    [entry] = link(db, graph_message())
    link(db, graph_message())
    link(db, graph_message(changeKey="CQAAABYAAAD9"))  # read, flagged, moved: nothing the record shows
    [event] = emitted(db)
    assert event["type"] == "message.linked" and event["organization_id"] == 2
    assert event["data"] == {"record_id": 10, "entry_id": entry, "internet_message_id": "<reply-1@vendor.example>",
                             "connection_id": 1, "direction": "inbound", "source": "graph"}
    assert event["id"].startswith("evt_")
    assert datetime.fromisoformat(event["timestamp"]) > datetime.now(timezone.utc) - timedelta(minutes=1)


def test_a_batch_emits_linked_for_new_and_updated_for_changed_messages(db):
    link(db, graph_message())
    entries = link(db, graph_message(subject="RE: Purchase order 4711 (corrected)"),
                   graph_message("AAMk-2", "<reply-2@vendor.example>"),
                   graph_message("AAMk-3", "<reply-3@vendor.example>"))
    assert kinds(db) == ["message.linked", "message.linked", "message.linked", "message.updated"]
    assert [e["data"]["entry_id"] for e in emitted(db)[1:]] == [entries[1], entries[2], entries[0]]
    assert table(db, "messages").get(entries[0])["subject"] == "RE: Purchase order 4711 (corrected)"


def test_a_deletion_is_emitted_once_and_a_message_back_in_the_mailbox_is_an_update(db):
    [entry] = link(db, graph_message())
    assert mark_deleted(db, 1, "AAMk-1") and mark_deleted(db, 1, "AAMk-1")
    assert kinds(db) == ["message.linked", "message.deleted"]
    assert emitted(db)[1]["data"]["entry_id"] == entry
    link(db, graph_message())  # restored from Deleted Items
    assert kinds(db)[-1] == "message.updated"


def test_events_are_written_in_the_transaction_of_their_change(db):
    with pytest.raises(RuntimeError), db.atomic():
        link(db, graph_message())
        raise RuntimeError("crash before commit")
    assert table(db, "messages").count == 0 and emitted(db) == []


def test_a_send_fails_once_whichever_way_it_fails(db):
    first, second = queue_send(db, "k1"), queue_send(db, "k2")
    outbox.fail(db, first, "Graph refused it")
    outbox.give_up(db, first, "attempts ran out")
    outbox.fail_pending(db, 1, "reconnect_required: AADSTS50173")
    outbox.fail_pending(db, 1, "disconnected: by the user")
    failed = emitted(db)
    assert [(e["type"], e["data"]["outbox_id"], e["data"]["error"]) for e in failed] == [
        ("send.failed", first, "Graph refused it"), ("send.failed", second, "reconnect_required: AADSTS50173")]
    assert failed[0]["data"]["record_id"] == 10 and failed[0]["organization_id"] == 2


def test_connecting_and_disconnecting_are_emitted_for_the_tenant_s_organization(db):
    sign_in = SignIn(TENANT, "u2", "alex@contoso.example", "Alex", "Mail.Send", "{}")
    connection_id = connections.save_connection(db, _Cipher(), sign_in, 10, JobQueue(db))
    connections.mark_disconnected(db, connection_id)
    connections.mark_disconnected(db, connection_id)
    connected, disconnected = emitted(db)
    assert (connected["type"], connected["organization_id"]) == ("connection.connected", 2)
    assert connected["data"] == {"connection_id": connection_id, "tenant_id": TENANT, "email": "alex@contoso.example",
                                 "status": "active", "record_id": 10}
    assert disconnected["type"] == "connection.disconnected" and disconnected["data"]["status"] == "disconnected"


def test_a_record_left_awaiting_approval_is_emitted_once(db):
    for _ in range(2):
        consent.record_consent_problem(db, 10, "access_denied", "AADSTS90094: approval required")
    consent.record_consent_problem(db, 10, "access_denied", "AADSTS65004: the user declined")
    consent.record_consent_problem(db, 10, "access_denied", "AADSTS90094: approval required")
    waits = emitted(db)
    assert kinds(db) == ["consent.awaiting_approval"] * 2
    assert waits[0]["data"] == {"record_id": 10, "outcome": "approval_required", "error_code": "AADSTS90094"}
    assert waits[0]["organization_id"] == 2


def test_the_pull_cursor_reads_on_without_repeats_or_gaps(db):
    link(db, *(graph_message(f"AAMk-{n}", f"<r{n}@vendor.example>") for n in range(5)))
    first, cursor = events.page(db, after=0, limit=3)
    rest, last = events.page(db, after=cursor, limit=3)
    assert len(first) == 3 and len(rest) == 2
    assert [e["data"]["internet_message_id"] for e in first + rest] == [f"<r{n}@vendor.example>" for n in range(5)]
    assert events.page(db, after=last, limit=3) == ([], last)


def test_a_claimed_event_is_held_by_one_owner_until_it_is_settled_or_its_lease_lapses(db):
    link(db, graph_message())
    t0 = time.time() + 1  # the event is due by then
    [mine] = events.claim(db, "a", lease_seconds=30, limit=10, now=t0)
    assert events.claim(db, "b", lease_seconds=30, limit=10, now=t0 + 1) == []
    assert not events.delivered(db, mine["id"], "b", now=t0 + 2)
    [again] = events.claim(db, "b", lease_seconds=30, limit=10, now=t0 + 31)  # a's lease lapsed (a died)
    assert not events.delivered(db, mine["id"], "a", now=t0 + 32)
    assert events.delivered(db, again["id"], "b", now=t0 + 32)
    assert events.claim(db, "c", lease_seconds=30, limit=10, now=t0 + 1000) == []
    assert events.stats(db).pending == 0


def test_a_failed_event_waits_for_its_retry_and_a_dead_one_waits_for_the_operator(db):
    link(db, graph_message())
    t0 = time.time() + 1  # the event is due by then
    [row] = events.claim(db, "a", lease_seconds=30, limit=10, now=t0)
    assert events.failed(db, row["id"], "a", "HTTP 500", retry_at=t0 + 5, now=t0)
    assert events.claim(db, "a", lease_seconds=30, limit=10, now=t0 + 4) == []
    [row] = events.claim(db, "a", lease_seconds=30, limit=10, now=t0 + 5)
    assert row["attempts"] == 1 and row["last_error"] == "HTTP 500"
    events.failed(db, row["id"], "a", "no answer: ReadTimeout", retry_at=None, now=t0 + 6)
    assert events.claim(db, "a", lease_seconds=30, limit=10, now=10**9) == []
    stats = events.stats(db)
    assert (stats.pending, stats.dead) == (0, 1)
    assert events.retry_dead(db, [row["webhook_id"]], now=t0 + 1000) == 1
    [again] = events.claim(db, "a", lease_seconds=30, limit=10, now=t0 + 1000)
    assert (again["id"], again["attempts"]) == (row["id"], 0)


def test_stats_measure_the_delivery_lag_from_the_oldest_pending_event(db):
    link(db, graph_message())
    assert events.stats(db).oldest_pending_age < 60
    later = datetime.now(timezone.utc) + timedelta(minutes=10)
    assert 599 < events.stats(db, now=later.timestamp()).oldest_pending_age < 660


def test_pruning_keeps_dead_events_and_the_newest_one(db):
    link(db, *(graph_message(f"AAMk-{n}", f"<r{n}@vendor.example>") for n in range(3)))
    [dead, *_] = events.claim(db, "a", lease_seconds=30, limit=1, now=10**10)
    events.failed(db, dead["id"], "a", "HTTP 410", retry_at=None, now=10**10)
    future = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    assert events.prune(db, older_than=future) == 1
    assert [e["data"]["internet_message_id"] for e in emitted(db)] == ["<r0@vendor.example>", "<r2@vendor.example>"]


def test_an_unknown_event_type_is_a_bug_caught_at_once(db):
    with pytest.raises(ValueError, match="message.archived"):
        events.emit(db, [events.Event("message.archived", {"record_id": 10})])


class _Cipher:
    def encrypt(self, text: str) -> bytes:
        return text.encode()
