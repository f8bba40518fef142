"""The message handler against a fake Graph: one ``$batch`` per mailbox, linking replies, each job's outcome."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.microsoft.graph import MESSAGE_SELECT
from app.records import threads
from app.records.connections import mark_disconnected, mark_reconnect_required
from app.records.linking import link_graph_message, load_connection
from handlers.errors import Deferred, PermanentError
from handlers.message import handle_messages
from tests.fake_graph import FIRST_ID, NOW, connection, graph, graph_message, job, record, services  # noqa: F401  (fixtures)
from tests.tables import table

pytestmark = pytest.mark.both_engines


def reply(graph_id: str, number: int = 1) -> dict:
    """A vendor's reply to the record's first email."""
    return graph_message(graph_id, f"<re{number}-po-4711@acme.example>", received=NOW - timedelta(minutes=number),
                         in_reply_to=FIRST_ID, subject="RE: Onboarding")


def unrelated(graph_id: str) -> dict:
    return graph_message(graph_id, "<lunch@contoso.example>", received=NOW, sender="lee@contoso.example",
                         subject="Lunch on Friday?", conversation_id="conv-lunch")


def changes(connection: int, *message_ids: str, change_type: str = "created") -> list:
    return [job("message", {"subscription_id": "sub-1", "message_id": message_id, "change_type": change_type},
                connection, job_id=number) for number, message_id in enumerate(message_ids, start=1)]


def test_the_jobs_of_one_mailbox_are_fetched_in_one_batch(services, graph, connection):
    for number in (1, 2, 3):
        graph.deliver(reply(f"AAMk-{number}", number))
    outcomes = handle_messages(services, changes(connection, "AAMk-1", "AAMk-2", "AAMk-3"))
    assert graph.calls_of("get_messages") == [(["AAMk-1", "AAMk-2", "AAMk-3"], MESSAGE_SELECT)]
    assert outcomes == {1: None, 2: None, 3: None}


def test_a_reply_citing_the_record_is_linked_to_it(services, graph, record, connection):
    graph.deliver(reply("AAMk-reply"))
    handle_messages(services, changes(connection, "AAMk-reply"))
    entry = threads.thread(services.db(), record)[-1]
    assert (entry["internet_message_id"], entry["source"], entry["direction"]) == (
        "<re1-po-4711@acme.example>", "graph", "inbound")


def test_an_unrelated_message_leaves_nothing_behind(services, graph, connection):
    graph.deliver(unrelated("AAMk-lunch"))
    assert handle_messages(services, changes(connection, "AAMk-lunch")) == {1: None}
    db = services.db()
    assert [row["internet_message_id"] for row in db.query("SELECT internet_message_id FROM messages")] == [FIRST_ID]
    assert table(db, "message_copies").count == 0


def test_a_message_gone_before_it_was_fetched_completes_its_job(services, graph, connection):
    assert handle_messages(services, changes(connection, "AAMk-gone")) == {1: None}


def test_a_throttled_item_defers_its_job_alone(services, graph, record, connection):
    graph.deliver(reply("AAMk-1", 1))
    graph.deliver(reply("AAMk-2", 2))
    graph.answer_next_batch("AAMk-2", 429, code="TooManyRequests", headers={"Retry-After": "7"})
    outcomes = handle_messages(services, changes(connection, "AAMk-1", "AAMk-2"))
    assert outcomes[1] is None
    assert isinstance(outcomes[2], Deferred) and outcomes[2].retry_after == 7.0
    assert [m["internet_message_id"] for m in threads.thread(services.db(), record)][1:] == [
        "<re1-po-4711@acme.example>"]


def test_a_deletion_marks_the_entry_deleted_without_asking_graph(services, graph, record, connection):
    linked = graph.deliver(reply("AAMk-reply"))
    assert link_graph_message(services.db(), load_connection(services.db(), connection), linked)
    assert handle_messages(services, changes(connection, "AAMk-reply", change_type="deleted")) == {1: None}
    assert threads.thread(services.db(), record)[-1]["deleted"] is True
    assert graph.calls == []


def test_changes_of_a_disconnected_mailbox_are_dropped_without_graph(services, graph, connection):
    mark_disconnected(services.db(), connection)
    assert handle_messages(services, changes(connection, "AAMk-1", "AAMk-2")) == {1: None, 2: None}
    assert graph.calls == []


def test_changes_of_a_mailbox_needing_reconnect_are_dead_lettered(services, graph, connection):
    mark_reconnect_required(services, connection, "invalid_grant (AADSTS70000)")
    outcomes = handle_messages(services, changes(connection, "AAMk-1", "AAMk-2"))
    assert all(isinstance(outcomes[n], PermanentError) and outcomes[n].reason == "reconnect_required" for n in (1, 2))
    assert graph.calls == []
