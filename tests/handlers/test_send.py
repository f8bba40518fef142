"""The send handler against a fake Graph: one draft carrying our Message-ID, sent once, its outcome visible."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.microsoft.failures import AuthExpired, GraphError, IdentityConfigError, ReconnectRequired, Throttled
from app.records import outbox, threads
from app.records.connections import mark_disconnected
from app.records.linking import link_graph_message, load_connection
from app.records.purge import purge_record
from handlers.errors import Deferred, PermanentError, RetryLater
from handlers.send import handle_send
from tests.fake_graph import FIRST_ID, NOW, VENDOR, connection, graph, graph_message, job, record, services  # noqa: F401  (fixtures)

pytestmark = pytest.mark.both_engines


def request_send(services, record, connection, *, reply=False, to=("ap@acme.example",), key="key-1") -> int:
    request = {"connection_id": connection, "to": list(to), "cc": [], "subject": None if reply else "Banking details",
               "body": "Please confirm.", "body_type": "text", "reply": reply, "automated": False}
    return outbox.queue_send(services.db(), services.queue, record, request, key)["id"]


def vendor_reply(graph_id: str, message_id: str, age: timedelta) -> dict:
    return graph_message(graph_id, message_id, received=NOW - age, in_reply_to=FIRST_ID, subject="RE: Onboarding")


def run(services, connection, outbox_id) -> None:
    handle_send(services, job("send", {"outbox_id": outbox_id}, connection))


def test_a_new_message_is_drafted_with_our_message_id_sent_once_and_put_on_the_record(services, graph, record,
                                                                                      connection):
    outbox_id = request_send(services, record, connection)
    run(services, connection, outbox_id)
    sent = outbox.entry(services.db(), outbox_id)
    assert sent["status"] == "sent"
    assert sent["internet_message_id"].startswith(f"<rec{record}.")
    [(draft,)] = graph.calls_of("create_draft")
    assert draft["internetMessageId"] == sent["internet_message_id"]
    assert [r["emailAddress"]["address"] for r in draft["toRecipients"]] == ["ap@acme.example"]
    [(draft_id,)] = graph.calls_of("send_draft")
    assert [m["id"] for m in graph.in_folder("sentitems")] == [draft_id]
    entry = threads.thread(services.db(), record)[-1]
    assert (entry["internet_message_id"], entry["direction"], entry["source"]) == (
        sent["internet_message_id"], "outbound", "sent")


def test_a_reply_answers_the_newest_copy_of_the_conversation_in_that_mailbox(services, graph, record, connection):
    newer = graph.deliver(vendor_reply("AAMk-newer", "<re2-po-4711@acme.example>", timedelta(hours=1)))
    older = graph.deliver(vendor_reply("AAMk-older", "<re1-po-4711@acme.example>", timedelta(days=2)))
    mailbox = load_connection(services.db(), connection)
    for message in (newer, older):  # linked newest first: the order of the rows is not the order of the mail
        assert link_graph_message(services.db(), mailbox, message)
    outbox_id = request_send(services, record, connection, reply=True, to=())
    run(services, connection, outbox_id)
    assert graph.calls_of("create_reply") == [("AAMk-newer",)]
    [(draft_id, changes)] = graph.calls_of("update_draft")
    assert changes["internetMessageId"] == outbox.entry(services.db(), outbox_id)["internet_message_id"]
    [sent] = graph.in_folder("sentitems")
    assert (sent["id"], sent["conversationId"]) == (draft_id, "conv-onboarding")
    assert [r["emailAddress"]["address"] for r in sent["toRecipients"]] == [VENDOR]


def test_a_retry_after_the_draft_was_stored_sends_that_draft_and_never_a_second(services, graph, record,
                                                                               connection):
    outbox_id = request_send(services, record, connection)
    graph.fail_next("send_draft", Throttled(503, "ServiceUnavailable", "Try again", None))
    with pytest.raises(RetryLater):
        run(services, connection, outbox_id)
    run(services, connection, outbox_id)
    [draft_id] = [m["id"] for m in graph.in_folder("sentitems")]
    assert len(graph.calls_of("create_draft")) == 1
    assert [draft for draft, _ in graph.calls_of("get_message")] == [draft_id]  # found by its stored id
    assert graph.calls_of("send_draft") == [(draft_id,), (draft_id,)]
    assert outbox.entry(services.db(), outbox_id)["status"] == "sent"


def test_a_draft_whose_creation_went_unanswered_is_found_by_our_message_id_and_sent(services, graph, record,
                                                                                    connection):
    outbox_id = request_send(services, record, connection)
    graph.fail_next("create_draft", Throttled(0, "network_error", "ReadTimeout", None), answer_lost=True)
    with pytest.raises(RetryLater):
        run(services, connection, outbox_id)
    run(services, connection, outbox_id)
    message_id = outbox.entry(services.db(), outbox_id)["internet_message_id"]
    assert len(graph.calls_of("create_draft")) == 1
    assert [sent["internetMessageId"] for sent in graph.in_folder("sentitems")] == [message_id]
    assert graph.in_folder("drafts") == []


@pytest.mark.parametrize("error, treated_as", [
    (Throttled(429, "TooManyRequests", "Rate limit hit", 30.0), Deferred),
    (Throttled(503, "ServiceUnavailable", "Try again", None), RetryLater),
])
def test_a_throttled_send_is_retried_and_says_so(services, graph, record, connection, error, treated_as):
    outbox_id = request_send(services, record, connection)
    graph.fail_next("send_draft", error)
    with pytest.raises(RetryLater) as raised:
        run(services, connection, outbox_id)
    assert type(raised.value) is treated_as
    assert raised.value.retry_after == error.retry_after
    row = outbox.entry(services.db(), outbox_id)
    assert row["status"] == "sending"
    assert row["error"] == f"retrying: {error}"


@pytest.mark.parametrize("error, reason", [
    (AuthExpired(401, "InvalidAuthenticationToken", "Access token validation failure."),
     "Access token validation failure."),
    (IdentityConfigError("invalid_client (AADSTS7000215)", "Invalid client secret provided."),
     "Invalid client secret provided."),
])
def test_a_failure_lasting_until_someone_acts_fails_the_send_at_once(services, graph, record, connection, error,
                                                                    reason):
    outbox_id = request_send(services, record, connection)
    graph.fail_next("create_draft", error)
    with pytest.raises(PermanentError):
        run(services, connection, outbox_id)
    row = outbox.entry(services.db(), outbox_id)
    assert (row["status"], row["error"]) == ("failed", reason)
    assert graph.calls_of("send_draft") == []


def test_a_revoked_grant_fails_the_send_and_asks_for_reconnect(services, graph, record, connection):
    outbox_id = request_send(services, record, connection)
    graph.fail_next("create_draft", ReconnectRequired("invalid_grant (AADSTS70000)"))
    run(services, connection, outbox_id)  # nothing to retry: no exception for the worker
    row = outbox.entry(services.db(), outbox_id)
    assert (row["status"], row["error"]) == ("failed", "reconnect_required: invalid_grant (AADSTS70000)")
    assert load_connection(services.db(), connection)["status"] == "reconnect_required"
    assert services.identity.forgotten == [connection]


def test_a_refused_send_deletes_our_draft_and_fails(services, graph, record, connection):
    outbox_id = request_send(services, record, connection)
    graph.fail_next("send_draft", GraphError(400, "ErrorInvalidRecipients", "At least one recipient is not valid."))
    with pytest.raises(PermanentError):
        run(services, connection, outbox_id)
    [(draft_id,)] = graph.calls_of("send_draft")
    assert graph.calls_of("delete_draft") == [(draft_id,)]
    assert draft_id not in graph.messages
    row = outbox.entry(services.db(), outbox_id)
    assert (row["status"], row["error"]) == ("failed", "At least one recipient is not valid.")


def test_a_send_from_a_mailbox_no_longer_connected_fails_without_touching_it(services, graph, record, connection):
    outbox_id = request_send(services, record, connection)
    mark_disconnected(services.db(), connection)
    run(services, connection, outbox_id)
    row = outbox.entry(services.db(), outbox_id)
    assert (row["status"], row["error"]) == ("failed", "disconnected: disconnected by the user")
    assert graph.calls == []


def test_a_failed_delete_of_the_refused_draft_keeps_the_send_s_own_failure(services, graph, record, connection):
    outbox_id = request_send(services, record, connection)
    graph.fail_next("send_draft", GraphError(400, "ErrorInvalidRecipients", "At least one recipient is not valid."))
    graph.fail_next("delete_draft", Throttled(429, "TooManyRequests", "Slow down.", 30.0))
    with pytest.raises(PermanentError):
        run(services, connection, outbox_id)
    row = outbox.entry(services.db(), outbox_id)
    assert (row["status"], row["error"]) == ("failed", "At least one recipient is not valid.")


def test_disconnecting_fails_the_mailbox_s_unsent_mail_at_once(services, graph, record, connection):
    outbox_id = request_send(services, record, connection)
    mark_disconnected(services.db(), connection)
    row = outbox.entry(services.db(), outbox_id)
    assert (row["status"], row["error"]) == ("failed", "disconnected: disconnected by the user")


def test_a_queued_send_of_a_purged_record_is_never_sent(services, graph, record, connection):
    outbox_id = request_send(services, record, connection)
    purge_record(services.db(), record)
    run(services, connection, outbox_id)
    assert not graph.calls_of("create_draft") and not graph.calls_of("send_draft")
