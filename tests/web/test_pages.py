"""The record page's compose form: CSRF, validation through the API's rules, and one send per form."""

from __future__ import annotations

import json
import re

import pytest

from app.core.timeutil import now_iso
from app.web.pages import send_request_from_form
from tests.forms import hidden, sign_in_person
from tests.tables import table

pytestmark = pytest.mark.both_engines


@pytest.fixture
def record(api):
    return api.create_record("Contract 12")


@pytest.fixture(autouse=True)
def megan_signed_in(client):
    """Megan (tenant t1, user u3) is at the browser; connection 3 below is hers."""
    sign_in_person(client)


def add_connection(db, record_id, connection_id, email, *, status="active"):
    now = now_iso()
    table(db, "tenants").insert({"id": "t1", "created_at": now, "updated_at": now}, ignore=True)
    table(db, "connections").insert({"id": connection_id, "tenant_id": "t1", "user_id": f"u{connection_id}", "email": email,
                              "display_name": email.split("@")[0].title(), "status": status,
                              "created_at": now, "updated_at": now})
    table(db, "record_connections").insert({"record_id": record_id, "connection_id": connection_id, "created_at": now})


@pytest.fixture
def connected(db, record):
    add_connection(db, record["id"], 3, "megan@contoso.example")
    return record


def open_form(client, record_id) -> dict[str, str]:
    html = client.get(f"/records/{record_id}").get_data(as_text=True)
    return {"csrf_token": hidden(html, "csrf_token"), "idempotency_key": hidden(html, "idempotency_key"),
            "connection_id": hidden(html, "connection_id")}


def post(client, record_id, form, **fields):
    data = {**form, "mode": "new", "to": "vendor@acme.example", "subject": "Invoice", "body": "Attached.", **fields}
    return client.post(f"/records/{record_id}/compose", data=data)


def test_the_form_is_only_offered_with_a_connected_mailbox(client, db, record):
    assert "Connect Outlook" in client.get(f"/records/{record['id']}").get_data(as_text=True)
    assert 'name="body"' not in client.get(f"/records/{record['id']}").get_data(as_text=True)
    add_connection(db, record["id"], 3, "megan@contoso.example")
    html = client.get(f"/records/{record['id']}").get_data(as_text=True)
    assert '<label for="body">Message</label>' in html and 'name="csrf_token"' in html
    assert "megan@contoso.example" in html and "<select" not in html  # one mailbox: no choice to make


def test_a_submitted_form_queues_one_send_and_redirects_with_a_status(client, db, connected):
    form = open_form(client, connected["id"])
    rv = post(client, connected["id"], form, cc="boss@acme.example; legal@acme.example")
    assert rv.status_code == 303 and rv.headers["Location"].endswith(f"/records/{connected['id']}#sends")
    [outbox] = list(db.query("SELECT * FROM outbox"))
    assert outbox["idempotency_key"] == "page:" + form["idempotency_key"] and outbox["status"] == "queued"
    assert json.loads(outbox["request"]) == {
        "connection_id": 3, "to": ["vendor@acme.example"], "cc": ["boss@acme.example", "legal@acme.example"],
        "subject": "Invoice", "body": "Attached.", "body_type": "text", "reply": False, "automated": False}
    assert [job["kind"] for job in db.query("SELECT kind FROM jobs")] == ["send"]
    page = client.get(rv.headers["Location"]).get_data(as_text=True)
    assert "Your message is queued" in page and 'role="status"' in page
    assert "Recent sends" in page and ">queued<" in page


def test_a_double_submit_sends_once(client, db, connected):
    form = open_form(client, connected["id"])
    assert post(client, connected["id"], form).status_code == 303
    again = post(client, connected["id"], form)
    assert again.status_code == 303
    assert table(db, "outbox").count == 1 and table(db, "jobs").count == 1
    assert "was not sent again" in client.get(again.headers["Location"]).get_data(as_text=True)


def test_each_rendering_of_the_form_has_its_own_key(client, connected):
    assert open_form(client, connected["id"])["idempotency_key"] != open_form(client, connected["id"])["idempotency_key"]


