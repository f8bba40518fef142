"""Creating, renewing and removing a mailbox's subscription against a fake Graph."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from app.core import ratelimit
from app.core.timeutil import iso, parse_iso
from app.microsoft.failures import NotFound, ReconnectRequired
from subscriptions import manager
from subscriptions.manager import create_subscription, disconnect, remove_subscriptions, renew_subscription
from tests.fake_graph import NOW, connection, graph, record, services  # noqa: F401  (the fixtures)

pytestmark = pytest.mark.both_engines


def rows(services) -> dict[str, dict]:
    return {row["id"]: row for row in services.db().query("SELECT * FROM subscriptions")}


def requested_lifetimes(graph) -> list[timedelta]:
    return [parse_iso(body["expirationDateTime"]) - NOW for (body,) in graph.calls_of("create_subscription")]


def test_create_stores_the_expiry_graph_granted_and_an_encrypted_client_state(services, graph, connection):
    graph.granted_lifetime = timedelta(days=2)
    subscription_id = create_subscription(services, connection, NOW)
    row = rows(services)[subscription_id]
    assert (row["status"], row["connection_id"]) == ("active", connection)
    assert row["expires_at"] == iso(NOW + timedelta(days=2))
    [(sent,)] = graph.calls_of("create_subscription")
    assert sent["clientState"].encode() not in row["client_state"]
    assert services.cipher.decrypt_text(row["client_state"]) == sent["clientState"]


def test_a_new_subscription_replaces_the_earlier_active_one(services, graph, connection):
    first = create_subscription(services, connection, NOW)
    del graph.subscriptions[first]  # Graph dropped it (a subscriptionRemoved): a twin is allowed again
    second = create_subscription(services, connection, NOW)
    stored = rows(services)
    assert (stored[first]["status"], stored[first]["replaced_by"]) == ("replaced", second)
    assert stored[second]["status"] == "active"


def test_a_rejected_lifetime_is_retried_with_the_older_4230_minute_limit(services, graph, connection):
    graph.max_subscription_minutes = 4_230
    subscription_id = create_subscription(services, connection, NOW)
    assert requested_lifetimes(graph) == [timedelta(minutes=10_080 - 15), timedelta(minutes=4_230 - 15)]
    assert rows(services)[subscription_id]["expires_at"] == iso(NOW + timedelta(minutes=4_230 - 15))


def test_a_leftover_duplicate_is_deleted_once_and_the_subscription_created_again(services, graph, connection):
    leftover = create_subscription(services, connection, NOW)
    services.db().execute("DELETE FROM subscriptions")  # an earlier attempt whose clientState was never stored
    subscription_id = create_subscription(services, connection, NOW)
    assert graph.calls_of("delete_subscription") == [(leftover,)]
    assert list(graph.subscriptions) == [subscription_id]
    assert rows(services)[subscription_id]["status"] == "active"


def test_a_leftover_duplicate_that_expired_before_its_delete_does_not_stop_the_create(services, graph, connection):
    create_subscription(services, connection, NOW)
    services.db().execute("DELETE FROM subscriptions")
    graph.fail_next("delete_subscription", NotFound(404, "ResourceNotFound", "The object was not found."),
                    answer_lost=True)  # gone by the time the delete arrives
    subscription_id = create_subscription(services, connection, NOW)
    assert list(graph.subscriptions) == [subscription_id]


def test_renew_stores_the_expiry_graph_granted(services, graph, connection):
    subscription_id = create_subscription(services, connection, NOW)
    later = NOW + timedelta(days=3)
    graph.clock = lambda: later
    graph.granted_lifetime = timedelta(days=1)
    granted = renew_subscription(services, rows(services)[subscription_id], later)
    row = rows(services)[subscription_id]
    assert granted == row["expires_at"] == iso(later + timedelta(days=1))
    assert row["renewed_at"] == iso(later)


def test_remove_deletes_on_graph_and_marks_every_row_removed(services, graph, connection):
    replaced = create_subscription(services, connection, NOW)
    del graph.subscriptions[replaced]
    active = create_subscription(services, connection, NOW)
    assert remove_subscriptions(services, connection) == 1
    assert graph.calls_of("delete_subscription") == [(active,)]
    assert graph.subscriptions == {}
    assert {row["status"] for row in rows(services).values()} == {"removed"}


@pytest.mark.parametrize("error", [
    NotFound(404, "ResourceNotFound", "The object was not found."),
    ReconnectRequired("invalid_grant (AADSTS70000)"),
])
def test_remove_stops_the_subscription_locally_whatever_graph_says(services, graph, connection, error):
    subscription_id = create_subscription(services, connection, NOW)
    graph.fail_next("delete_subscription", error)
    assert remove_subscriptions(services, connection) == 1
    assert rows(services)[subscription_id]["status"] == "removed"


def test_disconnect_wipes_the_tokens_and_marks_the_connection_disconnected(services, graph, connection):
    create_subscription(services, connection, NOW)
    disconnect(services, connection)
    assert services.identity.forgotten == [connection]
    [row] = services.db().query("SELECT status, token_cache FROM connections WHERE id = ?", [connection])
    assert row == {"status": "disconnected", "token_cache": None}
    assert graph.subscriptions == {}


def test_subscription_writes_of_one_tenant_share_one_budget_in_the_store(services, graph, connection, monkeypatch):
    """Every write (create, renew, delete) spends the tenant's budget; once spent, the next write waits
    for the window to end. The count is in the store, so every process sharing it spends the same one."""
    monkeypatch.setattr(manager, "SUBSCRIPTION_WRITES", ratelimit.Limit("subscription_writes", 3, 20.0))
    waits: list[float] = []
    this_thread, real_sleep = threading.get_ident(), time.sleep

    def sleep(seconds: float) -> None:  # time.sleep is everyone's: other threads (slot keep-alive) sleep as ever
        if threading.get_ident() != this_thread:
            return real_sleep(seconds)
        waits.append(seconds)
        services.db().execute("DELETE FROM rate_limits")
    monkeypatch.setattr(manager.time, "sleep", sleep)
    first = create_subscription(services, connection, NOW)
    renew_subscription(services, rows(services)[first], NOW)
    assert waits == []
    remove_subscriptions(services, connection)  # the third write in the window: it waits for the next one
    assert waits and 0 < waits[0] <= 20
    assert graph.calls_of("delete_subscription") == [(first,)]
