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
