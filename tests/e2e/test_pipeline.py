"""The push pipeline end to end: emulator mailbox change → notification → queue → worker → record thread."""

from __future__ import annotations

import time

import pytest
import requests

from app.core.queue import JobQueue
from app.runtime import Runtime
from tests.e2e.mail import MEGAN, VENDOR, pending_work, queue_idle, thread, wait_for_thread
from tests.e2e.waiting import wait_for
from tests.tables import everything_stored, table

pytestmark = pytest.mark.both_engines


def test_an_inbound_reply_is_on_the_record_within_seconds(service, api, megan, connected):
    started = time.monotonic()
    service.emulator.deliver_email(megan, subject="RE: Onboarding documents", body="One more form attached.",
                                   sender=VENDOR, to=[MEGAN], in_reply_to="<first.1@acme.example>",
                                   references=["<first.1@acme.example>"], internet_message_id="<reply.2@acme.example>")
    messages = wait_for_thread(api, connected["record"]["id"], 2)
    assert time.monotonic() - started < 5
    reply = messages[1]
    assert reply["internet_message_id"] == "<reply.2@acme.example>"
    assert reply["direction"] == "inbound" and reply["source"] == "graph"
    assert reply["from"]["address"] == "dana@acme.example" and reply["to"][0]["address"] == MEGAN
    assert reply["body_preview"].startswith("One more form")


def test_an_external_reply_with_a_new_conversation_is_linked_by_references(service, api, megan, connected):
    service.emulator.deliver_email(megan, subject="Re: Onboarding", body="From my phone", sender=VENDOR, to=[MEGAN],
                                   references=["<first.1@acme.example>"], new_conversation=True,
                                   internet_message_id="<ext.3@gmail.example>")
    messages = wait_for_thread(api, connected["record"]["id"], 2)
    assert messages[1]["internet_message_id"] == "<ext.3@gmail.example>"


def test_a_same_conversation_message_without_headers_is_linked(service, api, megan, connected):
    service.emulator.deliver_email(megan, subject="RE: Onboarding documents", body="Following up", sender=VENDOR,
                                   to=[MEGAN], conversation_of=connected["first"]["id"],
                                   internet_message_id="<noheaders.4@acme.example>")
    messages = wait_for_thread(api, connected["record"]["id"], 2)
    assert messages[1]["internet_message_id"] == "<noheaders.4@acme.example>"


def test_an_unrelated_message_leaves_nothing_behind(service, api, megan, connected):
    db = connected["db"]
    subject, body = "Quarterly lunch menu zq81x", "The secret soup is tomato-basil-w7q"
    before = table(db, "jobs").count
    service.emulator.deliver_email(megan, subject=subject, body=body, sender={"address": "chef@canteen.example"},
                                   to=[MEGAN], new_conversation=True)
    wait_for(lambda: table(db, "jobs").count > before and queue_idle(db), message="the notification processed")
    assert len(thread(api, connected["record"]["id"])) == 1
    raw = everything_stored(db, service.app.config)
    for secret in (subject, body, "chef@canteen.example"):
        assert secret.encode() not in raw


def test_created_updated_and_replays_give_one_entry(service, api, megan, connected):
    delivery = service.emulator.subscriptions.delivery.config
    delivery.replay_rate, delivery.replay_count = 1.0, 3
    service.emulator.deliver_email(megan, subject="RE: Onboarding documents", body="dup?", sender=VENDOR, to=[MEGAN],
                                   in_reply_to="<first.1@acme.example>", internet_message_id="<dup.5@acme.example>")
    wait_for_thread(api, connected["record"]["id"], 2)
    assert service.emulator.subscriptions.delivery.wait_idle(10)  # every replay delivered and answered
    wait_for(lambda: queue_idle(connected["db"]), message="queue idle")
    ids = [m["internet_message_id"] for m in thread(api, connected["record"]["id"])]
    assert ids.count("<dup.5@acme.example>") == 1 and len(ids) == 2


def test_updated_arriving_before_created_works(service, api, megan, connected):
    service.emulator.subscriptions.delivery.config.reorder = True
    for n in range(5):
        service.emulator.deliver_email(megan, subject=f"RE: part {n}", body="x", sender=VENDOR, to=[MEGAN],
                                       in_reply_to="<first.1@acme.example>", internet_message_id=f"<ord.{n}@acme.example>")
    messages = wait_for_thread(api, connected["record"]["id"], 6)
    assert len({m["internet_message_id"] for m in messages}) == 6


