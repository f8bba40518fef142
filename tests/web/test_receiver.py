"""The notification receiver: handshake, verification, one-transaction persistence, never a 500."""

import json
import logging
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug.test import EnvironBuilder

from app.core.db import store_location
from app.core.queue import JobQueue
from app.core.timeutil import iso
from app.records.known_subscriptions import UNKNOWN_CACHE_SECONDS, SubscriptionDirectory
from app.web.context import services_of
from app.web.request_ids import REQUEST_ID
from tests.notifications import SECRET, notification, store_subscription

pytestmark = pytest.mark.both_engines


@pytest.fixture
def subscription(app, db) -> str:
    return store_subscription(app, db)


def post(client, *items, path="/webhooks/graph", headers=None):
    return client.post(path, json={"value": list(items)}, headers=headers)


def jobs(db):
    """The jobs the workers will see: the receiver's inbox moved into the queue first, as a claim does."""
    JobQueue(db).drain_inbox()
    return list(db.query("SELECT kind, dedupe_key, connection_id, payload FROM jobs ORDER BY id"))


@pytest.mark.parametrize("path", ["/webhooks/graph", "/webhooks/graph/lifecycle"])
def test_validation_handshake_echoes_the_decoded_token(client, db, path):
    rv = client.post(f"{path}?validationToken=Validation%3A+Testing+client+application+reachability%2B%2F",
                     data="", content_type="text/plain; charset=utf-8")
    assert rv.status_code == 200
    assert rv.mimetype == "text/plain"
    assert rv.get_data(as_text=True) == "Validation: Testing client application reachability+/"
    assert jobs(db) == []


def test_genuine_notification_is_queued_with_ids_only(client, db, subscription):
    rv = post(client, notification())
    assert rv.status_code == 202
    [job] = jobs(db)
    assert job["kind"] == "message" and job["connection_id"] == 7
    payload = json.loads(job["payload"])
    assert payload["message_id"] == "AAMkAD-1" and payload["change_type"] == "created"
    assert set(payload) == {"subscription_id", "message_id", "change_type"}


def test_replays_are_stored_once_but_a_new_version_is_new_work(client, db, subscription):
    for _ in range(3):
        assert post(client, notification(), notification()).status_code == 202
    post(client, notification(change="updated", etag='W/"CQAAAC"'))
    assert len(jobs(db)) == 2


@pytest.mark.parametrize(
    "item",
    [
        notification(client_state="forged"),
        notification(client_state=SECRET[:-1]),
        notification(subscription_id="unknown"),
        notification(tenant="another-tenant"),
        notification(change="exploded"),
        {"subscriptionId": "sub-1"},
        "not an object",
    ],
)
def test_forged_or_malformed_items_get_202_and_change_nothing(client, db, subscription, item):
    rv = post(client, item)
    assert rv.status_code == 202
    assert jobs(db) == []


def test_a_batch_keeps_its_genuine_items_and_drops_the_rest(client, db, subscription):
    rv = post(client, notification(client_state="forged", message_id="evil"), notification(message_id="good"))
    assert rv.status_code == 202
    assert [json.loads(j["payload"])["message_id"] for j in jobs(db)] == ["good"]


def test_lifecycle_event_is_queued(client, db, subscription):
    item = {k: v for k, v in notification().items() if k not in ("changeType", "resource", "resourceData")}
    item["lifecycleEvent"] = "reauthorizationRequired"
    assert post(client, item, path="/webhooks/graph/lifecycle").status_code == 202
    [job] = jobs(db)
    assert job["kind"] == "lifecycle"
    assert json.loads(job["payload"])["event"] == "reauthorizationRequired"


def test_replaced_subscription_stays_routable_until_its_time(client, db, subscription):
    db.execute("UPDATE subscriptions SET status = 'replaced', routable_until = ?",
               [iso(datetime.now(timezone.utc) + timedelta(hours=1))])
    assert post(client, notification()).status_code == 202
    assert len(jobs(db)) == 1


