"""Sending as the user from a record: replies, new and automated messages, each sent exactly once."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from app.records import linking
from tests.conftest import API_TOKEN
from tests.e2e.mail import queue_idle, thread
from tests.e2e.waiting import wait_for
from tests.tables import table

pytestmark = pytest.mark.both_engines


def post_send(service, record_id, body, key):
    """POST a send request as a well-behaved client: told the service is busy, it retries with the same key."""
    for _ in range(10):
        rv = requests.post(service.url(f"/api/records/{record_id}/messages"), json=body, timeout=30,
                           headers={"Authorization": f"Bearer {API_TOKEN}", "Idempotency-Key": key})
        if rv.status_code != 503 or "Retry-After" not in rv.headers:
            return rv
        time.sleep(int(rv.headers["Retry-After"]))
    return rv


def wait_sent(api, outbox_id, status="sent"):
    return wait_for(lambda: (lambda o: o if o["status"] == status else None)(api.get(f"/api/outbox/{outbox_id}").json()),
                    message=f"send request {outbox_id} {status}")


def sent_copies(service, user):
    return [m for m in service.emulator.mail.outbound if m.get("userId") == user]


def connection_id(connected):
    return next(table(connected["db"], "connections").rows)["id"]


def headers_of(message):
    return {h["name"].lower(): h["value"] for h in message.get("internetMessageHeaders") or []}


def test_a_reply_lands_in_the_conversation_with_threading_headers(service, api, megan, connected):
    record_id = connected["record"]["id"]
    rv = post_send(service, record_id, {"connection_id": connection_id(connected), "to": [], "reply": True,
                                        "body": "Thanks Dana, received."}, "reply-1")
    assert rv.status_code == 202
    outbox = wait_sent(api, rv.json()["id"])
    [sent] = sent_copies(service, megan)
    assert sent["conversationId"] == connected["first"]["conversationId"]
    assert headers_of(sent)["in-reply-to"] == "<first.1@acme.example>"
    assert "<first.1@acme.example>" in headers_of(sent)["references"]
    assert [r["emailAddress"]["address"] for r in sent["toRecipients"]] == ["dana@acme.example"]
    assert sent["internetMessageId"] == outbox["internet_message_id"]
    entry = thread(api, record_id)[-1]
    assert entry["internet_message_id"] == outbox["internet_message_id"]
    assert (entry["direction"], entry["source"]) == ("outbound", "sent")


def test_a_new_message_and_an_automated_one_are_sent_and_linked(service, api, megan, connected):
    record_id = connected["record"]["id"]
    manual = post_send(service, record_id, {"connection_id": connection_id(connected), "to": ["ap@acme.example"],
                                            "subject": "Banking details", "body": "Please confirm.", "reply": False},
                       "new-1").json()
    automated = post_send(service, record_id, {"connection_id": connection_id(connected), "to": ["ap@acme.example"],
                                               "subject": "Reminder: W-9 due", "body": "Automated reminder.",
                                               "reply": False, "automated": True}, "auto-1").json()
    for request in (manual, automated):
        wait_sent(api, request["id"])
    assert len(sent_copies(service, megan)) == 2
    entries = {m["subject"]: m for m in thread(api, record_id)}
    assert entries["Banking details"]["automated"] is False
    assert entries["Reminder: W-9 due"]["automated"] is True
    assert entries["Reminder: W-9 due"]["source"] == "sent"


def test_the_sent_items_notification_does_not_duplicate_the_entry(service, api, megan, connected):
    record_id = connected["record"]["id"]
    rv = post_send(service, record_id, {"connection_id": connection_id(connected), "to": [], "reply": True,
                                        "body": "Noted."}, "dup-check")
    outbox = wait_sent(api, rv.json()["id"])
    wait_for(lambda: queue_idle(connected["db"]), message="Sent Items notifications processed")
    ids = [m["internet_message_id"] for m in thread(api, record_id)]
    assert ids.count(outbox["internet_message_id"]) == 1


def test_twenty_concurrent_posts_with_one_key_send_once(service, api, megan, connected):
    body = {"connection_id": connection_id(connected), "to": ["ap@acme.example"], "subject": "Once",
            "body": "Only once.", "reply": False}
    results = []
    threads = [threading.Thread(target=lambda: results.append(post_send(service, connected["record"]["id"], body,
                                                                        "same-key"))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {rv.status_code for rv in results} == {202}
    [outbox_id] = {rv.json()["id"] for rv in results}
    wait_sent(api, outbox_id)
    wait_for(lambda: queue_idle(connected["db"]))
    assert len(sent_copies(service, megan)) == 1


def test_a_crash_between_send_and_recording_still_sends_exactly_once(service, api, megan, connected, monkeypatch):
    crashes = []
    real = linking.link_sent_message

    def crash_once(*args, **kwargs):
        if not crashes:
            crashes.append(1)
            raise RuntimeError("process died right after send")
        return real(*args, **kwargs)

    monkeypatch.setattr(linking, "link_sent_message", crash_once)
    rv = post_send(service, connected["record"]["id"], {"connection_id": connection_id(connected), "to": [],
                                                         "reply": True, "body": "Crash test."}, "crash-1")
    outbox = wait_sent(api, rv.json()["id"])
    assert crashes == [1]
    assert len(sent_copies(service, megan)) == 1
    assert [m["internet_message_id"] for m in thread(api, connected["record"]["id"])].count(
        outbox["internet_message_id"]) == 1


def test_a_revoked_connection_fails_the_request_with_a_clear_reason(service, api, megan, connected):
    service.emulator.revoke_user(megan)
    service.services.identity.forget(connection_id(connected))
    rv = post_send(service, connected["record"]["id"], {"connection_id": connection_id(connected), "to": [],
                                                         "reply": True, "body": "Will not go."}, "revoked-1")
    assert rv.status_code == 202
    outbox = wait_sent(api, rv.json()["id"], status="failed")
    assert outbox["error"].startswith("reconnect_required")
    assert sent_copies(service, megan) == []
    assert api.get("/api/connections").json()["connections"][0]["status"] == "reconnect_required"


@pytest.fixture(autouse=True)
def _never_deletes_mail(service):
    """Whatever a test does, the service deletes no mailbox message (it created no stray drafts here)."""
    yield
    deletes = [r for r in service.emulator.requests(method="DELETE") if "/messages/" in r["path"]]
    assert deletes == []

