"""The threading rules of app.records.matching as a pure function, over thread keys held in plain dicts."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from app.records.matching import CandidateMessage, KnownId, Match, header_values, match_messages, match_record


class DictKeys:
    """Thread keys in memory: Message-ID → records, generated ids, (mailbox, conversation) → records."""

    def __init__(self, ids=None, generated=None, conversations=None) -> None:
        self.ids: dict[str, set[int]] = ids or {}
        self.generated: dict[str, int] = generated or {}
        self.conversations: dict[tuple[int, str], set[int]] = conversations or {}

    def known_ids(self, ids: Iterable[str]) -> list[KnownId]:
        return [KnownId(i, record, self.generated.get(i) == record)
                for i in dict.fromkeys(ids) for record in sorted(self.ids.get(i, set()) | (
                    {self.generated[i]} if i in self.generated else set()))]

    def records_for_conversation(self, connection_id: int, conversation_id: str) -> set[int]:
        return self.conversations.get((connection_id, conversation_id), set())


def graph_message(message_id="<reply@vendor.example>", conversation="CONV-1", draft=False, **headers) -> dict:
    names = {"in_reply_to": "In-Reply-To", "references": "References"}
    return {
        "id": "AAMkAGI2-immutable",
        "internetMessageId": message_id,
        "conversationId": conversation,
        "isDraft": draft,
        "internetMessageHeaders": [{"name": names.get(k, k), "value": v} for k, v in headers.items()],
    }


def candidate(connection_id=1, **kwargs) -> CandidateMessage:
    return CandidateMessage.from_graph(graph_message(**kwargs), connection_id)


# Parsing a Graph message.

def test_from_graph_reads_ids_and_threading_headers():
    message = candidate(in_reply_to="<a@x>", references="<root@x> <a@x>")
    assert message == CandidateMessage(
        connection_id=1, graph_id="AAMkAGI2-immutable", internet_message_id="<reply@vendor.example>",
        conversation_id="CONV-1", is_draft=False, in_reply_to="<a@x>", references=("<root@x>", "<a@x>"),
    )
    assert message.parent_ids == ["<a@x>", "<root@x>"]


def test_missing_headers_and_fields_are_empty():
    message = CandidateMessage.from_graph({"id": "g1"}, 3)
    assert (message.internet_message_id, message.conversation_id, message.is_draft) == (None, None, False)
    assert (message.in_reply_to, message.references, message.parent_ids) == (None, (), [])
    assert CandidateMessage.from_graph({"internetMessageHeaders": None}, 3).references == ()


def test_header_names_are_case_insensitive():
    message = CandidateMessage.from_graph(
        {"internetMessageHeaders": [{"name": "IN-REPLY-TO", "value": "<a@x>"},
                                    {"name": "references", "value": "<r@x>"}]}, 1)
    assert (message.in_reply_to, message.references) == ("<a@x>", ("<r@x>",))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<a@x>\r\n <b@x>\r\n\t<c@x>", ("<a@x>", "<b@x>", "<c@x>")),  # folded
        ("<a@x><b@x>", ("<a@x>", "<b@x>")),  # no separator
        ("<a@x> (comment) <b@x>,<c@x>", ("<a@x>", "<b@x>", "<c@x>")),
        ("<a@x> <b@x> <a@x>", ("<a@x>", "<b@x>")),  # repeated
        ("  <long-id-\r\n continued@x>  ", ("<long-id-continued@x>",)),  # folded inside an id
        ("a@x b@x", ("<a@x>", "<b@x>")),  # brackets left out
        ("<>", ()),
        ("", ()),
    ],
)
def test_references_parsing_edge_cases(value, expected):
    assert candidate(references=value).references == expected


def test_own_message_id_is_normalised():
    assert candidate(message_id="  abc@x \r\n").internet_message_id == "<abc@x>"
    assert candidate(message_id="<abc@x>").internet_message_id == "<abc@x>"
    assert candidate(message_id="").internet_message_id is None


def test_repeated_or_malformed_header_entries():
    headers = [{"name": "References", "value": "<a@x>"}, {"name": "References", "value": "<b@x>"},
               {"name": "X-Broken"}, "not a header", {"name": 5, "value": "x"}]
    assert header_values(headers) == {"references": "<a@x> <b@x>"}
    assert header_values(None) == {}


# The rules.

def test_generated_id_matches_the_record_it_was_minted_for():
    keys = DictKeys(generated={"<sent-by-us@svc>": 7}, ids={"<sent-by-us@svc>": {7}})
    assert match_record(keys, candidate(message_id="<sent-by-us@svc>")) == Match((7,), "generated_id")


def test_in_reply_to_names_a_known_message():
    keys = DictKeys(ids={"<upload@vendor>": {3}})
    assert match_record(keys, candidate(in_reply_to="<upload@vendor>")) == Match((3,), "references")


def test_references_name_a_known_message_despite_a_new_conversation():
    keys = DictKeys(ids={"<root@vendor>": {3}}, conversations={(1, "OLD-CONV"): {3}})
    message = candidate(conversation="NEW-CONV", references="<other@elsewhere> <root@vendor>")
    assert match_record(keys, message) == Match((3,), "references")


def test_own_message_id_already_known():
    keys = DictKeys(ids={"<reply@vendor.example>": {4}})
    assert match_record(keys, candidate()) == Match((4,), "known_message_id")


def test_same_conversation_in_the_same_mailbox_without_headers():
    keys = DictKeys(conversations={(1, "CONV-1"): {5}})
    assert match_record(keys, candidate(connection_id=1)) == Match((5,), "conversation")


def test_conversation_of_another_mailbox_does_not_match():
    keys = DictKeys(conversations={(2, "CONV-1"): {5}})
    assert match_record(keys, candidate(connection_id=1)) is None


def test_unrelated_message_matches_nothing():
    keys = DictKeys(ids={"<upload@vendor>": {3}}, generated={"<x@svc>": 3}, conversations={(1, "C"): {3}})
    assert match_record(keys, candidate(references="<unknown@elsewhere>")) is None


def test_drafts_never_match():
    """Even a draft every rule would match (the service's own draft, replying in a known thread)."""
    keys = DictKeys(generated={"<d@svc>": 1}, ids={"<d@svc>": {1}, "<upload@v>": {1}},
                    conversations={(1, "CONV-1"): {1}})
    message = candidate(message_id="<d@svc>", draft=True, in_reply_to="<upload@v>")
    assert match_record(keys, message) is None


def test_a_message_without_a_message_id_is_not_linked():
    keys = DictKeys(conversations={(1, "CONV-1"): {5}}, ids={"<upload@v>": {5}})
    assert match_record(keys, candidate(message_id=None, in_reply_to="<upload@v>")) is None


# Precedence and several records.

def test_the_reason_is_the_strongest_rule_that_matched():
    keys = DictKeys(generated={"<m@svc>": 1}, ids={"<m@svc>": {1}, "<parent@v>": {1}},
                    conversations={(1, "CONV-1"): {1}})
    assert match_record(keys, candidate(message_id="<m@svc>", in_reply_to="<parent@v>")).reason == "generated_id"
    del keys.generated["<m@svc>"]
    assert match_record(keys, candidate(message_id="<m@svc>", in_reply_to="<parent@v>")).reason == "references"
    assert match_record(keys, candidate(message_id="<m@svc>")).reason == "known_message_id"
    assert match_record(keys, candidate(message_id="<new@v>")).reason == "conversation"


def test_every_record_a_rule_proves_is_returned():
    keys = DictKeys(ids={"<upload@v>": {2, 9}})
    assert match_record(keys, candidate(in_reply_to="<upload@v>")) == Match((2, 9), "references")


def test_proofs_from_different_rules_add_up():
    keys = DictKeys(generated={"<m@svc>": 1}, ids={"<m@svc>": {1}, "<parent@v>": {1, 6}})
    assert match_record(keys, candidate(message_id="<m@svc>", in_reply_to="<parent@v>")) == \
        Match((1, 6), "generated_id")


def test_a_conversation_hint_is_ignored_when_there_is_proof():
    keys = DictKeys(ids={"<parent@v>": {1}}, conversations={(1, "CONV-1"): {1, 8}})
    assert match_record(keys, candidate(in_reply_to="<parent@v>")) == Match((1,), "references")


# A batch of messages.

class CountingKeys(DictKeys):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lookups = 0

    def known_ids(self, ids: Iterable[str]) -> list[KnownId]:
        self.lookups += 1
        return super().known_ids(ids)


def test_a_batch_reads_the_stored_keys_once_and_matches_each_message_by_the_same_rules():
    keys = CountingKeys(ids={"<upload@v>": {3}}, generated={"<sent@svc>": 7}, conversations={(1, "C-9"): {5}})
    batch = [candidate(message_id="<r1@v>", in_reply_to="<upload@v>"), candidate(message_id="<sent@svc>"),
             candidate(message_id="<unrelated@v>", conversation="C-0"),
             candidate(message_id="<hint@v>", conversation="C-9")]
    assert match_messages(keys, batch) == [Match((3,), "references"), Match((7,), "generated_id"), None,
                                           Match((5,), "conversation")]
    assert keys.lookups == 1


def test_a_reply_follows_the_message_it_answers_in_the_same_batch():
    keys = DictKeys(ids={"<upload@v>": {3}})
    batch = [candidate(message_id="<r1@v>", conversation="C-NEW", in_reply_to="<upload@v>"),
             candidate(message_id="<r2@v>", conversation="C-OTHER", in_reply_to="<r1@v>"),
             candidate(message_id="<r3@v>", conversation="C-NEW"),
             candidate(message_id="<r1@v>", conversation="C-NEW")]
    assert match_messages(keys, batch) == [Match((3,), "references"), Match((3,), "references"),
                                           Match((3,), "conversation"), Match((3,), "known_message_id")]


def test_a_reply_earlier_in_the_batch_than_its_parent_matches_as_it_would_alone():
    keys = DictKeys(ids={"<upload@v>": {3}})
    batch = [candidate(message_id="<r2@v>", conversation="C-2", in_reply_to="<r1@v>"),
             candidate(message_id="<r1@v>", conversation="C-1", in_reply_to="<upload@v>")]
    assert match_messages(keys, batch) == [None, Match((3,), "references")]