def test_an_old_form_sent_again_with_changes_sends_nothing(client, db, connected):
    form = open_form(client, connected["id"])
    post(client, connected["id"], form)
    rv = post(client, connected["id"], form, body="Changed my mind.")
    assert rv.status_code == 409 and "already used" in rv.get_data(as_text=True)
    assert table(db, "outbox").count == 1
    assert hidden(rv.get_data(as_text=True), "idempotency_key") != form["idempotency_key"]


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_a_post_without_the_sessions_csrf_token_is_refused(client, db, connected, token):
    form = open_form(client, connected["id"])
    form.pop("csrf_token")
    if token is not None:
        form["csrf_token"] = token
    rv = post(client, connected["id"], form, body="From another site")
    assert rv.status_code == 400 and "nothing was sent" in rv.get_data(as_text=True)
    assert "From another site" not in rv.get_data(as_text=True)
    assert table(db, "outbox").count == 0


def test_a_new_browser_session_cannot_use_another_sessions_token(app, client, db, connected):
    form = open_form(client, connected["id"])
    other = app.test_client()
    sign_in_person(other)  # Megan again, in another browser
    assert post(other, connected["id"], form).status_code == 400
    assert table(db, "outbox").count == 0


@pytest.mark.parametrize("fields, field, message", [
    ({"to": ""}, "to", "To needs at least one address"),
    ({"to": "not-an-address"}, "to", "To has invalid email address(es): not-an-address"),
    ({"cc": "x@y"}, "cc", "Cc has invalid email address(es)"),
    ({"body": "  "}, "body", "Message is required"),
    ({"connection_id": "99"}, "connection_id", "From must be your own mailbox on this record"),
])
def test_invalid_input_is_explained_at_its_field_and_kept(client, db, connected, fields, field, message):
    rv = post(client, connected["id"], open_form(client, connected["id"]), **fields)
    html = rv.get_data(as_text=True)
    assert rv.status_code == 422 and message in html
    assert 'role="alert"' in html and f'id="{field}-error"' in html
    if field != "connection_id":
        assert re.search(rf'id="{field}"[^>]*aria-invalid="true"[^>]*aria-describedby="[^"]*{field}-error', html)
    assert "Attached." in html or field == "body"  # what was typed is not lost
    assert table(db, "outbox").count == 0


def test_a_reply_needs_no_recipients_or_subject(client, db, connected):
    rv = post(client, connected["id"], open_form(client, connected["id"]), mode="reply", to="", subject="")
    assert rv.status_code == 303
    request = json.loads(table(db, "outbox").get(1)["request"])
    assert request["reply"] is True and request["to"] == [] and request["subject"] is None


def test_a_mailbox_that_needs_reconnecting_cannot_send(client, db, connected):
    form = open_form(client, connected["id"])
    add_connection(db, connected["id"], 4, "alex@fabrikam.example")
    table(db, "connections").update(3, {"status": "reconnect_required"})
    rv = post(client, connected["id"], form)
    assert rv.status_code == 409 and "must be reconnected" in rv.get_data(as_text=True)
    assert table(db, "outbox").count == 0


def test_when_the_only_mailbox_broke_meanwhile_the_page_says_so(client, db, connected):
    form = open_form(client, connected["id"])
    table(db, "connections").update(3, {"status": "reconnect_required", "status_reason": "invalid_grant"})
    html = post(client, connected["id"], form).get_data(as_text=True)
    assert "must be reconnected" in html and "Reconnect Outlook" in html and 'role="alert"' in html
    assert table(db, "outbox").count == 0


def test_with_several_mailboxes_on_the_record_a_person_sends_only_from_their_own(client, db, connected):
    add_connection(db, connected["id"], 4, "lee@contoso.example")  # a colleague's mailbox on the same record
    html = client.get(f"/records/{connected['id']}").get_data(as_text=True)
    assert "lee@contoso.example" in html, "every mailbox of the record is shown"
    assert '<option value="4"' not in html and 'name="connection_id" value="3"' in html
    form = {**open_form_without_connection(client, connected["id"]), "connection_id": "4"}
    rv = post(client, connected["id"], form)
    assert rv.status_code == 422 and "your own mailbox" in rv.get_data(as_text=True)
    assert table(db, "outbox").count == 0


