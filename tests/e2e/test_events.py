"""Events end to end: what happens on records and mailboxes reaches the platform's receiver, signed.

The receiver (:mod:`tests.events_receiver`) verifies every delivery with the ``standardwebhooks``
library; each test ends by checking none failed. Together the tests see every event type.
"""

from __future__ import annotations

import time

import pytest

from app.records.events import TYPES
from handlers.event_delivery import RETRY_DELAYS
from tests.e2e.harness import Browser, ServiceServer
from tests.e2e.mail import MEGAN, VENDOR, queue_idle, thread, wait_for_thread
from tests.e2e.test_send import connection_id, post_send, wait_sent
from tests.e2e.waiting import wait_for
from tests.events_receiver import EventReceiver

pytestmark = pytest.mark.both_engines

SHORT_DELAYS = (0.3,) * len(RETRY_DELAYS)  # the schedule's steps, shortened: a test waits seconds, not hours
SEEN: set[str] = set()


@pytest.fixture
def receiver():
    receiver = EventReceiver().start()
    yield receiver
    receiver.stop()
    assert receiver.unverified == [], "every delivery carries a valid Standard Webhooks signature"
    SEEN.update(event["type"] for event in receiver.events())


def events_config(app_config, receiver) -> dict:
    return {**app_config, "EVENTS_URL": receiver.url, "EVENTS_SECRET": receiver.secret}


@pytest.fixture
def service(emulator, app_config, receiver):
    server = ServiceServer(emulator, events_config(app_config, receiver), event_delays=SHORT_DELAYS).start()
    yield server
    server.stop()


def one(receiver, kind, **data):
    """The one event of ``kind`` whose data has ``data``, once it has arrived (and only one ever does)."""
    def found():
        return [e for e in receiver.events(kind) if data.items() <= e["data"].items()]
    [event] = wait_for(found, timeout=15, message=f"a {kind} event with {data}")
    return event


def test_linking_updating_and_deleting_mail_reach_the_platform(service, api, megan, connected, receiver):
    record = connected["record"]
    connected_event = one(receiver, "connection.connected", connection_id=connection_id(connected))
    assert connected_event["organization_id"] == record["organization_id"]
    delivery = service.emulator.subscriptions.delivery.config
    delivery.replay_rate, delivery.replay_count = 1.0, 3  # Graph repeats itself: the platform hears it once
    reply = service.emulator.deliver_email(megan, subject="RE: Onboarding documents", body="One more form.",
                                           sender=VENDOR, to=[MEGAN], in_reply_to="<first.1@acme.example>",
                                           internet_message_id="<reply.2@acme.example>")
    entry = wait_for_thread(api, record["id"], 2)[1]
    shown = time.monotonic()
    linked = one(receiver, "message.linked", internet_message_id="<reply.2@acme.example>")
    assert time.monotonic() - shown < 3, "a new event goes out within about a second"
    assert linked["data"] == {"record_id": record["id"], "entry_id": entry["id"], "connection_id":
                              connection_id(connected), "internet_message_id": "<reply.2@acme.example>",
                              "direction": "inbound", "source": "graph"}
    assert service.emulator.subscriptions.delivery.wait_idle(10)
    delivery.replay_rate = 0.0

    # The uploaded first email took the mailbox copy's body when the backfill linked it: an update.
    first = thread(api, record["id"])[0]
    assert one(receiver, "message.updated", entry_id=first["id"])["data"]["internet_message_id"] == first[
        "internet_message_id"]
    before = len(receiver.deliveries)
    service.emulator.mail.update(megan, reply["@emulator.immutableId"], {"isRead": True})
    wait_for(lambda: queue_idle(connected["db"]) and service.emulator.subscriptions.delivery.wait_idle(1),
             message="the read state's notification processed")
    time.sleep(1)
    assert len(receiver.deliveries) == before, "being read shows nowhere on the record: no event"

    for _ in range(2):  # to Deleted Items, then gone for good
        service.emulator.mail.delete(megan, reply["@emulator.immutableId"])
    deleted = one(receiver, "message.deleted", entry_id=entry["id"])
    assert deleted["data"]["record_id"] == record["id"] and thread(api, record["id"])[1]["deleted"]