def test_a_forged_client_state_causes_no_graph_call_and_no_change(service, api, megan, connected):
    subscription = next(table(connected["db"], "subscriptions").rows_where("status = 'active'"))
    wait_for(lambda: queue_idle(connected["db"]), message="connect, backfill and reconcile done")
    service.emulator.clear_requests()
    forged = {"value": [{
        "subscriptionId": subscription["id"], "clientState": "guessed-client-state-value-0123456789",
        "tenantId": service.demo["tenants"]["contoso"], "changeType": "created",
        "resource": f"Users/{megan}/Messages/{connected['first']['id']}",
        "resourceData": {"id": connected["first"]["id"], "@odata.etag": 'W/"x"'}}]}
    queued = pending_work(connected["db"])
    rv = requests.post(service.url("/webhooks/graph"), json=forged, timeout=10)
    assert rv.status_code == 202  # answered after whatever it accepted was stored: nothing, so no job can follow
    assert pending_work(connected["db"]) == queued
    assert not [r for r in service.emulator.requests() if r["path"].startswith("/v1.0")]
    assert len(thread(api, connected["record"]["id"])) == 1


def test_429_with_retry_after_is_honoured(service, api, megan, connected):
    wait_for(lambda: queue_idle(connected["db"]), message="connect, backfill and reconcile done")
    service.emulator.add_graph_fault(429, path=r"^/me/messages/", method="GET", times=1, retry_after=2)
    service.emulator.clear_requests()
    service.emulator.deliver_email(megan, subject="RE: Onboarding documents", body="throttled", sender=VENDOR,
                                   to=[MEGAN], in_reply_to="<first.1@acme.example>",
                                   internet_message_id="<throttled.6@acme.example>")
    wait_for_thread(api, connected["record"]["id"], 2, timeout=20)
    batches = service.emulator.requests(method="POST", path_prefix="/v1.0/$batch")
    assert service.emulator.faults.rules[0].fired == 1
    assert "penalty" not in service.emulator.faults.throttled  # nothing went to the mailbox too early
    assert (batches[-1]["time"] - batches[0]["time"]).total_seconds() >= 2


def test_work_acknowledged_while_the_worker_is_down_is_processed_once_after_restart(service, api, megan, connected):
    service.runtime.stop(timeout=10)
    db = connected["db"]
    service.emulator.deliver_email(megan, subject="RE: Onboarding documents", body="while you were out",
                                   sender=VENDOR, to=[MEGAN], in_reply_to="<first.1@acme.example>",
                                   internet_message_id="<down.7@acme.example>")
    wait_for(lambda: JobQueue(db).stats().by_kind.get("message", {}).get("queued"),
             message="notifications acknowledged and queued")
    assert len(thread(api, connected["record"]["id"])) == 1
    service.runtime = Runtime(service.app, workers=2, scheduler=False)
    service.runtime.start()
    messages = wait_for_thread(api, connected["record"]["id"], 2)
    wait_for(lambda: queue_idle(db), message="queue idle")
    assert [m["internet_message_id"] for m in thread(api, connected["record"]["id"])].count("<down.7@acme.example>") == 1
    assert len(messages) == 2


def test_a_deleted_message_stays_in_history_marked_deleted(service, api, megan, connected):
    reply = service.emulator.deliver_email(megan, subject="RE: x", body="to be deleted", sender=VENDOR, to=[MEGAN],
                                           in_reply_to="<first.1@acme.example>", internet_message_id="<del.8@acme.example>")
    wait_for_thread(api, connected["record"]["id"], 2)
    service.emulator.mail.delete(megan, reply["@emulator.immutableId"])
    service.emulator.mail.delete(megan, reply["@emulator.immutableId"])  # from Deleted Items: gone for good
    messages = wait_for(lambda: (lambda m: m if m[1]["deleted"] else None)(thread(api, connected["record"]["id"])),
                        message="marked deleted")
    assert messages[1]["internet_message_id"] == "<del.8@acme.example>"


def test_upload_rejects_what_is_not_an_email(api, service):
    record = api.create_record()
    for body, content_type, status in [(b"hello", "message/rfc822", 422), (b"Subject: x\r\n\r\nno id", "message/rfc822", 422),
                                       (b"x", "text/plain", 415)]:
        rv = api.post(f"/api/records/{record['id']}/emails", data=body, headers={"Content-Type": content_type})
        assert rv.status_code == status
    assert thread(api, record["id"]) == []