def open_form_without_connection(client, record_id):
    html = client.get(f"/records/{record_id}").get_data(as_text=True)
    return {"csrf_token": hidden(html, "csrf_token"), "idempotency_key": hidden(html, "idempotency_key")}


def test_form_fields_map_to_the_api_request():
    assert send_request_from_form({"connection_id": "7", "mode": "reply", "to": "a@x.example,\nb@x.example;",
                                   "cc": "", "subject": "  ", "body": "Hi"}) == {
        "connection_id": 7, "to": ["a@x.example", "b@x.example"], "cc": [], "subject": None, "body": "Hi",
        "body_type": "text", "reply": True}
    for bad in ("x", "²", "1" * 40, ""):
        assert send_request_from_form({"connection_id": bad})["connection_id"] is None


def test_an_unknown_record_is_404(client):
    assert client.get("/records/999").status_code == 404
    assert client.post("/records/999/compose", data={}).status_code == 404


def test_a_browser_gets_a_styled_page_for_a_missing_record_and_an_api_client_json(client, api):
    page = client.get("/records/999", headers={"Accept": "text/html"})
    assert page.status_code == 404 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "<h1>Page not found</h1>" in html and "Record 999 does not exist." in html and "/static/app.css" in html
    assert client.get("/nowhere", headers={"Accept": "application/json"}).get_json()["error"]["code"] == "not_found"
    refused = client.put("/records/999", headers={"Accept": "text/html"})
    assert refused.status_code == 405 and refused.headers["Allow"] and "app.css" in refused.get_data(as_text=True)


# -- Disconnect ---------------------------------------------------------------------------------------

def disconnect_form(client, record_id) -> tuple[str, str]:
    """The Disconnect form on the record page: its action and CSRF token."""
    html = client.get(f"/records/{record_id}").get_data(as_text=True)
    [action] = re.findall(r'action="([^"]*/disconnect)"', html)
    return action, hidden(html, "csrf_token")


def test_a_person_disconnects_their_own_mailbox_from_the_record_page(client, db, connected):
    table(db, "connections").update(3, {"token_cache": b"encrypted"})
    action, token = disconnect_form(client, connected["id"])
    assert action == f"/records/{connected['id']}/connections/3/disconnect"
    rv = client.post(action, data={"csrf_token": token})
    assert rv.status_code == 303 and rv.headers["Location"].endswith(f"/records/{connected['id']}#mailbox")
    row = table(db, "connections").get(3)
    assert (row["status"], row["token_cache"]) == ("disconnected", None)
    page = client.get(rv.headers["Location"]).get_data(as_text=True)
    assert "megan@contoso.example is disconnected" in page and "/disconnect" not in page
    assert "Connect Outlook" in page


def test_disconnect_without_the_csrf_token_is_refused(client, db, connected):
    action, _ = disconnect_form(client, connected["id"])
    for data in ({}, {"csrf_token": "forged"}):
        rv = client.post(action, data=data)
        assert rv.status_code == 400 and "still connected" in rv.get_data(as_text=True)
    assert table(db, "connections").get(3)["status"] == "active"


def test_only_the_owner_is_offered_disconnect_and_another_persons_mailbox_cannot_be_disconnected(
        client, db, connected):
    add_connection(db, connected["id"], 4, "adele@contoso.example")  # a colleague's mailbox on the same record
    html = client.get(f"/records/{connected['id']}").get_data(as_text=True)
    assert "adele@contoso.example" in html and "/connections/4/disconnect" not in html
    _, token = disconnect_form(client, connected["id"])
    rv = client.post(f"/records/{connected['id']}/connections/4/disconnect", data={"csrf_token": token})
    assert rv.status_code == 403
    assert client.post(f"/records/{connected['id']}/connections/99/disconnect",
                       data={"csrf_token": token}).status_code == 404
    assert table(db, "connections").get(4)["status"] == "active"


def test_disconnect_needs_a_signed_in_person(client, connected):
    client.post("/logout", data={"csrf_token": hidden(client.get(f"/records/{connected['id']}").text, "csrf_token")})
    rv = client.post(f"/records/{connected['id']}/connections/3/disconnect")
    assert rv.status_code == 302 and "/login" in rv.headers["Location"]
