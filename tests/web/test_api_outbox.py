"""Send requests: validation, idempotency, and status, without touching Graph."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.core.db import store_location, thread_db
from app.core.timeutil import now_iso
from tests.tables import table

pytestmark = pytest.mark.both_engines


@pytest.fixture
def app_config(app_config: dict) -> dict:
    """Request threads to spare: the concurrency test's eight callers all run at once, none is refused busy."""
    return {**app_config, "WEB_THREADS": 32}


@pytest.fixture
def record(api):
    return api.create_record("Contract 12")


@pytest.fixture
def connection(db) -> int:
    now = now_iso()
    table(db, "tenants").insert({"id": "t1", "created_at": now, "updated_at": now})
    table(db, "connections").insert({"id": 3, "tenant_id": "t1", "user_id": "u1", "email": "megan@contoso.example",
                              "status": "active", "created_at": now, "updated_at": now})
    return 3


def body(connection_id=3, **fields):
    return {"connection_id": connection_id, "to": ["vendor@acme.example"], "subject": "Invoice",
            "body": "Please find the invoice attached.", "reply": False, **fields}


def send(api, record_id, payload, key="key-1"):
    headers = {"Idempotency-Key": key} if key else {}
    return api.post(f"/api/records/{record_id}/messages", json=payload, headers=headers)


def test_a_send_request_is_queued_with_its_job(api, db, record, connection):
    rv = send(api, record["id"], body())
    assert rv.status_code == 202
    assert rv.get_json()["status"] == "queued"
    outbox_id = rv.get_json()["id"]
    [job] = list(db.query("SELECT kind, payload FROM jobs"))
    assert job["kind"] == "send" and json.loads(job["payload"]) == {"outbox_id": outbox_id}
    status = api.get(f"/api/outbox/{outbox_id}").get_json()
    assert status["status"] == "queued" and status["to"] == ["vendor@acme.example"]


def test_a_repeated_key_returns_the_original_request(api, db, record, connection):
    first = send(api, record["id"], body()).get_json()
    again = send(api, record["id"], body())
    assert again.status_code == 202 and again.get_json()["id"] == first["id"]
    assert table(db, "outbox").count == 1 and table(db, "jobs").count == 1


def test_concurrent_requests_with_one_key_create_one_send(app, record, connection):
    def post(_):
        client = app.test_client()
        return client.post(f"/api/records/{record['id']}/messages", json=body(),
                           headers={"Authorization": "Bearer test-api-token", "Idempotency-Key": "same"})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(20)))
    assert {rv.status_code for rv in responses} == {202}
    assert len({rv.get_json()["id"] for rv in responses}) == 1
    db = thread_db(store_location(app.config))
    assert table(db, "outbox").count == 1 and table(db, "jobs").count == 1


def test_a_reused_key_with_another_body_is_a_conflict(api, record, connection):
    send(api, record["id"], body())
    rv = send(api, record["id"], body(body="something else"))
    assert rv.status_code == 409
    assert rv.get_json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("payload", "key", "status", "code"),
    [
        (body(), None, 400, "missing_idempotency_key"),
        (body(to=["not-an-address"]), "k", 422, "invalid_address"),
        (body(to=[]), "k", 422, "missing_field"),
        (body(to="vendor@acme.example"), "k", 422, "invalid_field"),
        (body(body="  "), "k", 422, "missing_field"),
        (body(body_type="markdown"), "k", 422, "invalid_field"),
        (body(connection_id="3"), "k", 422, "missing_field"),
        (body(connection_id=99), "k", 422, "unknown_connection"),
        (body(reply="yes"), "k", 422, "invalid_field"),
    ],
)
def test_invalid_requests_are_refused_and_nothing_is_queued(api, db, record, connection, payload, key, status, code):
    rv = send(api, record["id"], payload, key=key)
    assert rv.status_code == status
    assert rv.get_json()["error"]["code"] == code
    assert table(db, "outbox").count == 0 and table(db, "jobs").count == 0


def test_a_reply_may_leave_recipients_to_the_conversation(api, record, connection):
    assert send(api, record["id"], body(to=[], reply=True)).status_code == 202


def test_a_mailbox_needing_reconnect_cannot_send(api, db, record, connection):
    db.execute("UPDATE connections SET status = 'reconnect_required'")
    rv = send(api, record["id"], body())
    assert rv.status_code == 409
    assert rv.get_json()["error"]["code"] == "connection_not_active"


def test_unknown_record_and_outbox_are_404(api, connection):
    assert send(api, 404, body()).status_code == 404
    assert api.get("/api/outbox/12345").status_code == 404


def test_a_send_uses_only_a_connection_of_the_record_s_organization(api, db, record):
    """Isolation rule 3: the platform's backend cannot send a record's mail from another customer's mailbox."""
    fabrikam = "2e9b1d7a-5c3f-4e8d-b6a1-0f9e8d7c6b5a"
    now = now_iso()
    table(db, "tenants").insert({"id": fabrikam, "created_at": now, "updated_at": now})
    table(db, "connections").insert({"id": 4, "tenant_id": fabrikam, "user_id": "u2", "email": "alex@fabrikam.example",
                              "status": "active", "created_at": now, "updated_at": now})
    other = api.post("/api/organizations", json={"name": "Fabrikam", "tenant_ids": [fabrikam]}).get_json()
    rv = send(api, record["id"], body(connection_id=4), key="cross-1")
    assert (rv.status_code, rv.get_json()["error"]["code"]) == (403, "connection_not_allowed")
    their_record = api.create_record("Fabrikam contract", organization_id=other["id"])
    assert send(api, their_record["id"], body(connection_id=4), key="own-1").status_code == 202
    assert db.execute("SELECT count(*) FROM outbox WHERE connection_id = 4").fetchone()[0] == 1, "nothing queued for the refused one"