def test_subscription_past_its_routable_time_is_unknown(client, db, subscription):
    db.execute("UPDATE subscriptions SET routable_until = ?", [iso(datetime.now(timezone.utc) - timedelta(seconds=1))])
    assert post(client, notification()).status_code == 202
    assert jobs(db) == []


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"data": "{broken", "content_type": "application/json"}, 400),
        ({"data": json.dumps({"value": "nope"}), "content_type": "application/json"}, 400),
        ({"data": json.dumps([1, 2]), "content_type": "application/json"}, 400),
        ({"data": "value=1", "content_type": "application/x-www-form-urlencoded"}, 415),
        ({"data": b"\xff\xfe\x00", "content_type": "application/json"}, 400),
        ({"data": json.dumps({"value": ["x" * 1024] * 1100}), "content_type": "application/json"}, 413),
    ],
)
def test_malformed_deliveries_get_a_4xx(client, db, subscription, kwargs, status):
    rv = client.post("/webhooks/graph", **kwargs)
    assert rv.status_code == status
    assert jobs(db) == []


def test_storage_failure_answers_503_so_graph_retries(app, client, db, subscription, monkeypatch):
    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(services_of(app).queue, "enqueue_many", broken)
    assert post(client, notification()).status_code == 503


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_get_405_and_change_nothing(client, db, subscription, method):
    rv = client.open("/webhooks/graph", method=method, json={"value": [notification()]})
    assert (rv.status_code, rv.headers["Allow"]) == (405, "POST")
    assert rv.get_json()["error"]["code"] == "method_not_allowed"
    assert jobs(db) == []


def test_answers_carry_the_request_id(client, subscription):
    rv = post(client, notification(), headers={"X-Request-Id": "graph-delivery-1"})
    assert (rv.status_code, rv.headers["X-Request-Id"]) == (202, "graph-delivery-1")
    assert REQUEST_ID.fullmatch(client.post("/webhooks/graph", data="{", content_type="application/json")
                                .headers["X-Request-Id"])


def _call_without_length(app, body: bytes) -> str:
    """POST ``body`` the way a server that passes a chunked body on without a length would."""
    environ = EnvironBuilder(path="/webhooks/graph", method="POST", data=body,
                             content_type="application/json").get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    statuses = []
    app.wsgi_app(environ, lambda status, headers: statuses.append(status))
    return statuses[0]


def test_a_body_of_unknown_length_is_read_but_never_past_the_limit(app, db, subscription):
    assert _call_without_length(app, json.dumps({"value": [notification()]}).encode()).startswith("202")
    assert len(jobs(db)) == 1
    too_big = json.dumps({"value": [notification(message_id=f"m{i}") for i in range(3000)]}).encode()
    assert len(too_big) > 1024 * 1024
    assert _call_without_length(app, too_big).startswith("413")
    assert len(jobs(db)) == 1


def test_a_bug_answers_a_logged_json_500_never_a_crash(app, client, db, subscription, monkeypatch, caplog):
    def broken(subscription_id):
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.wsgi_app.directory, "lookup", broken)
    rv = post(client, notification(), headers={"X-Request-Id": "bug-1"})
    assert rv.status_code == 500 and rv.get_json()["error"]["code"] == "internal_server_error"
    [entry] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "could not handle a delivery" in entry.getMessage() and entry.exc_info
    assert jobs(db) == []


def test_a_subscription_stored_just_after_its_first_delivery_is_trusted_a_moment_later(app, db, engine):
    """Graph may deliver while the create call that made the subscription is still returning."""
    clock = [1000.0]
    directory = SubscriptionDirectory(store_location(app.config), services_of(app).cipher, clock=lambda: clock[0])
    if engine == "postgresql":  # listening for changes starts from an empty cache
        directory.lookup("another")
        assert directory.listening.wait(10)
    assert directory.lookup("sub-1") is None
    store_subscription(app, db)  # written behind the service's back: nobody announces it
    assert directory.lookup("sub-1") is None  # a flood of unknown ids costs one query a second each
    clock[0] += UNKNOWN_CACHE_SECONDS
    assert directory.lookup("sub-1").connection_id == 7
    directory.close()
