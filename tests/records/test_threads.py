"""Thread keys and linking in SQLite: matching over real tables, idempotent links, deletion marks."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from app.core.db import open_db
from app.records.matching import CandidateMessage, KnownId, Match, match_record
from app.records.organizations import DEFAULT_ID
from app.records.threads import (
    Link,
    StoredThreadKeys,
    add_message_id,
    link_message,
    link_messages,
    mark_deleted,
    message_direction,
)
from tests.tables import table, table_names

pytestmark = pytest.mark.both_engines

MAILBOX = "Dana.Buyer@contoso.example"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
STAMP = "2024-05-01T12:00:00.000000+00:00"


@pytest.fixture
def db(db_path):
    db = open_db(db_path)
    table(db, "tenants").insert({"id": "t1", "created_at": STAMP, "updated_at": STAMP})
    for connection_id in (1, 2):
        table(db, "connections").insert({"id": connection_id, "tenant_id": "t1", "user_id": f"u{connection_id}",
                                         "created_at": STAMP, "updated_at": STAMP})
    for record_id in (10, 20):
        table(db, "records").insert({"id": record_id, "title": f"Record {record_id}", "created_at": STAMP})
    yield db
    db.close()


def records_knowing(keys: StoredThreadKeys, *ids: str) -> set[int]:
    return {known.record_id for known in keys.known_ids(ids)}


def graph_message(graph_id="AAMk-1", message_id="<reply-1@vendor.example>", **overrides) -> dict:
    message = {
        "id": graph_id,
        "internetMessageId": message_id,
        "conversationId": "CONV-1",
        "changeKey": "CQAAABYAAAD1",
        "isDraft": False,
        "subject": "RE: Purchase order 4711",
        "from": {"emailAddress": {"name": "Vera Vendor", "address": "vera@vendor.example"}},
        "toRecipients": [{"emailAddress": {"name": "Dana Buyer", "address": MAILBOX}}],
        "ccRecipients": [{"emailAddress": {"name": "", "address": "ap@contoso.example"}}, {"emailAddress": {}}],
        "sentDateTime": "2024-04-30T09:15:00Z",
        "receivedDateTime": "2024-04-30T09:15:02Z",
        "body": {"contentType": "HTML", "content": "<p>Confirmed, ships Friday.</p>"},
        "bodyPreview": "Confirmed, ships Friday.",
        "internetMessageHeaders": [
            {"name": "In-Reply-To", "value": "<po-4711@contoso.example>"},
            {"name": "References", "value": "<po-4711@contoso.example>"},
        ],
    }
    return {**message, **overrides}


def copy_of(db, connection_id=1, graph_id="AAMk-1") -> dict:
    [row] = table(db, "message_copies").rows_where("connection_id = ? AND graph_id = ?", [connection_id, graph_id])
    return row


def link(db, message=None, record_id=10, connection_id=1, **options) -> int:
    options = {"mailbox_address": MAILBOX, "reason": "references", "now": NOW, **options}
    return link_message(db, record_id, connection_id, message or graph_message(), **options)


def test_link_stores_the_message_its_copy_and_thread_keys(db):
    entry = link(db)
    row = table(db, "messages").get(entry)
    assert {k: row[k] for k in ("record_id", "internet_message_id", "subject", "from_address", "from_name",
                                "sent_at", "direction", "source", "in_reply_to", "body_type", "body",
                                "body_preview", "deleted_at", "created_at")} == {
        "record_id": 10, "internet_message_id": "<reply-1@vendor.example>", "subject": "RE: Purchase order 4711",
        "from_address": "vera@vendor.example", "from_name": "Vera Vendor",
        "sent_at": "2024-04-30T09:15:00.000000+00:00", "direction": "inbound", "source": "graph",
        "in_reply_to": "<po-4711@contoso.example>", "body_type": "html", "body": "<p>Confirmed, ships Friday.</p>",
        "body_preview": "Confirmed, ships Friday.", "deleted_at": None, "created_at": STAMP,
    }
    assert json.loads(row["to_addresses"]) == [{"name": "Dana Buyer", "address": MAILBOX}]
    assert json.loads(row["cc_addresses"]) == [{"name": "", "address": "ap@contoso.example"}]
    assert json.loads(row["references_ids"]) == ["<po-4711@contoso.example>"]
    copy = copy_of(db)
    assert (copy["message_id"], copy["conversation_id"], copy["change_key"]) == (entry, "CONV-1", "CQAAABYAAAD1")
    assert copy["received_at"] == "2024-04-30T09:15:02.000000+00:00"
    keys = StoredThreadKeys(db, DEFAULT_ID)
    assert records_knowing(keys, "<reply-1@vendor.example>") == {10}
    assert keys.records_for_conversation(1, "CONV-1") == {10}
    assert keys.records_for_conversation(2, "CONV-1") == set()


def test_linking_twice_keeps_one_row_and_refreshes_it(db):
    first = link(db)
    later = datetime(2024, 5, 2, tzinfo=timezone.utc)
    edited = graph_message(subject="RE: Purchase order 4711 (updated)", changeKey="CQAAABYAAAD2",
                           body={"contentType": "text", "content": "Ships Monday."}, bodyPreview="Ships Monday.")
    assert link(db, edited, now=later) == first
    assert table(db, "messages").count == table(db, "message_copies").count == 1
    assert table(db, "thread_message_ids").count == table(db, "thread_conversations").count == 1
    row = table(db, "messages").get(first)
    assert (row["subject"], row["body"], row["body_type"]) == ("RE: Purchase order 4711 (updated)",
                                                              "Ships Monday.", "text")
    assert (row["created_at"], row["updated_at"]) == (STAMP, "2024-05-02T00:00:00.000000+00:00")
    assert copy_of(db)["change_key"] == "CQAAABYAAAD2"


def test_a_refresh_keeps_how_the_message_joined(db):
    first = link(db, source="upload")
    assert link(db, source="graph", mailbox_address="someone@else.example") == first
    assert (table(db, "messages").get(first)["source"], table(db, "messages").get(first)["direction"]) == ("upload", "inbound")


def test_direction_follows_the_sender(db):
    outgoing = graph_message(**{"from": {"emailAddress": {"address": MAILBOX.upper()}}})
    assert message_direction(outgoing, MAILBOX) == "outbound"
    assert message_direction(graph_message(), MAILBOX) == "inbound"
    assert message_direction({"from": None}, MAILBOX) == "inbound"
    assert table(db, "messages").get(link(db, outgoing))["direction"] == "outbound"


def test_generated_ids_are_recorded_and_never_downgraded(db):
    add_message_id(db, 20, "<minted@svc>", generated=True)
    add_message_id(db, 20, "<minted@svc>")
    keys = StoredThreadKeys(db, DEFAULT_ID)
    assert keys.known_ids(["<minted@svc>"]) == [KnownId("<minted@svc>", 20, True)]
    link(db, graph_message(message_id="<minted@svc>"), record_id=20)
    assert keys.known_ids(["<minted@svc>"]) == [KnownId("<minted@svc>", 20, True)]


def test_matching_over_sqlite_follows_the_rules(db):
    keys = StoredThreadKeys(db, DEFAULT_ID)
    add_message_id(db, 10, "<po-4711@contoso.example>")
    reply = CandidateMessage.from_graph(graph_message(), 1)
    assert match_record(keys, reply) == Match((10,), "references")
    link(db, graph_message())
    same_conversation = CandidateMessage.from_graph(
        graph_message("AAMk-2", "<reply-2@vendor.example>", internetMessageHeaders=[]), 1)
    assert match_record(keys, same_conversation) == Match((10,), "conversation")
    other_mailbox = CandidateMessage.from_graph(
        graph_message("AAMk-3", "<reply-3@vendor.example>", internetMessageHeaders=[]), 2)
    assert match_record(keys, other_mailbox) is None


def test_an_unrelated_message_stores_nothing(db):
    add_message_id(db, 10, "<po-4711@contoso.example>")
    before = {name: table(db, name).count for name in table_names(db)}
    unrelated = graph_message("AAMk-9", "<newsletter@spam.example>", conversationId="CONV-9",
                              internetMessageHeaders=[{"name": "References", "value": "<other@spam.example>"}])
    assert match_record(StoredThreadKeys(db, DEFAULT_ID), CandidateMessage.from_graph(unrelated, 1)) is None
    assert {name: table(db, name).count for name in table_names(db)} == before


def test_deletion_marks_but_keeps_history(db):
    entry = link(db)
    assert mark_deleted(db, 1, "AAMk-1", now=NOW)
    row = table(db, "messages").get(entry)
    assert (row["deleted_at"], row["subject"], row["body"]) == (STAMP, "RE: Purchase order 4711",
                                                               "<p>Confirmed, ships Friday.</p>")
    assert copy_of(db)["deleted_at"] == STAMP
    assert records_knowing(StoredThreadKeys(db, DEFAULT_ID), "<reply-1@vendor.example>") == {10}
    assert mark_deleted(db, 1, "AAMk-1")  # a repeated notification changes nothing
    assert table(db, "messages").get(entry)["deleted_at"] == STAMP


def test_the_entry_is_deleted_only_when_no_live_copy_remains(db):
    entry = link(db, connection_id=1)
    assert link(db, graph_message("AAMk-other-mailbox"), connection_id=2) == entry
    mark_deleted(db, 1, "AAMk-1", now=NOW)
    assert table(db, "messages").get(entry)["deleted_at"] is None
    mark_deleted(db, 2, "AAMk-other-mailbox", now=NOW)
    assert table(db, "messages").get(entry)["deleted_at"] == STAMP


def test_relinking_a_deleted_message_revives_it(db):
    entry = link(db)
    mark_deleted(db, 1, "AAMk-1", now=NOW)
    link(db)
    assert table(db, "messages").get(entry)["deleted_at"] is None
    assert copy_of(db)["deleted_at"] is None


def test_deleting_an_unknown_message_does_nothing(db):
    assert not mark_deleted(db, 1, "AAMk-never-linked")
    assert table(db, "messages").count == 0


def test_one_message_in_two_records(db):
    ten, twenty = link(db, record_id=10), link(db, record_id=20)
    assert ten != twenty
    keys = StoredThreadKeys(db, DEFAULT_ID)
    assert records_knowing(keys, "<reply-1@vendor.example>") == {10, 20}
    assert keys.records_for_conversation(1, "CONV-1") == {10, 20}
    assert mark_deleted(db, 1, "AAMk-1", now=NOW)
    assert [table(db, "messages").get(entry)["deleted_at"] for entry in (ten, twenty)] == [STAMP, STAMP]


def test_a_message_without_ids_cannot_be_linked(db):
    with pytest.raises(ValueError, match="internetMessageId"):
        link(db, graph_message(message_id=None))
    assert table(db, "messages").count == 0


def test_bad_or_missing_dates_are_stored_as_null(db):
    entry = link(db, graph_message(sentDateTime="yesterday", receivedDateTime=None))
    assert table(db, "messages").get(entry)["sent_at"] is None


def test_a_batch_links_every_message_and_copy_in_one_go(db):
    first, second = graph_message("AAMk-1", "<r1@v>"), graph_message("AAMk-2", "<r2@v>", conversationId="CONV-2")
    other_folder_copy = graph_message("AAMk-3", "<r1@v>", subject="RE: Purchase order 4711 (moved)")
    links = [Link(10, first, "references"), Link(20, first, "references"), Link(10, second, "conversation"),
             Link(10, other_folder_copy, "known_message_id")]
    entries = link_messages(db, 1, links, mailbox_address=MAILBOX, now=NOW)
    assert entries[0] == entries[3] and len(set(entries)) == 3
    assert table(db, "messages").get(entries[3])["subject"] == "RE: Purchase order 4711 (moved)"
    assert {(row["graph_id"], row["message_id"]) for row in table(db, "message_copies").rows} == {
        ("AAMk-1", entries[0]), ("AAMk-1", entries[1]), ("AAMk-2", entries[2]), ("AAMk-3", entries[0])}
    keys = StoredThreadKeys(db, DEFAULT_ID)
    assert (records_knowing(keys, "<r1@v>"), records_knowing(keys, "<r2@v>")) == ({10, 20}, {10})
    assert (keys.records_for_conversation(1, "CONV-1"), keys.records_for_conversation(1, "CONV-2")) == (
        {10, 20}, {10})
    assert link_messages(db, 1, links, mailbox_address=MAILBOX, now=NOW) == entries
    assert (table(db, "messages").count, table(db, "message_copies").count) == (3, 4)


def test_a_batch_with_one_unlinkable_message_stores_none_of_it(db):
    links = [Link(10, graph_message("AAMk-1", "<r1@v>"), "references"),
             Link(10, graph_message("AAMk-2", None), "references")]
    with pytest.raises(ValueError, match="internetMessageId"):
        link_messages(db, 1, links, mailbox_address=MAILBOX, now=NOW)
    assert table(db, "messages").count == table(db, "message_copies").count == 0
    assert link_messages(db, 1, [], mailbox_address=MAILBOX) == []
