"""The delta reconcile against a fake Graph: a 30-day first sync, stored deltaLinks, removals, lost sync state."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.microsoft.failures import Throttled
from app.records import delta_state, threads
from app.records.connections import mark_reconnect_required
from handlers.errors import Deferred
from handlers.reconcile import handle_reconcile
from subscriptions.reconcile import FOLDERS, reconcile
from tests.fake_graph import FIRST_ID, MAILBOX, NOW, connection, graph, graph_message, job, record, services  # noqa: F401  (fixtures)
from tests.tables import table

pytestmark = pytest.mark.both_engines

THIRTY_DAYS_AGO = "2026-10-11T12:00:00Z"  # NOW less 30 days, as an OData literal




def reply(graph_id: str, hours_ago: float, number: int = 1) -> dict:
    """A vendor's reply to the record's first email, received ``hours_ago``."""
    return graph_message(graph_id, f"<re{number}-po-4711@acme.example>", received=NOW - timedelta(hours=hours_ago),
                         in_reply_to=FIRST_ID, subject="RE: Onboarding")


def stored_links(services, connection) -> dict[str, str | None]:
    return {folder: delta_state.load(services.db(), connection, folder)["delta_link"] for folder in FOLDERS}


def entries(services, record) -> list[str]:
    return [m["internet_message_id"] for m in threads.thread(services.db(), record)]


def test_the_first_sync_reads_30_days_of_each_folder_and_keeps_their_delta_links(services, graph, record, connection):
    graph.page_size = 1  # several pages: the deltaLink comes on the last
    graph.deliver(reply("AAMk-1", 2, 1))
    graph.deliver(reply("AAMk-2", 1, 2))
    assert reconcile(services, connection) == 2
    assert graph.calls_of("delta_pages") == [("inbox", None, THIRTY_DAYS_AGO), ("sentitems", None, THIRTY_DAYS_AGO)]
    links = stored_links(services, connection)
    assert all("$deltatoken=" in links[folder] and f"/mailFolders/{folder}/" in links[folder] for folder in FOLDERS)
    assert entries(services, record) == [FIRST_ID, "<re1-po-4711@acme.example>", "<re2-po-4711@acme.example>"]


def test_the_next_run_follows_the_stored_delta_links(services, graph, record, connection):
    reconcile(services, connection)
    links = stored_links(services, connection)
    graph.deliver(reply("AAMk-new", 0.5))
    assert reconcile(services, connection) == 1
    assert graph.calls_of("delta_pages")[2:] == [("inbox", links["inbox"], None),
                                                  ("sentitems", links["sentitems"], None)]
    assert entries(services, record)[-1] == "<re1-po-4711@acme.example>"


def test_a_removed_message_marks_its_entry_deleted(services, graph, record, connection):
    graph.deliver(reply("AAMk-1", 2))
    reconcile(services, connection)
    graph.remove("AAMk-1")
    reconcile(services, connection)
    assert threads.thread(services.db(), record)[-1]["deleted"] is True


def test_a_lost_sync_state_restarts_an_hour_before_the_newest_message_seen(services, graph, record, connection):
    graph.deliver(reply("AAMk-1", 5, 1))  # received 07:00
    reconcile(services, connection)
    graph.forget_delta_tokens()
    graph.deliver(reply("AAMk-2", 1, 2))
    reconcile(services, connection)
    inbox = [call for call in graph.calls_of("delta_pages") if call[0] == "inbox"]
    assert [(link is None, since) for _, link, since in inbox[1:]] == [(False, None), (True, "2026-11-10T06:00:00Z")]
    assert entries(services, record)[-1] == "<re2-po-4711@acme.example>"
    assert stored_links(services, connection)["inbox"] != inbox[1][1]


def test_an_unrelated_message_stores_nothing(services, graph, record, connection):
    graph.deliver(graph_message("AAMk-lunch", "<lunch@contoso.example>", received=NOW, sender="lee@contoso.example",
                                to=MAILBOX, subject="Lunch on Friday?", conversation_id="conv-lunch"))
    assert reconcile(services, connection) == 0
    assert entries(services, record) == [FIRST_ID]
    assert table(services.db(), "message_copies").count == 0


def test_a_mailbox_needing_reconnect_is_not_touched(services, graph, connection):
    mark_reconnect_required(services, connection, "invalid_grant (AADSTS70000)")
    assert reconcile(services, connection) == 0
    assert graph.calls == []


def test_a_throttled_reconcile_job_waits_as_graph_asked(services, graph, connection):
    graph.fail_next("delta_pages", Throttled(429, "TooManyRequests", "Rate limit hit", 20.0))
    with pytest.raises(Deferred) as raised:
        handle_reconcile(services, job("reconcile", {"connection_id": connection, "reason": "missed"}, connection))
    assert raised.value.retry_after == 20.0
    assert stored_links(services, connection) == {"inbox": None, "sentitems": None}


def test_a_message_the_delta_finds_keeps_its_attachments_described_in_one_more_batch(services, graph, record,
                                                                                     connection):
    from app.records import attachments
    from tests.fake_graph import file_attachment

    pdf = b"%PDF-1.4 signed contract"
    graph.deliver({**reply("AAMk-1", 2, 1), "hasAttachments": True,
                   "attachments": [file_attachment("att-1", "contract.pdf", pdf)]})
    graph.deliver(reply("AAMk-2", 1, 2))  # no attachments: never asked about
    assert reconcile(services, connection) == 2
    assert graph.calls_of("get_messages") == [(["AAMk-1"], "id")]
    entry = next(m for m in threads.thread(services.db(), record) if m["attachments"])
    assert [a["name"] for a in entry["attachments"]] == ["contract.pdf"]
    assert attachments.download(services.db(), record, entry["attachments"][0]["id"])[1] == pdf