def test_sends_revocation_and_disconnecting_reach_the_platform(service, api, megan, connected, receiver):
    record_id, mailbox = connected["record"]["id"], connection_id(connected)
    rv = post_send(service, record_id, {"connection_id": mailbox, "to": [], "reply": True, "body": "Received."}, "ev-1")
    outbox = wait_sent(api, rv.json()["id"])
    sent = one(receiver, "send.sent", outbox_id=outbox["id"])
    assert sent["data"] == {"outbox_id": outbox["id"], "record_id": record_id, "connection_id": mailbox,
                            "internet_message_id": outbox["internet_message_id"]}
    one(receiver, "message.linked", internet_message_id=outbox["internet_message_id"], source="sent")

    service.emulator.revoke_user(megan)
    service.services.identity.forget(mailbox)
    rv = post_send(service, record_id, {"connection_id": mailbox, "to": [], "reply": True, "body": "Lost."}, "ev-2")
    failed = wait_sent(api, rv.json()["id"], status="failed")
    assert one(receiver, "send.failed", outbox_id=failed["id"])["data"]["error"] == failed["error"]
    revoked = one(receiver, "connection.reconnect_required", connection_id=mailbox)
    assert revoked["data"]["status"] == "reconnect_required" and "AADSTS" in revoked["data"]["reason"]
    assert revoked["data"]["email"] == MEGAN

    assert api.delete(f"/api/connections/{mailbox}").status_code == 200
    assert one(receiver, "connection.disconnected", connection_id=mailbox)["data"]["status"] == "disconnected"


def test_a_user_left_waiting_for_admin_approval_reaches_the_platform(service, browser, api, receiver):
    record = api.create_record()
    assert browser.connect(record["id"], "alex", request_approval=True).status_code == 403
    waiting = one(receiver, "consent.awaiting_approval", record_id=record["id"])
    assert waiting["data"]["outcome"] == "approval_requested"
    assert waiting["organization_id"] == record["organization_id"]


def test_a_receiver_that_fails_for_a_while_gets_the_event_later_with_the_same_id(service, browser, api, receiver):
    receiver.status = 500
    record = api.create_record()
    browser.connect(record["id"], "alex", request_approval=True)
    wait_for(lambda: len(receiver.deliveries) >= 3, timeout=15, message="three failed attempts")
    receiver.status = 200
    event = one(receiver, "consent.awaiting_approval", record_id=record["id"])
    attempts = receiver.deliveries
    assert len({d.webhook_id for d in attempts}) == 1 and [d.status for d in attempts][:3] == [500] * 3
    assert all(d.event == event for d in attempts) and attempts[-1].status == 200
    stamps = [int(d.headers["webhook-timestamp"]) for d in attempts]
    assert stamps == sorted(stamps), "each attempt is signed when it is made"


def test_an_event_out_of_retries_is_dead_until_the_operator_retries_it(emulator, app_config, receiver):
    server = ServiceServer(emulator, events_config(app_config, receiver), event_delays=(0.1, 0.1)).start()
    try:
        receiver.status = 503
        record = Browser(server).connect(server.app.test_client().post(
            "/api/records", json={"title": "Dead letters"},
            headers={"Authorization": f"Bearer {app_config['API_TOKEN']}"}).get_json()["id"],
            "alex", request_approval=True)
        assert record.status_code == 403
        runner = server.app.test_cli_runner()
        wait_for(lambda: "dead=1" in runner.invoke(args=["events", "stats"]).output, timeout=15, message="dead")
        assert len(receiver.deliveries) == 3  # the first attempt and one per delay
        readiness = server.app.test_client().get("/readyz").get_json()
        assert "events" in readiness["warnings"] and "dead" in readiness["checks"]["events"]["reason"]
        time.sleep(1)
        assert len(receiver.deliveries) == 3, "a dead event is not tried again by itself"

        receiver.status = 204
        assert "1 dead event(s) pending again" in runner.invoke(args=["events", "retry"]).output
        wait_for(lambda: receiver.taken(), timeout=15, message="the retried event delivered")
        assert {d.webhook_id for d in receiver.deliveries} == {receiver.taken()[0].webhook_id}
        assert server.app.test_client().get("/readyz").get_json()["warnings"] == []
    finally:
        server.stop()


def test_the_pull_api_lists_what_was_pushed(service, browser, api, receiver):
    record = api.create_record()
    browser.connect(record["id"], "alex", request_approval=True)
    pushed = one(receiver, "consent.awaiting_approval", record_id=record["id"])
    listed = api.get("/api/events").json()["events"]
    [same] = [e for e in listed if e["id"] == receiver.taken()[0].webhook_id]
    assert {k: v for k, v in same.items() if k != "id"} == pushed


def test_every_event_type_was_seen():
    """Runs last in this module: the tests above drove every type to a receiver (on each engine they ran)."""
    if not {"consent.awaiting_approval", "message.linked"} <= SEEN:
        pytest.skip("run with the rest of tests/e2e/test_events.py")
    assert SEEN >= set(TYPES), set(TYPES) - SEEN
