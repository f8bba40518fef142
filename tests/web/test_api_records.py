import pytest

from tests.tables import table

pytestmark = pytest.mark.both_engines


def test_create_and_show_a_record(api):
    created = api.create_record("Acme Corp vendor file", external_id="VEND-42")
    assert created["title"] == "Acme Corp vendor file"
    assert created["external_id"] == "VEND-42"
    shown = api.get(f"/api/records/{created['id']}")
    assert shown.status_code == 200
    assert shown.get_json() == created


def test_external_id_is_optional(api):
    assert api.create_record("Contract 7")["external_id"] is None


@pytest.mark.parametrize(
    ("headers", "description"),
    [({}, "no header"), ({"Authorization": "Bearer wrong"}, "wrong token"), ({"Authorization": "Basic x"}, "scheme")],
)
def test_api_requires_the_bearer_token(client, headers, description):
    rv = client.post("/api/records", json={"title": "x"}, headers=headers)
    assert rv.status_code == 401
    assert rv.get_json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": "title=x", "content_type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ({"json": ["a list"]}, 400, "invalid_json"),
        ({"json": {}}, 422, "missing_field"),
        ({"json": {"title": "   "}}, 422, "missing_field"),
        ({"json": {"title": 5}}, 422, "invalid_field"),
        ({"json": {"title": "ok", "external_id": ["x"]}}, 422, "invalid_field"),
        ({"json": {"title": "x" * 501}}, 422, "invalid_field"),
    ],
)
def test_bad_input_gets_a_json_4xx_and_stores_nothing(api, app, kwargs, status, code):
    rv = api.post("/api/records", **kwargs)
    assert rv.status_code == status
    assert rv.get_json()["error"]["code"] == code
    assert rv.get_json()["error"]["message"]
    from app.core.db import store_location, thread_db

    assert table(thread_db(store_location(app.config)), "records").count == 0


def test_unknown_record_is_404(api):
    rv = api.get("/api/records/999")
    assert rv.status_code == 404
    assert rv.get_json()["error"]["code"] == "record_not_found"


def test_unknown_api_path_is_json_404(api):
    rv = api.get("/api/nothing-here")
    assert rv.status_code == 404
    assert rv.get_json()["error"]["code"] == "not_found"


def test_healthz(client):
    rv = client.get("/healthz")
    assert rv.status_code == 200
    assert rv.get_json()["status"] == "ok"


def upload(api, record_id: int) -> None:
    raw = (b"Message-ID: <po-4711@acme.example>\r\nFrom: dana@acme.example\r\nSubject: Onboarding\r\n"
           b"\r\nOur W-9 and banking details.\r\n")
    assert api.post(f"/api/records/{record_id}/emails", data=raw, content_type="message/rfc822").status_code == 201


def test_delete_removes_the_record_with_its_mail_and_a_repeat_is_404(api):
    record, kept = api.create_record("Contract 7"), api.create_record("Contract 8")
    upload(api, record["id"])
    upload(api, kept["id"])
    rv = api.delete(f"/api/records/{record['id']}")
    assert rv.status_code == 204 and rv.data == b""
    for path in (f"/api/records/{record['id']}", f"/api/records/{record['id']}/thread",
                 f"/api/records/{record['id']}/attachments"):
        assert api.get(path).status_code == 404
    again = api.delete(f"/api/records/{record['id']}")
    assert again.status_code == 404 and again.get_json()["error"]["code"] == "record_not_found"
    assert len(api.get(f"/api/records/{kept['id']}/thread").get_json()["messages"]) == 1


def test_delete_needs_the_token_and_an_unknown_record_is_404(client, api):
    record = api.create_record("Contract 7")
    assert client.delete(f"/api/records/{record['id']}").status_code == 401
    assert api.get(f"/api/records/{record['id']}").status_code == 200
    assert api.delete("/api/records/999").status_code == 404
    assert api.delete("/api/records/x").status_code == 404


def test_delete_is_refused_while_a_send_is_on_its_way_out(api, db):
    record = api.create_record("Contract 7")
    upload(api, record["id"])
    now = "2026-01-01T00:00:00+00:00"
    table(db, "tenants").insert({"id": "t1", "created_at": now, "updated_at": now})
    table(db, "connections").insert({"id": 3, "tenant_id": "t1", "user_id": "u1", "created_at": now, "updated_at": now})
    table(db, "outbox").insert({"id": 5, "idempotency_key": "k", "record_id": record["id"], "connection_id": 3,
                                "request": "{}", "status": "sending", "created_at": now, "updated_at": now})
    rv = api.delete(f"/api/records/{record['id']}")
    assert rv.status_code == 409 and rv.get_json()["error"]["code"] == "send_in_flight"
    assert "5" in rv.get_json()["error"]["message"]
    assert len(api.get(f"/api/records/{record['id']}/thread").get_json()["messages"]) == 1
