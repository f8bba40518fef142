"""On PostgreSQL, the receiver's subscription cache in each web process follows the subscriptions a
worker process anywhere creates, replaces or removes, as the change commits, not when the cache lapses."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.core.db import store_location
from app.core.timeutil import iso, now_iso, utcnow
from app.records import connections, subscription_rows
from app.records.known_subscriptions import SubscriptionDirectory
from app.web.context import services_of
from tests.e2e.waiting import wait_for
from tests.notifications import SECRET, store_subscription

pytestmark = pytest.mark.parametrize("engine", ["postgresql"], indirect=True)


@pytest.fixture
def directory(app):
    """Another process's cache, on a clock that never moves: only an announcement changes its answers."""
    directory = SubscriptionDirectory(store_location(app.config), services_of(app).cipher, clock=lambda: 1000.0)
    directory.lookup("warm-up")  # the first lookup starts listening
    assert directory.listening.wait(10)
    yield directory
    directory.close()


def create(app, db, subscription_id: str) -> None:
    """A worker process stores the subscription Graph just created for connection 7."""
    subscription_rows.store_created(
        db, 7, {"id": subscription_id}, resource="/users/user-1/messages", change_type="created,updated,deleted",
        encrypted_client_state=services_of(app).cipher.encrypt(SECRET), expires_at=iso(utcnow() + timedelta(days=3)),
        now=now_iso())


def test_a_subscription_created_elsewhere_is_trusted_at_once(app, db, directory):
    store_subscription(app, db)
    assert directory.lookup("sub-2") is None  # Graph delivered before the create call returned
    create(app, db, "sub-2")
    wait_for(lambda: directory.lookup("sub-2") is not None, timeout=5, message="the new subscription trusted")
    # The one it replaced still routes its late deliveries.
    assert directory.lookup("sub-1").connection_id == 7


def test_a_connection_that_lost_its_grant_elsewhere_is_refused_at_once(app, db, directory):
    store_subscription(app, db)
    assert directory.lookup("sub-1") is not None
    connections.mark_reconnect_required(services_of(app), 7, "invalid_grant")
    wait_for(lambda: directory.lookup("sub-1") is None, timeout=5, message="the subscription refused")


def test_a_disconnected_connection_is_refused_at_once(app, db, directory):
    store_subscription(app, db)
    assert directory.lookup("sub-1") is not None
    connections.mark_disconnected(db, 7)
    wait_for(lambda: directory.lookup("sub-1") is None, timeout=5, message="the subscription refused")
