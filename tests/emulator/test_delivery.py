"""Notification delivery: payload, scope, batching, retries, timeouts, duplicates, drops, lifecycle."""

from __future__ import annotations

import time
from datetime import timedelta

IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def subscribe(emulator, user, url, resource="/me/messages", change_type="created,updated,deleted", headers=None,
              **fields):
    rv = user.post("/subscriptions", headers=headers, json={
        "changeType": change_type, "notificationUrl": url, "resource": resource, "clientState": "state-1",
        "expirationDateTime": (emulator.clock.now() + timedelta(hours=2)).isoformat(), **fields})
    assert rv.status_code == 201, rv.text
    return rv.json()


def deliver(emulator, user, subject="Hello", **fields):
    return emulator.mail.deliver(user.id, subject=subject, body="text", sender="carol@customer.example",
                                 to=[user.email], **fields)


def test_new_message_notifies_created_then_updated_with_the_documented_payload(emulator, world, alice, receiver):
    """Learn's example payload: https://learn.microsoft.com/graph/change-notifications-delivery-webhooks."""
    sub = subscribe(emulator, alice, receiver.url)
    message = deliver(emulator, alice)
    created, updated = receiver.wait_for(2)
    assert created["changeType"] == "created" and updated["changeType"] == "updated"
    assert created.pop("id") != updated.pop("id")
    mailbox = f"{alice.id}@{world.tenant_id}"
    assert created == {
        "subscriptionId": sub["id"], "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "tenantId": world.tenant_id, "clientState": "state-1", "changeType": "created",
        "resource": f"users/{mailbox}/messages/{message['id']}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message",
                         "@odata.id": f"Users/{mailbox}/Messages/{message['id']}",
                         "@odata.etag": message["@odata.etag"], "id": message["id"]},
    }


def test_immutable_id_subscriptions_carry_immutable_ids(emulator, alice, receiver):
    emulator.subscriptions.delivery.config.created_then_updated = False
    subscribe(emulator, alice, receiver.url, headers=IMMUTABLE)
    message = deliver(emulator, alice)
    emulator.mail.move(alice.id, message["id"], "archive")
    items = receiver.wait_for(3)
    assert [i["changeType"] for i in items] == ["created", "deleted", "created"]
    assert {i["resourceData"]["id"] for i in items} == {message["@emulator.immutableId"]}


def test_folder_scope_and_change_type_filter(emulator, alice, receiver):
    subscribe(emulator, alice, receiver.url, resource="/me/mailFolders('inbox')/messages", change_type="created")
    deliver(emulator, alice, "Archived", folder="archive")
    kept = deliver(emulator, alice, "Inbox")
    emulator.mail.update(alice.id, kept["id"], {"isRead": True})
    assert emulator.subscriptions.delivery.wait_idle()
    assert [i["resourceData"]["id"] for i in receiver.items] == [kept["id"]]


def test_notifications_for_one_url_share_a_post(emulator, alice, bob, receiver):
    emulator.subscriptions.delivery.config.batch_window = 0.3
    emulator.subscriptions.delivery.config.created_then_updated = False
    first = subscribe(emulator, alice, receiver.url)
    second = subscribe(emulator, bob, receiver.url)
    deliver(emulator, alice)
    deliver(emulator, bob)
    deliver(emulator, alice)
    assert len(receiver.wait_for(3)) == 3
    assert len(receiver.posts) == 1
    assert {i["subscriptionId"] for i in receiver.posts[0]["value"]} == {first["id"], second["id"]}


def test_held_notifications_wait_and_then_go_out_together(emulator, alice, receiver):
    """A backlog: nothing is posted while delivery is held; once released, every notification goes
    out at once, in full POSTs."""
    delivery = emulator.subscriptions.delivery
    delivery.config.created_then_updated = False
    subscribe(emulator, alice, receiver.url)
    delivery.configure(held=True)
    ids = [deliver(emulator, alice, f"M{n}")["id"] for n in range(25)]
    time.sleep(0.3)  # more than the batch window and a sweep
    assert receiver.items == []
    delivery.configure(held=False)
    assert sorted(i["resourceData"]["id"] for i in receiver.wait_for(25)) == sorted(ids)
    assert [len(post["value"]) for post in receiver.posts] == [20, 5]


def test_non_2xx_answers_are_retried_with_backoff(emulator, alice, receiver):
    emulator.subscriptions.delivery.config.time_scale = 0.0005
    emulator.subscriptions.delivery.config.created_then_updated = False
    subscribe(emulator, alice, receiver.url)
    receiver.script = [(500, 0.0), (503, 0.0)]
    deliver(emulator, alice)
    receiver.wait_for(3)
    assert emulator.subscriptions.delivery.wait_idle()
    attempts = emulator.subscriptions.delivery.attempts(receiver.url)
    assert [(a.attempt, a.status) for a in attempts] == [(1, 500), (2, 503), (3, 202)]
    assert attempts[0].value == attempts[2].value


