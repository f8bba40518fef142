"""Connect Outlook needs the person's click: a bare link shows a page naming the record with one form.

A link to ``/connect/outlook?record_id=N`` used to redirect straight to Entra, and a person who had
consented before came straight back connected: one click on an attacker's link tied their mailbox
to the attacker's record. Now only the form's POST, carrying the session's CSRF token, starts a
sign-in, and Entra is asked to show its account picker (``prompt=select_account``).
"""

from __future__ import annotations

import pytest

from app.core.timeutil import now_iso
from tests.forms import sign_in_person
from tests.tables import table

pytestmark = pytest.mark.both_engines


@pytest.fixture
def record(api):
    return api.create_record("Acme <vendor> file")


@pytest.fixture(autouse=True)
def signed_in(client):
    sign_in_person(client)


def test_a_bare_link_shows_the_record_and_one_form_and_starts_nothing(client, record):
    rv = client.get(f"/connect/outlook?record_id={record['id']}")
    html = rv.get_data(as_text=True)
    assert rv.status_code == 200 and "Location" not in rv.headers
    assert "Connect Outlook to “Acme &lt;vendor&gt; file”" in html
    assert html.count('<form method="post" action="/connect/outlook"') == 1  # beside the header's sign-out form
    with client.session_transaction() as session:
        assert "sign_in_flow" not in session, "no sign-in was started"


def test_a_post_without_the_session_s_token_starts_nothing(client, record):
    rv = client.post("/connect/outlook", data={"record_id": record["id"], "csrf_token": "forged"})
    assert rv.status_code == 400 and "Location" not in rv.headers
    assert "This form had expired" in rv.get_data(as_text=True)
    with client.session_transaction() as session:
        assert "sign_in_flow" not in session


@pytest.mark.parametrize("query, status", [("", 400), ("?record_id=abc", 400), ("?record_id=999", 404)])
def test_without_an_existing_record_a_browser_gets_a_page(client, record, query, status):
    rv = client.get(f"/connect/outlook{query}", headers={"Accept": "text/html"})
    assert rv.status_code == status and rv.mimetype == "text/html"
    assert "Connect Outlook needs a record" in rv.get_data(as_text=True)


def test_the_record_page_names_every_mailbox_and_each_one_needing_reconnect_in_plain_words(client, db, record):
    now = now_iso()
    table(db, "tenants").insert({"id": "t1", "created_at": now, "updated_at": now})
    for connection_id, email, status, reason in [(3, "megan@contoso.example", "active", None),
                                                 (4, "lee@contoso.example", "reconnect_required",
                                                  "invalid_grant (AADSTS50173)")]:
        table(db, "connections").insert({"id": connection_id, "tenant_id": "t1", "user_id": f"u{connection_id}",
                                  "email": email, "display_name": email.split("@")[0].title(), "status": status,
                                  "status_reason": reason, "created_at": now, "updated_at": now})
        table(db, "record_connections").insert({"record_id": record["id"], "connection_id": connection_id, "created_at": now})
    html = client.get(f"/records/{record['id']}").get_data(as_text=True)
    assert "Connected</span> as Megan &lt;megan@contoso.example&gt;" in html
    assert "Reconnect required</span> Lee &lt;lee@contoso.example&gt;: Microsoft no longer accepts its sign-in" in html
    assert "Detail: invalid_grant (AADSTS50173)" in html
    assert 'name="body"' in html, "the working mailbox still sends"
    assert "Reconnect Outlook" not in html and "Connect another mailbox" in html, "Megan's own mailbox works"
    sign_in_person(client, user_id="u4", email="lee@contoso.example", name="Lee")
    html = client.get(f"/records/{record['id']}").get_data(as_text=True)
    assert "Reconnect Outlook" in html and 'name="body"' not in html, "Lee reconnects before he can send"
