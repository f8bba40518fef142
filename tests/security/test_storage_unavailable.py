"""A busy or full database answers 503 with Retry-After on every route, and stores nothing half-written."""

import re

import pytest

from app.core.db import open_db
from app.core.timeutil import now_iso
from tests.forms import sign_in_person
from tests.notifications import notification, store_subscription
from tests.tables import table


def upload(message_id: str, body_size: int = 10) -> bytes:
    return (f"Message-ID: <{message_id}@acme.example>\r\nSubject: W-9\r\nFrom: ap@acme.example\r\n\r\n"
            + "x" * body_size + "\r\n").encode()


@pytest.fixture
def record(api, db, client) -> dict:
    """A record with Megan's mailbox, and Megan signed in at ``client``."""
    sign_in_person(client)
    record = api.create_record("Acme vendor file")
    now = now_iso()
    table(db, "tenants").insert({"id": "t1", "created_at": now, "updated_at": now})
    table(db, "connections").insert({"id": 3, "tenant_id": "t1", "user_id": "u3", "email": "megan@contoso.example",
                              "status": "active", "created_at": now, "updated_at": now})
    table(db, "record_connections").insert({"record_id": record["id"], "connection_id": 3, "created_at": now})
    return record


@pytest.fixture
def subscription(app, db) -> str:
    return store_subscription(app, db)


@pytest.fixture
def full(db):
    """The database can grow no further, so SQLite fails writes with SQLITE_FULL as on a full disk.

    The test client runs requests on this thread, so they use this very connection.
    """
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")


@pytest.fixture
def locked(app, db):
    """Another process holds the write lock for longer than the service waits for it."""
    other = open_db(app.config["DATABASE_PATH"])
    other.execute("BEGIN IMMEDIATE")
    db.execute("PRAGMA busy_timeout = 50")
    yield
    other.execute("ROLLBACK")
    other.close()


def assert_unavailable(rv, *, html: bool = False) -> None:
    assert rv.status_code == 503, rv.get_data(as_text=True)[:300]
    assert int(rv.headers["Retry-After"]) > 0
    if html:
        assert rv.mimetype == "text/html" and "busy" in rv.get_data(as_text=True)
    else:
        assert rv.get_json()["error"]["code"] == "storage_unavailable"


def compose(client, record_id: int):
    html = client.get(f"/records/{record_id}").get_data(as_text=True)
    form = dict(re.findall(r'name="(csrf_token|idempotency_key)" value="([^"]*)"', html))
    return client.post(f"/records/{record_id}/compose", headers={"Accept": "text/html"}, data={
        **form, "mode": "new", "connection_id": "3", "to": "ap@acme.example", "subject": "W-9", "body": "Thanks"})


def test_a_full_database_answers_503_to_api_writes(api, db, record, full):
    assert_unavailable(api.post(f"/api/records/{record['id']}/emails", data=upload("big", 300_000),
                                content_type="message/rfc822"))
    answers = [api.post("/api/records", json={"title": "x" * 500}) for _ in range(50)]
    assert {rv.status_code for rv in answers} <= {201, 503}
    assert_unavailable(answers[-1])
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_a_full_database_answers_503_to_webhook_deliveries(client, subscription, full):
    rv = client.post("/webhooks/graph", json={"value": [notification(message_id=f"m{n}") for n in range(1000)]})
    assert_unavailable(rv)


def test_a_locked_database_answers_503_to_api_writes(api, record, locked):
    assert_unavailable(api.post("/api/records", json={"title": "Contract 9"}))
    assert_unavailable(api.post(f"/api/records/{record['id']}/emails", data=upload("w9"),
                                content_type="message/rfc822"))


def test_a_locked_database_answers_503_to_the_compose_form(client, record, locked):
    assert_unavailable(compose(client, record["id"]), html=True)


def test_a_locked_database_answers_503_to_webhook_deliveries(client, subscription, locked):
    assert_unavailable(client.post("/webhooks/graph", json={"value": [notification()]}))


def test_pages_still_read_while_another_process_writes(client, record, locked):
    assert client.get(f"/records/{record['id']}").status_code == 200