def test_slow_answers_time_out_and_are_retried(emulator, alice, receiver):
    config = emulator.subscriptions.delivery.config
    config.timeout, config.time_scale, config.created_then_updated = 0.2, 0.0005, False
    subscribe(emulator, alice, receiver.url)
    receiver.script = [(202, 0.5)]
    deliver(emulator, alice)
    deadline = time.monotonic() + 3
    while len(emulator.subscriptions.delivery.attempts(receiver.url)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    first, second = emulator.subscriptions.delivery.attempts(receiver.url)[:2]
    assert first.status is None and first.error == "ReadTimeout" and first.latency >= 0.2
    assert second.attempt == 2 and second.status == 202


def test_delivery_gives_up_after_the_retry_window(emulator, alice, receiver):
    config = emulator.subscriptions.delivery.config
    config.time_scale, config.retry_window, config.created_then_updated = 0.002, 600, False
    subscribe(emulator, alice, receiver.url)
    receiver.script = [(500, 0.0)] * 20
    abandoned = emulator.subscriptions.delivery.abandoned
    deliver(emulator, alice)
    deadline = time.monotonic() + 3
    while emulator.subscriptions.delivery.abandoned == abandoned and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emulator.subscriptions.delivery.abandoned == abandoned + 1
    assert len(emulator.subscriptions.delivery.attempts(receiver.url)) == 4  # at 0, 60, 180 and 420 Graph seconds


def test_replays_duplicate_notifications(emulator, alice, receiver):
    config = emulator.subscriptions.delivery.config
    config.replay_rate, config.replay_count, config.created_then_updated = 1.0, 2, False
    subscribe(emulator, alice, receiver.url)
    message = deliver(emulator, alice)
    items = receiver.wait_for(3)
    assert [i["resourceData"]["id"] for i in items] == [message["id"]] * 3
    assert len({i["id"] for i in items}) == 1  # a replay is the same notification, id included


def test_reordering_delays_and_drops(emulator, alice, receiver):
    config = emulator.subscriptions.delivery.config
    config.reorder, config.batch_window, config.created_then_updated = True, 0.3, False
    subscribe(emulator, alice, receiver.url)
    ids = [deliver(emulator, alice, f"M{n}")["id"] for n in range(10)]
    got = [i["resourceData"]["id"] for i in receiver.wait_for(10)]
    assert sorted(got) == sorted(ids) and got != ids
    config.reorder, config.batch_window, config.delay_rate, config.delay = False, 0.02, 1.0, 0.3
    started = time.monotonic()
    deliver(emulator, alice, "Late")
    receiver.wait_for(11)
    assert time.monotonic() - started >= 0.3
    config.drop_rate = 1.0
    dropped = emulator.subscriptions.delivery.dropped
    deliver(emulator, alice)
    assert emulator.subscriptions.delivery.wait_idle()
    assert emulator.subscriptions.delivery.dropped == dropped + 1 and len(receiver.items) == 11


def test_one_slow_endpoint_does_not_hold_up_another(emulator, alice, bob, receiver, make_receiver):
    slow = make_receiver(script=[(202, 1.0)] * 10)
    emulator.subscriptions.delivery.config.created_then_updated = False
    subscribe(emulator, alice, slow.url)
    subscribe(emulator, bob, receiver.url)
    for n in range(6):
        deliver(emulator, alice, f"M{n}")
        time.sleep(0.03)
    started = time.monotonic()
    deliver(emulator, bob)
    receiver.wait_for(1)
    assert time.monotonic() - started < 0.5


def test_lifecycle_events(emulator, world, alice, receiver):
    sub = subscribe(emulator, alice, receiver.url, lifecycleNotificationUrl=receiver.url + "/lifecycle")
    assert emulator.subscriptions.send_lifecycle(sub["id"], "missed") is True
    [missed] = receiver.wait_for(1)
    assert missed == {"subscriptionId": sub["id"], "subscriptionExpirationDateTime": sub["expirationDateTime"],
                      "tenantId": world.tenant_id, "clientState": "state-1", "lifecycleEvent": "missed"}
    emulator.subscriptions.send_lifecycle(sub["id"], "subscriptionRemoved")
    assert receiver.wait_for(2)[1]["lifecycleEvent"] == "subscriptionRemoved"
    assert alice.get(f"/subscriptions/{sub['id']}").status_code == 404
    plain = subscribe(emulator, alice, receiver.url + "?plain")
    assert emulator.subscriptions.send_lifecycle(plain["id"], "reauthorizationRequired") is False
