"""Isolation between organizations in the domain layer: rules 1 to 4 of ARCHITECTURE section 4.

Two customers both hold the same vendor email on one of their records. A mailbox's mail links only
to records of the mailbox's organization, a mailbox of one customer's tenant cannot be connected
from another customer's record, a send uses only a connection of the record's organization (and a
person's only their own), and a person opens only their organization's records.
"""

from __future__ import annotations

import pytest

from app.core.errors import Forbidden, Invalid
from app.microsoft.identity import SignIn
from app.records import organizations, threads
from app.records.connections import save_connection
from app.records.linking import link_graph_message, load_connection
from app.records.outbox import queue_send
from app.records.records import create_record, record_for_tenant
from app.web.context import services_of
from tests.fake_graph import NOW, graph_message
from tests.tables import table

pytestmark = pytest.mark.both_engines

CONTOSO = "7d6f3c1e-0b8a-4f43-9a57-1d2c3b4a5e6f"
FABRIKAM = "2e9b1d7a-5c3f-4e8d-b6a1-0f9e8d7c6b5a"
SHARED = "<quote-77@vendor.example>"  # the vendor sent the same email to both customers
EMAIL = (f"Message-ID: {SHARED}\r\nFrom: Dana <dana@vendor.example>\r\nTo: buyers@example.com\r\n"
         "Subject: Quote 77\r\nDate: Tue, 10 Nov 2026 09:00:00 +0000\r\n\r\nOur quote.\r\n").encode()


@pytest.fixture
def world(app, db):
    """Contoso (its own organization) and Fabrikam (the default one), each with a record holding the email."""
    contoso = organizations.create(db, "Contoso", [CONTOSO])["id"]
    records = {"contoso": create_record(db, "Contoso vendor file", organization_id=contoso)["id"],
               "fabrikam": create_record(db, "Fabrikam vendor file")["id"]}
    for record_id in records.values():
        threads.store_upload(db, record_id, EMAIL)
    services = services_of(app)

    def connect(tenant: str, email: str, record: str) -> dict:
        sign_in = SignIn(tenant, f"user-{email}", email, email, "Mail.ReadWrite", "{}")
        return load_connection(db, save_connection(db, services.cipher, sign_in, records[record], services.queue))

    return {"records": records, "megan": connect(CONTOSO, "megan@contoso.example", "contoso"),
            "alex": connect(FABRIKAM, "alex@fabrikam.example", "fabrikam"), "connect": connect}


def reply(graph_id: str, message_id: str) -> dict:
    return graph_message(graph_id, message_id, received=NOW, in_reply_to=SHARED, subject="RE: Quote 77")


def test_a_reply_citing_a_message_id_both_customers_know_links_only_to_the_mailbox_s_own(db, world):
    records = world["records"]
    assert link_graph_message(db, world["megan"], reply("g-1", "<re-1@vendor.example>")) == [records["contoso"]]
    assert link_graph_message(db, world["alex"], reply("g-2", "<re-2@vendor.example>")) == [records["fabrikam"]]
    linked = {row["internet_message_id"]: row["record_id"] for row in db.query(
        "SELECT internet_message_id, record_id FROM messages WHERE source = 'graph'")}
    assert linked == {"<re-1@vendor.example>": records["contoso"], "<re-2@vendor.example>": records["fabrikam"]}


def test_the_same_message_in_both_customers_mailboxes_is_each_one_s_own_copy(db, world):
    records = world["records"]
    for connection in (world["megan"], world["alex"]):
        link_graph_message(db, connection, reply(f"copy-{connection['id']}", "<re-both@vendor.example>"))
    copies = {(row["record_id"], row["connection_id"]) for row in db.query(
        "SELECT m.record_id, c.connection_id FROM message_copies c JOIN messages m ON m.id = c.message_id")}
    assert copies == {(records["contoso"], world["megan"]["id"]), (records["fabrikam"], world["alex"]["id"])}


def test_a_mailbox_of_another_organization_s_tenant_cannot_be_connected_and_nothing_is_stored(db, world):
    before = db.execute("SELECT (SELECT count(*) FROM connections), (SELECT count(*) FROM jobs), "
                        "(SELECT count(*) FROM record_connections)").fetchone()
    with pytest.raises(Forbidden):
        world["connect"](FABRIKAM, "admin@fabrikam.example", "contoso")
    after = db.execute("SELECT (SELECT count(*) FROM connections), (SELECT count(*) FROM jobs), "
                       "(SELECT count(*) FROM record_connections)").fetchone()
    assert tuple(after) == tuple(before)


def send_as(connection: dict) -> dict:
    return {"connection_id": connection["id"], "to": ["dana@vendor.example"], "cc": [], "subject": "Quote 77",
            "body": "Thanks", "body_type": "text", "reply": False, "automated": False}


def test_a_send_uses_only_a_connection_of_the_record_s_organization(app, db, world):
    queue = services_of(app).queue
    with pytest.raises(Forbidden) as refused:
        queue_send(db, queue, world["records"]["fabrikam"], send_as(world["megan"]), "cross")
    assert refused.value.code == "connection_not_allowed"
    assert table(db, "outbox").count == 0
    assert queue_send(db, queue, world["records"]["contoso"], send_as(world["megan"]), "own")["created"]


def test_a_person_sends_only_from_their_own_mailbox_on_the_record(app, db, world):
    queue, record = services_of(app).queue, world["records"]["contoso"]
    colleague = world["connect"](CONTOSO, "lee@contoso.example", "contoso")
    megan = (CONTOSO, "user-megan@contoso.example")
    with pytest.raises(Invalid) as refused:
        queue_send(db, queue, record, send_as(colleague), "as-lee", sender=megan)
    assert refused.value.field == "connection_id" and table(db, "outbox").count == 0
    assert queue_send(db, queue, record, send_as(world["megan"]), "as-megan", sender=megan)["created"]


def test_a_person_opens_only_records_of_their_organization(db, world):
    records = world["records"]
    assert record_for_tenant(db, records["contoso"], CONTOSO)["id"] == records["contoso"]
    with pytest.raises(Forbidden):
        record_for_tenant(db, records["fabrikam"], CONTOSO)
    with pytest.raises(Forbidden):
        record_for_tenant(db, records["contoso"], FABRIKAM)
