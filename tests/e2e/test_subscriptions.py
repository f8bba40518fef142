"""Subscriptions end to end with an injected clock: renew, recreate, lifecycle events, delta reconcile."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.core.db import store_location, thread_db
from app.runtime import Runtime
from emulator import Emulator
from subscriptions.leader import Leadership
from subscriptions.reconcile import reconcile
from subscriptions.renewal import renew_due
from tests.e2e.harness import Browser, ServiceServer
from tests.e2e.mail import MEGAN, VENDOR, queue_idle, thread, upload, wait_for_thread
from tests.e2e.waiting import wait_for
from tests.tables import table

pytestmark = pytest.mark.both_engines


@pytest.fixture
def setup(service, browser, api):
    """Megan connected to a record whose uploaded email is in her inbox; the service on the emulator's clock."""
    service.services.clock = service.emulator.clock.now
    megan = service.demo["users"]["megan"]
    record = api.create_record()
    service.emulator.deliver_email(megan, subject="Onboarding documents", body="W-9 attached", sender=VENDOR,
                                   to=[MEGAN], internet_message_id="<first.1@acme.example>")
    upload(api, record["id"])
    browser.connect(record["id"], "megan")
    db = thread_db(store_location(service.app.config))
    wait_for(lambda: active(db) and queue_idle(db) and table(db, "delta_state").count == 2, message="connected and synced")
    return {"record": record, "megan": megan, "db": db, "service": service, "api": api}


def active(db):
    return list(db.query("SELECT * FROM subscriptions WHERE status = 'active'"))


def graph_calls(emulator, method, path_prefix="/v1.0/subscriptions"):
    return emulator.requests(method=method, path_prefix=path_prefix)


def reply(setup, n, **fields):
    return setup["service"].emulator.deliver_email(
        setup["megan"], subject=f"RE: Onboarding documents ({n})", body=f"reply {n}", sender=VENDOR, to=[MEGAN],
        in_reply_to="<first.1@acme.example>", internet_message_id=f"<reply.{n}@acme.example>", **fields)


def test_renewal_happens_before_expiry_and_stores_the_granted_expiry(setup):
    service, db = setup["service"], setup["db"]
    [before] = active(db)
    assert renew_due(service.services) == {}  # fresh: nothing due
    service.emulator.clock.advance(timedelta(days=4))  # past half of a ~7-day lifetime
    service.emulator.clear_requests()
    assert renew_due(service.services) == {"renewed": 1}
    [after] = active(db)
    assert after["id"] == before["id"] and after["expires_at"] > before["expires_at"]
    [graph_side] = service.emulator.subscription_list()
    assert graph_side["expirationDateTime"].startswith(after["expires_at"][:16])
    # One write; the emulator's clock moved 4 days, so the cached access token earns one 401 first.
    assert [p["status"] for p in graph_calls(service.emulator, "PATCH")][-1:] == [200]
    assert len([p for p in graph_calls(service.emulator, "PATCH") if p["status"] == 200]) == 1
    assert not graph_calls(service.emulator, "GET")  # never lists subscriptions


def test_404_on_renew_recreates_the_subscription_and_reconciles_the_gap(setup):
    service, db = setup["service"], setup["db"]
    [old] = active(db)
    emu_sub = service.emulator.subscriptions.get(old["id"])
    service.emulator.subscriptions.delete(emu_sub)
    service.emulator.subscriptions.delivery.config.drop_rate = 1.0  # Graph loses the notification too
    reply(setup, 1)
    service.emulator.clock.advance(timedelta(days=4))
    assert renew_due(service.services) == {"recreated": 1}
    [new] = wait_for(lambda: active(db), message="a new subscription")
    assert new["id"] != old["id"]
    messages = wait_for_thread(setup["api"], setup["record"]["id"], 2)
    assert messages[1]["internet_message_id"] == "<reply.1@acme.example>"


def test_expired_subscription_found_after_downtime_is_recreated(setup):
    service, db = setup["service"], setup["db"]
    [old] = active(db)
    service.emulator.clock.advance(timedelta(days=8))  # the service was down past the expiry
    service.emulator.subscriptions.sweep()
    assert service.emulator.subscription_list() == []
    assert renew_due(service.services) == {"recreated": 1}
    [new] = wait_for(lambda: active(db), message="a new subscription")
    assert new["id"] != old["id"] and len(service.emulator.subscription_list()) == 1


