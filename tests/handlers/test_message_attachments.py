"""Attachments of linked messages: described in the message's own $batch, read only once it is linked,
each kind kept as Graph describes it, never for unrelated mail, and not read twice."""

from __future__ import annotations

import pytest

from app.microsoft.failures import Throttled
from app.records import attachments, threads
from app.records.linked_attachments import SMALL_BYTES
from handlers.errors import Deferred, RetryLater
from handlers.message import handle_messages
from tests.fake_graph import (  # noqa: F401  (fixtures)
    connection,
    file_attachment,
    graph,
    item_attachment,
    record,
    services,
)
from tests.handlers.test_message import changes, reply, unrelated
from tests.tables import table

pytestmark = pytest.mark.both_engines

PDF = b"%PDF-1.4 W-9 " + bytes(range(256)) * 4
LOGO = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def with_attachments(message: dict, *items: dict) -> dict:
    return {**message, "hasAttachments": True, "attachments": list(items)}


def kept(services, record_id: int) -> list[tuple]:
    """(name, inline, content_id, kept, skipped_reason, bytes) of the record's newest entry's attachments."""
    db = services.db()
    entry = threads.thread(db, record_id)[-1]
    return [(a["name"], a["inline"], a["content_id"], a["kept"], a["skipped_reason"],
             attachments.download(db, record_id, a["id"])[1] if a["kept"] else None) for a in entry["attachments"]]


def test_a_linked_replys_file_and_inline_image_are_kept_with_one_more_batch(services, graph, record, connection):
    graph.deliver(with_attachments(reply("AAMk-1"), file_attachment("att-pdf", "W-9.pdf", PDF),
                                   file_attachment("att-logo", "logo.png", LOGO, "image/png", inline=True,
                                                   content_id="logo@acme")))
    assert handle_messages(services, changes(connection, "AAMk-1")) == {1: None}
    assert kept(services, record) == [("W-9.pdf", False, None, True, None, PDF),
                                      ("logo.png", True, "logo@acme", True, None, LOGO)]
    assert graph.calls_of("get_attachments") == [([("AAMk-1", "att-pdf"), ("AAMk-1", "att-logo")],)]
    assert graph.calls_of("get_attachment_content") == []


def test_an_unrelated_messages_attachments_are_never_read_or_stored(services, graph, connection):
    graph.deliver(with_attachments(unrelated("AAMk-lunch"), file_attachment("att-menu", "menu.pdf", PDF)))
    assert handle_messages(services, changes(connection, "AAMk-lunch")) == {1: None}
    assert graph.calls_of("get_attachments") == [] and graph.calls_of("get_attachment_content") == []
    assert table(services.db(), "attachments").count == 0 and table(services.db(), "attachment_content").count == 0


def test_a_large_file_is_read_raw_and_one_over_the_limit_is_described_only(services, graph, record, connection):
    services.config["ATTACHMENT_MAX_BYTES"] = SMALL_BYTES + 200
    large, huge = b"L" * (SMALL_BYTES + 100), b"H" * (SMALL_BYTES + 300)
    graph.deliver(with_attachments(reply("AAMk-1"), file_attachment("att-large", "scan.tif", large, "image/tiff"),
                                   file_attachment("att-huge", "video.mp4", huge, "video/mp4"),
                                   item_attachment("att-item", "Fwd: contract")))
    assert handle_messages(services, changes(connection, "AAMk-1")) == {1: None}
    assert kept(services, record) == [("scan.tif", False, None, True, None, large),
                                      ("video.mp4", False, None, False, "too_large", None),
                                      ("Fwd: contract", False, None, False, "item", None)]
    assert graph.calls_of("get_attachment_content") == [("AAMk-1", "att-large")]
    assert graph.calls_of("get_attachments") == []


def test_an_update_of_a_linked_message_does_not_read_its_attachments_again(services, graph, record, connection):
    graph.deliver(with_attachments(reply("AAMk-1"), file_attachment("att-pdf", "W-9.pdf", PDF)))
    handle_messages(services, changes(connection, "AAMk-1"))
    handle_messages(services, changes(connection, "AAMk-1", change_type="updated"))
    assert len(graph.calls_of("get_attachments")) == 1
    assert kept(services, record) == [("W-9.pdf", False, None, True, None, PDF)]


def test_an_attachment_that_cannot_be_read_now_retries_the_job_and_is_kept_next_time(services, graph, record,
                                                                                      connection):
    graph.deliver(with_attachments(reply("AAMk-1"), file_attachment("att-pdf", "W-9.pdf", PDF)))
    graph.fail_next("get_attachments", Throttled(429, "TooManyRequests", "slow down", 5.0))
    outcome = handle_messages(services, changes(connection, "AAMk-1"))[1]
    assert isinstance(outcome, (Deferred, RetryLater))
    assert threads.thread(services.db(), record)[-1]["internet_message_id"] == "<re1-po-4711@acme.example>"
    assert handle_messages(services, changes(connection, "AAMk-1")) == {1: None}
    assert kept(services, record) == [("W-9.pdf", False, None, True, None, PDF)]


def test_an_attachment_gone_from_the_mailbox_is_listed_as_unavailable(services, graph, record, connection):
    graph.deliver(with_attachments(reply("AAMk-1"), file_attachment("att-pdf", "W-9.pdf", PDF)))
    graph.answer_next_batch("att-pdf", 404)
    assert handle_messages(services, changes(connection, "AAMk-1")) == {1: None}
    assert kept(services, record) == [("W-9.pdf", False, None, False, "unavailable", None)]
