"""Replayed notifications collapse into one job even without an etag; a subject is one header line."""

import pytest

from app.core.queue import JobQueue
from app.records.notifications import REPLAY_WINDOW_SECONDS, KnownSubscription, replay_window, verify_item
from tests.notifications import SECRET, TENANT, notification, store_subscription
from tests.tables import table


@pytest.fixture
def subscription(app, db) -> str:
    return store_subscription(app, db)


def job_count(db) -> int:
    JobQueue(db).drain_inbox()
    return db.execute("SELECT count(*) FROM jobs WHERE kind = 'message'").fetchone()[0]


def test_replays_without_an_etag_become_one_job(client, db, subscription):
    for _ in range(5):
        rv = client.post("/webhooks/graph", json={"value": [notification(etag=None), notification(etag=None)]})
        assert rv.status_code == 202
    assert job_count(db) == 1


def test_other_change_types_and_messages_are_still_new_work(client, db, subscription):
    items = [notification(etag=None), notification(etag=None, change="updated"),
             notification(etag=None, message_id="AAMkAD-2")]
    client.post("/webhooks/graph", json={"value": items})
    assert job_count(db) == 3


def test_a_change_after_the_window_is_new_work():
    def lookup(_):
        return KnownSubscription(7, TENANT, SECRET.encode())

    now = 1_800_000_000.0
    first = verify_item(notification(etag=None), lookup, replay_window(now))
    same = verify_item(notification(etag=None), lookup, replay_window(now + 1))
    later = verify_item(notification(etag=None), lookup, replay_window(now + REPLAY_WINDOW_SECONDS))
    assert first.dedupe_key == same.dedupe_key != later.dedupe_key


@pytest.mark.parametrize("subject", ["Invoice\r\nBcc: everyone@example.com", "Invoice\nX-Evil: 1", "Invoice\r"])
def test_a_subject_with_a_line_break_is_refused(api, db, subject):
    record = api.create_record("Acme")
    rv = api.post(f"/api/records/{record['id']}/messages", headers={"Idempotency-Key": "k1"}, json={
        "connection_id": 1, "to": ["ap@acme.example"], "subject": subject, "body": "Hi", "reply": False})
    assert rv.status_code == 422
    assert rv.get_json()["error"]["code"] == "invalid_field" and "subject" in rv.get_json()["error"]["message"]
    assert table(db, "outbox").count == 0
