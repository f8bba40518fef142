"""Which record threads a mailbox message belongs to (the threading rules), as a pure function.

The notification handler, the backfill and the delta reconcile all ask :func:`match_messages`. It
reads thread keys through the :class:`ThreadKeys` interface (:class:`app.records.threads.StoredThreadKeys`
serves it from the store; tests serve it from dicts) and never writes anything, so an unrelated message leaves
no trace.

The rules, strongest first:

1. ``generated_id``: the message's own Message-ID was minted by the service for a record (a send);
2. ``references``: its ``In-Reply-To`` or ``References`` name a Message-ID known to a record;
3. ``known_message_id``: its own Message-ID is already known (an update, or a copy in another mailbox);
4. ``conversation``: its Graph ``conversationId`` in the same mailbox is one seen on a linked message.

Rules 1-3 are proof that the message is part of a record's conversation; rule 4 is only a hint (an
external reply can get a new conversationId, and equal subjects can share one), so it is used only
when no proof exists. A message can belong to several records (the same email uploaded to two
records, and replies to it): the match names every record that rules 1-3 prove, or, failing those,
every record rule 4 suggests. Its ``reason`` is the strongest rule that matched.

A batch of messages is matched in order, as if each were linked before the next is looked at: a
reply in the same batch as the message it answers follows it onto its record.

Drafts never match (the service's own outgoing drafts are linked once sent), nor does a message
without a Message-ID (nothing could keep its thread entry unique).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from app.records.rfc822 import message_ids, normalize_message_id, references


class KnownId(NamedTuple):
    """A Message-ID a record's thread knows, and whether the service minted it for that record."""

    message_id: str
    record_id: int
    generated: bool


class ThreadKeys(Protocol):
    """Read access to the thread keys: known Message-IDs and per-mailbox conversationIds."""

    def known_ids(self, ids: Iterable[str]) -> list[KnownId]:
        """Every record's knowledge of any of ``ids`` (one lookup for all of a message's ids)."""

    def records_for_conversation(self, connection_id: int, conversation_id: str) -> set[int]:
        """Records with a linked message of this conversation in this mailbox."""


@dataclass(frozen=True)
class CandidateMessage:
    """The threading facts of a Graph message, with Message-IDs normalised to ``<id>``.

    The same bounds as uploads (:mod:`app.records.rfc822`): an id over 998 characters counts as none, and
    only the last 100 ``References`` ids are kept.
    """

    connection_id: int
    graph_id: str | None
    internet_message_id: str | None
    conversation_id: str | None
    is_draft: bool
    in_reply_to: str | None
    references: tuple[str, ...]

    @classmethod
    def from_graph(cls, message: dict[str, Any], connection_id: int) -> CandidateMessage:
        """Read a Graph message (fetched with ``internetMessageHeaders`` in its ``$select``)."""
        headers = header_values(message.get("internetMessageHeaders"))
        in_reply_to = message_ids(headers.get("in-reply-to"))
        return cls(
            connection_id=connection_id,
            graph_id=message.get("id"),
            internet_message_id=normalize_message_id(message.get("internetMessageId")),
            conversation_id=message.get("conversationId") or None,
            is_draft=bool(message.get("isDraft")),
            in_reply_to=in_reply_to[0] if in_reply_to else None,
            references=references(headers.get("references")),
        )

    @property
    def parent_ids(self) -> list[str]:
        """Every Message-ID this message replies to or cites, ``In-Reply-To`` first."""
        parents = [self.in_reply_to] if self.in_reply_to else []
        return list(dict.fromkeys([*parents, *self.references]))


@dataclass(frozen=True)
class Match:
    record_ids: tuple[int, ...]  # ascending
    reason: str  # generated_id | references | known_message_id | conversation


def header_values(headers: Any) -> dict[str, str]:
    """Graph's ``internetMessageHeaders`` list as a dict with lower-case names.

    A header that appears more than once has its values joined with a space (for ``References``
    that keeps every id); entries that are not ``{"name", "value"}`` objects are skipped.
    """
    if not isinstance(headers, list):
        return {}
    values: dict[str, list[str]] = {}
    for header in headers:
        name, value = (header.get("name"), header.get("value")) if isinstance(header, dict) else (None, None)
        if isinstance(name, str) and isinstance(value, str):
            values.setdefault(name.strip().lower(), []).append(value)
    return {name: " ".join(parts) for name, parts in values.items()}


def match_record(keys: ThreadKeys, message: CandidateMessage) -> Match | None:
    """The records ``message`` belongs to and the strongest rule that says so, or None."""
    own_id = message.internet_message_id
    if message.is_draft or own_id is None:
        return None
    known = keys.known_ids([own_id, *message.parent_ids])
    generated = min((k.record_id for k in known if k.message_id == own_id and k.generated), default=None)
    parents = set(message.parent_ids)
    proofs = [
        ("generated_id", {generated} if generated is not None else set()),
        ("references", {k.record_id for k in known if k.message_id in parents}),
        ("known_message_id", {k.record_id for k in known if k.message_id == own_id}),
    ]
    proven = [(reason, records) for reason, records in proofs if records]
    if proven:
        return Match(tuple(sorted(set().union(*(records for _, records in proven)))), proven[0][0])
    if message.conversation_id:
        hinted = keys.records_for_conversation(message.connection_id, message.conversation_id)
        if hinted:
            return Match(tuple(sorted(hinted)), "conversation")
    return None


class _BatchKeys:
    """:class:`ThreadKeys` over one lookup of every Message-ID a batch names, plus the keys that the
    batch's earlier matches will add when they are linked."""

    def __init__(self, keys: ThreadKeys, messages: Iterable[CandidateMessage]) -> None:
        self._keys = keys
        ids = [i for m in messages if m.internet_message_id for i in (m.internet_message_id, *m.parent_ids)]
        self._known: dict[str, list[KnownId]] = {}
        for known in keys.known_ids(ids) if ids else []:
            self._known.setdefault(known.message_id, []).append(known)
        self._conversations: dict[tuple[int, str], set[int]] = {}

    def known_ids(self, ids: Iterable[str]) -> list[KnownId]:
        return [known for i in dict.fromkeys(ids) for known in self._known.get(i, [])]

    def records_for_conversation(self, connection_id: int, conversation_id: str) -> set[int]:
        return (self._keys.records_for_conversation(connection_id, conversation_id)
                | self._conversations.get((connection_id, conversation_id), set()))

    def add(self, message: CandidateMessage, match: Match) -> None:
        """``message`` is about to be linked where ``match`` says: its keys count for the rest of the batch."""
        assert message.internet_message_id is not None  # a match implies one
        self._known.setdefault(message.internet_message_id, []).extend(
            KnownId(message.internet_message_id, record_id, False) for record_id in match.record_ids)
        if message.conversation_id:
            self._conversations.setdefault((message.connection_id, message.conversation_id), set()).update(
                match.record_ids)


def match_messages(keys: ThreadKeys, messages: list[CandidateMessage]) -> list[Match | None]:
    """:func:`match_record` of each message in turn, reading the stored keys once for all of them."""
    batch = _BatchKeys(keys, messages)
    matches: list[Match | None] = []
    for message in messages:
        matches.append(match_record(batch, message))
        if matches[-1] is not None:
            batch.add(message, matches[-1])
    return matches