def test_reauthorization_required_renews_with_one_patch(setup):
    service, db = setup["service"], setup["db"]
    [subscription] = active(db)
    service.emulator.clear_requests()
    service.emulator.trigger_lifecycle(subscription["id"], "reauthorizationRequired")
    service.emulator.trigger_lifecycle(subscription["id"], "reauthorizationRequired")
    wait_for(lambda: graph_calls(service.emulator, "PATCH"), message="a renewal")
    wait_for(lambda: queue_idle(db))
    assert len(graph_calls(service.emulator, "PATCH")) == 1
    assert not graph_calls(service.emulator, "POST", f"/v1.0/subscriptions/{subscription['id']}/reauthorize")


def test_subscription_removed_recreates_and_reconciles(setup):
    service, db = setup["service"], setup["db"]
    [old] = active(db)
    service.emulator.subscriptions.delivery.config.drop_rate = 1.0
    reply(setup, 2)
    service.emulator.trigger_lifecycle(old["id"], "subscriptionRemoved")
    [new] = wait_for(lambda: [s for s in active(db) if s["id"] != old["id"]], message="a replacement")
    assert {s["id"] for s in service.emulator.subscription_list()} == {new["id"]}
    wait_for_thread(setup["api"], setup["record"]["id"], 2)


def test_missed_triggers_a_reconcile_that_links_lost_messages(setup):
    service, db = setup["service"], setup["db"]
    [subscription] = active(db)
    service.emulator.subscriptions.delivery.config.drop_rate = 1.0
    reply(setup, 3)
    service.emulator.trigger_lifecycle(subscription["id"], "missed")
    messages = wait_for_thread(setup["api"], setup["record"]["id"], 2)
    assert messages[1]["internet_message_id"] == "<reply.3@acme.example>"


def test_expired_delta_token_restarts_from_a_time_window(setup):
    service, db = setup["service"], setup["db"]
    service.emulator.subscriptions.delivery.config.drop_rate = 1.0
    reply(setup, 4)
    service.emulator.mail.invalidate_sync_state(setup["megan"])
    service.emulator.clear_requests()
    connection_id = table(db, "connections").rows.__next__()["id"]
    assert reconcile(service.services, connection_id) >= 1
    delta_calls = [r for r in service.emulator.requests(method="GET") if "/delta" in r["path"]]
    assert any(r["status"] == 410 for r in delta_calls)
    assert any("receivedDateTime" in str(r["query"]) for r in delta_calls)
    assert [m["internet_message_id"] for m in thread(setup["api"], setup["record"]["id"])][-1] == "<reply.4@acme.example>"


def test_mail_that_arrived_while_the_service_was_down_is_linked_after_restart(setup):
    service = setup["service"]
    service.runtime.stop(timeout=10)
    service.emulator.subscriptions.delivery.config.drop_rate = 1.0  # notifications lost while down
    reply(setup, 5)
    service.runtime = Runtime(service.app, workers=2, scheduler=True)
    service.runtime.start()
    messages = wait_for_thread(setup["api"], setup["record"]["id"], 2)
    assert messages[1]["internet_message_id"] == "<reply.5@acme.example>"


def test_the_longest_lifetime_falls_back_to_the_older_limit(app_config):
    with Emulator(max_subscription_minutes=4230) as emulator:
        service = ServiceServer(emulator, app_config).start()
        try:
            record = service.app.test_client().post("/api/records", json={"title": "x"},
                                                    headers={"Authorization": "Bearer test-api-token"}).get_json()
            Browser(service).connect(record["id"], "megan")
            db = thread_db(store_location(service.app.config))
            [subscription] = wait_for(lambda: active(db), message="a subscription")
            posts = graph_calls(emulator, "POST")
            assert [p["status"] for p in posts if p["path"] == "/v1.0/subscriptions"] == [400, 201]
            [graph_side] = emulator.subscription_list()
            assert graph_side["expirationDateTime"].startswith(subscription["expires_at"][:16])
        finally:
            service.stop()


def test_only_one_of_two_schedulers_leads(app):
    from app.core.db import store_location
    from app.core.db import thread_db as open_thread_db

    database = store_location(app.config)
    first = Leadership(lambda: open_thread_db(database))
    second = Leadership(lambda: open_thread_db(database))
    assert first.is_leader() is True
    assert second.is_leader() is False
    assert first.is_leader() is True  # renewing its own lease
    first.resign()
    assert second.is_leader() is True


def test_subscriptions_api_lists_what_graph_granted(setup):
    [subscription] = active(setup["db"])
    [listed] = setup["api"].get("/api/subscriptions").json()["subscriptions"]
    assert listed["id"] == subscription["id"] and listed["status"] == "active"
    assert listed["expires_at"] == subscription["expires_at"] and listed["resource"].endswith("/messages")
