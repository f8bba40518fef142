"""GET /api/events: the platform reads every event once, in order, page by page; bad input is a 4xx."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.records import events

pytestmark = pytest.mark.both_engines


@pytest.fixture
def emitted(db, api):
    record = api.create_record()
    with db.atomic():
        events.emit(db, [events.Event("send.failed", {"record_id": record["id"], "outbox_id": n, "error": "x"})
                         for n in range(5)])
    return record


def test_events_come_oldest_first_with_a_cursor_that_reads_on(api, emitted):
    first = api.get("/api/events?limit=2").get_json()
    assert [e["data"]["outbox_id"] for e in first["events"]] == [0, 1]
    assert set(first["events"][0]) == {"id", "type", "timestamp", "organization_id", "data"}
    assert first["events"][0]["organization_id"] == emitted["organization_id"]
    rest = api.get(f"/api/events?after={first['next_cursor']}").get_json()
    assert [e["data"]["outbox_id"] for e in rest["events"]] == [2, 3, 4]
    idle = api.get(f"/api/events?after={rest['next_cursor']}").get_json()
    assert idle == {"events": [], "next_cursor": rest["next_cursor"]}


def test_the_default_page_is_100_events(api, db, emitted):
    with db.atomic():
        events.emit(db, [events.Event("send.sent", {"record_id": emitted["id"], "outbox_id": n})
                         for n in range(150)])
    assert len(api.get("/api/events").get_json()["events"]) == 100
    assert len(api.get("/api/events?limit=1000").get_json()["events"]) == 155


def test_it_needs_the_api_token(client, emitted):
    rv = client.get("/api/events")
    assert rv.status_code == 401 and rv.get_json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("query, status, code", [
    ("after=abc", 400, "invalid_cursor"), ("after=-1", 400, "invalid_cursor"), ("after=1.5", 400, "invalid_cursor"),
    ("after=%D9%A3", 400, "invalid_cursor"), ("after=99999999999999999999", 400, "invalid_cursor"),
    ("after=9223372036854775808", 400, "invalid_cursor"), ("limit=0", 422, "invalid_field"),
    ("limit=1001", 422, "invalid_field"), ("limit=ten", 422, "invalid_field"), ("limit=%00", 422, "invalid_field"),
])
def test_a_bad_cursor_or_limit_is_a_json_error(api, emitted, query, status, code):
    rv = api.get(f"/api/events?{query}")
    assert rv.status_code == status and rv.get_json()["error"]["code"] == code


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(after=st.text(max_size=30), limit=st.text(max_size=30))
def test_no_query_string_is_a_server_error(api, after, limit):  # the fixture's state is read, never changed
    rv = api.get("/api/events", query_string={"after": after, "limit": limit})
    body = rv.get_json()
    assert rv.status_code in (200, 400, 422), body
    assert "events" in body if rv.status_code == 200 else set(body["error"]) == {"code", "message"}
