"""Drill: ``kill -9`` of the service while events wait for delivery, then a restart.

The receiver holds the first delivery unanswered while replies are linked, each emitting its event in
the transaction that links it; the service dies with all of them undelivered and one of them leased.
What this proves: after the restart the receiver gets every event the store holds, and only those (none
lost, none invented); there is one ``message.linked`` per reply on the record; every delivery is signed.
"""

from __future__ import annotations

import pytest

from app.core.db import open_db
from emulator import Emulator
from handlers.event_delivery import LEASE_SECONDS
from tests.drills.harness import ServiceProcess, deliver_reply, reply_id, start_conversation, thread_ids
from tests.e2e.harness import Browser
from tests.e2e.waiting import wait_for
from tests.events_receiver import EventReceiver

REPLIES = 10


@pytest.fixture
def crash(tmp_path):
    emulator, receiver = Emulator().start(), EventReceiver().start()
    service = ServiceProcess(emulator, tmp_path, EVENTS_URL=receiver.url, EVENTS_SECRET=receiver.secret)
    try:
        yield emulator, receiver, service
    finally:
        service.stop()
        receiver.stop()
        emulator.stop()


def listed(service) -> list[dict]:
    rv = service.get("/api/events?limit=1000")
    assert rv.status_code == 200, rv.text
    return rv.json()["events"]


def test_a_crash_between_changes_and_their_delivery_loses_and_invents_no_event(crash):
    emulator, receiver, service = crash
    service.start()
    megan = service.demo["users"]["megan"]
    receiver.hold.clear()  # the first delivery waits unanswered
    record = start_conversation(service, emulator, megan)
    assert Browser(service).connect(record["id"], "megan").status_code == 302
    wait_for(lambda: receiver.arrivals, timeout=20, message="the first delivery held")
    for n in range(REPLIES):
        deliver_reply(emulator, megan, "ev", n)
    wait_for(lambda: len(thread_ids(service, record["id"])) == REPLIES + 1, timeout=30, message="replies linked")
    assert receiver.taken() == [], "nothing was delivered before the crash"
    service.kill()

    receiver.hold.set()
    db = open_db(service.database)
    before = [row["webhook_id"] for row in db.query("SELECT webhook_id FROM events ORDER BY id")]
    service.start()
    wait_for(lambda: {d.webhook_id for d in receiver.taken()} >= set(before), timeout=LEASE_SECONDS + 60,
             interval=0.5, message="every stored event delivered after the restart")

    events = listed(service)
    assert [e["id"] for e in events][:len(before)] == before, "the restart wrote no event of its own for old changes"
    assert {d.webhook_id for d in receiver.taken()} <= {e["id"] for e in events}, "no delivery of an unknown event"
    assert receiver.unverified == []
    for event in events:
        bodies = [d.event for d in receiver.deliveries if d.webhook_id == event["id"]]
        assert bodies and all(body == {k: v for k, v in event.items() if k != "id"} for body in bodies)
    linked = [e["data"]["internet_message_id"] for e in events if e["type"] == "message.linked"]
    assert sorted(linked) == sorted(reply_id("ev", n) for n in range(REPLIES))
    assert [e["type"] for e in events].count("connection.connected") == 1
