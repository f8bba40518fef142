"""Subscriptions: validation handshake, expiry rules, duplicates, renew/reauthorize/delete, revocation."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import unquote

import pytest

from emulator.errors import GraphError
from emulator.handshake import FAILED, TIMED_OUT


def expiry(emulator, minutes: float) -> str:
    return (emulator.clock.now() + timedelta(minutes=minutes)).isoformat()


INBOX = "/me/mailFolders('inbox')/messages"


def subscribe(emulator, user, url, *, minutes=60, **fields):
    body = {"changeType": "created,updated", "notificationUrl": url, "resource": "/me/messages",
            "expirationDateTime": expiry(emulator, minutes), "clientState": "s3cret", **fields}
    return user.post("/subscriptions", json=body)


def test_create_runs_the_handshake_on_both_urls(emulator, world, alice, receiver):
    rv = subscribe(emulator, alice, receiver.url + "?tenant=1", lifecycleNotificationUrl=receiver.url + "/lifecycle")
    assert rv.status_code == 201, rv.text
    created = rv.json()
    assert created["applicationId"] == world.client_id and created["creatorId"] == alice.id
    assert created["resource"] == "/me/messages" and created["changeType"] == "created,updated"
    assert created["clientState"] == "s3cret" and created["latestSupportedTlsVersion"] == "v1_2"
    assert created["expirationDateTime"].endswith("Z") and len(created["expirationDateTime"].split(".")[1]) == 8
    first, second = receiver.validations
    assert first["url"].endswith("/notify") and second["url"].endswith("/notify/lifecycle")
    assert first["content_type"] == "text/plain; charset=utf-8"
    token = first["token"]
    assert " " in token and ":" in token
    assert "%20" in first["raw"] and "%3A" in first["raw"] and "tenant=1" in first["raw"]
    assert unquote(first["raw"].split("validationToken=")[1]) == token


@pytest.mark.parametrize("answer", ["encoded", "json", "forbidden"])
def test_wrong_handshake_answers_fail(emulator, alice, receiver, answer):
    receiver.validation = answer
    rv = subscribe(emulator, alice, receiver.url)
    assert rv.status_code == 400
    assert rv.json()["error"] | {"innerError": None} == {"code": "ValidationError", "message": FAILED,
                                                         "innerError": None}


def test_lifecycle_url_is_validated_too(emulator, alice, receiver, make_receiver):
    bad = make_receiver(validation="forbidden")
    assert subscribe(emulator, alice, receiver.url, lifecycleNotificationUrl=bad.url).status_code == 400
    assert len(receiver.validations) == 1


def test_slow_handshake_times_out(emulator, alice, receiver):
    emulator.subscriptions.config.validation_timeout = 0.3
    receiver.validation, receiver.slow_seconds = "slow", 1.0
    rv = subscribe(emulator, alice, receiver.url)
    assert rv.status_code == 400 and rv.json()["error"]["message"] == TIMED_OUT


def test_notification_url_must_be_https_unless_loopback(emulator, alice, receiver):
    assert subscribe(emulator, alice, "http://service.example/notify").status_code == 400
    emulator.subscriptions.config.allow_loopback_http = False
    assert subscribe(emulator, alice, receiver.url).status_code == 400
    assert receiver.validations == []


def test_request_checks(emulator, alice, bob, receiver):
    assert subscribe(emulator, alice, receiver.url, clientState="x" * 129).status_code == 400
    assert subscribe(emulator, alice, receiver.url, changeType="created,moved").status_code == 400
    assert subscribe(emulator, alice, receiver.url, resource="/me/events").status_code == 400
    assert subscribe(emulator, alice, receiver.url, resource=f"/users/{bob.id}/messages").status_code == 403
    rv = subscribe(emulator, alice, receiver.url, resource=f"users/{alice.email}/mailFolders('Inbox')/messages")
    assert rv.status_code == 201


def test_expiry_is_raised_to_45_minutes_and_capped_with_an_error(emulator, alice, receiver):
    rv = subscribe(emulator, alice, receiver.url, minutes=5)
    granted = emulator.subscriptions.get(rv.json()["id"]).expires - emulator.clock.now()
    assert timedelta(minutes=44) < granted <= timedelta(minutes=45)
    rv = subscribe(emulator, alice, receiver.url, resource=INBOX, minutes=10_081)
    assert rv.status_code == 400
    assert rv.json()["error"]["message"] == "Subscription expiration can only be 10080 minutes in the future."
    emulator.subscriptions.config.max_expiration_minutes = 4230
    rv = subscribe(emulator, alice, receiver.url, resource=INBOX, minutes=4320)
    assert "4230 minutes" in rv.json()["error"]["message"]
    assert subscribe(emulator, alice, receiver.url, resource=INBOX, minutes=4200).status_code == 201


def test_duplicates_conflict(emulator, alice, receiver):
    """Same changeType and resource: 409 even to another URL (Graph's "requested combination")."""
    assert subscribe(emulator, alice, receiver.url).status_code == 201
    rv = subscribe(emulator, alice, receiver.url)
    assert rv.status_code == 409
    assert subscribe(emulator, alice, receiver.url + "?elsewhere").status_code == 409
    assert subscribe(emulator, alice, receiver.url, changeType="deleted").status_code == 201


def test_renew_reauthorize_get_list_delete(emulator, alice, receiver):
    created = subscribe(emulator, alice, receiver.url, lifecycleNotificationUrl=receiver.url).json()
    path = f"/subscriptions/{created['id']}"
    rv = alice.patch(path, json={"expirationDateTime": expiry(emulator, 3000)})
    assert rv.status_code == 200 and rv.json()["expirationDateTime"] > created["expirationDateTime"]
    assert alice.patch(path, json={"lifecycleNotificationUrl": receiver.url}).status_code == 400
    assert alice.patch(path, json={"expirationDateTime": expiry(emulator, 20_000)}).status_code == 400
    assert alice.post(path + "/reauthorize").status_code == 204
    assert alice.get(path).json()["id"] == created["id"]
    assert [s["id"] for s in alice.get("/subscriptions").json()["value"]] == [created["id"]]
    assert alice.delete(path).status_code == 204
    assert alice.get(path).status_code == 404
    assert alice.patch(path, json={"expirationDateTime": expiry(emulator, 60)}).status_code == 404


def test_expired_subscriptions_disappear(emulator, world, alice, receiver):
    created = subscribe(emulator, alice, receiver.url, minutes=60).json()
    emulator.clock.advance(timedelta(minutes=61))
    world.refresh(alice)
    assert alice.get(f"/subscriptions/{created['id']}").status_code == 404
    assert alice.get("/subscriptions").json()["value"] == []
    assert subscribe(emulator, alice, receiver.url).status_code == 201  # no longer a duplicate


def test_revoked_access_pauses_and_refuses_renewal(emulator, world, alice, receiver):
    created = subscribe(emulator, alice, receiver.url, lifecycleNotificationUrl=receiver.url).json()
    emulator.directory.remove_user_consent(alice.id)
    assert emulator.subscriptions.access_revoked(user_id=alice.id) == [created["id"]]
    [event] = receiver.wait_for(1)
    assert event["lifecycleEvent"] == "reauthorizationRequired" and "resource" not in event
    assert event["subscriptionId"] == created["id"] and event["clientState"] == "s3cret"
    with pytest.raises(GraphError) as refused:
        emulator.subscriptions.renew(emulator.subscriptions.get(created["id"]), None)
    assert refused.value.status == 403
    assert alice.post(f"/subscriptions/{created['id']}/reauthorize").status_code == 401

    emulator.mail.deliver(alice.id, subject="Lost", body="x", sender="c@customer.example", to=[alice.email])
    assert emulator.subscriptions.delivery.wait_idle(2)
    assert len(receiver.items) == 1

    emulator.directory.grant_consent(world.tenant_id, alice.id, world.client_id, frozenset({"Mail.ReadWrite"}))
    world.refresh(alice)
    assert alice.post(f"/subscriptions/{created['id']}/reauthorize").status_code == 204
    emulator.mail.deliver(alice.id, subject="Seen", body="x", sender="c@customer.example", to=[alice.email])
    assert [i["changeType"] for i in receiver.wait_for(3)[1:]] == ["created", "updated"]
