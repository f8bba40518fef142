"""The attachments of Graph messages just linked to records (by the message handler, the reconcile or
the backfill).

The message handler has Graph describe a message's attachments in the same ``$batch`` that fetches
the message (:data:`app.microsoft.graph.ATTACHMENTS_EXPAND`), without their bytes: most fetched mail
turns out to be unrelated and is not stored at all. Delta and ``$filter`` queries cannot expand, so a
message they found that has attachments (``hasAttachments``, or an HTML body naming a ``cid:``
image, since ``hasAttachments`` is false when every attachment is inline) is described by one more
``$batch`` per 20 of them. Once a message is on a record, the bytes of its file attachments are
read, and each kind is kept as Graph documents it
(https://learn.microsoft.com/graph/api/resources/attachment):

- a file up to :data:`SMALL_BYTES` comes as JSON (``contentBytes``, and the ``contentId`` an HTML
  body's ``cid:`` names) in a ``$batch`` of up to 20 with its neighbours; a larger one alone, raw,
  from ``/attachments/{id}/$value`` (https://learn.microsoft.com/graph/api/attachment-get);
- a file over ``ATTACHMENT_MAX_BYTES`` is described but its bytes are not read;
- an attached Outlook item (``itemAttachment``) or a link to a cloud file (``referenceAttachment``)
  is kept as what it is, without bytes.

An attachment whose bytes are already on the record is not read again (a message is fetched again
for every ``updated`` notification).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any

from app.core.db import write_transaction
from app.microsoft.failures import NotFound, error_from
from app.microsoft.graph import ATTACHMENTS_EXPAND, BATCH_LIMIT, GraphClient
from app.records import attachments, threads
from app.records.attachments import NewAttachment
from app.records.linking import link_graph_messages
from app.records.services import Services

SMALL_BYTES = 3 * 1024 * 1024
BATCH_BYTES = 8 * 1024 * 1024  # described bytes one $batch of attachments asks for at most
KINDS = {"#microsoft.graph.fileAttachment": "file", "#microsoft.graph.itemAttachment": "item",
         "#microsoft.graph.referenceAttachment": "reference"}

# What reading a file attachment gave: (bytes, contentId), or why there are none (a SKIPPED reason).
Fetched = tuple[bytes, str | None] | str


def link_with_attachments(services: Services, connection: dict[str, Any], messages: list[dict[str, Any]]) -> int:
    """:func:`app.records.linking.link_graph_messages`, then :func:`store_attachments` of those
    linked; return how many were."""
    records = link_graph_messages(services.db(), connection, messages)
    linked = [message for message, linked_to in zip(messages, records) if linked_to]
    store_attachments(services, connection["id"], linked)
    return len(linked)


def store_attachments(services: Services, connection_id: int, messages: list[dict[str, Any]]) -> None:
    """Keep the attachments of ``messages`` (linked Graph messages of one mailbox, with their expanded
    ``attachments`` or not) on every thread entry each one is. Graph failures are raised, for the
    work to be retried; what was kept before stays kept."""
    graph = services.graph_for(connection_id)
    messages = _described(graph, messages)
    described = {m["id"]: [a for a in m.get("attachments") or [] if isinstance(a, dict) and a.get("id")]
                 for m in messages}
    described = {message_id: items for message_id, items in described.items() if items}
    if not described:
        return
    db = services.db()
    entries = threads.entries_of_copies(db, connection_id, list(described))
    max_bytes = services.config["ATTACHMENT_MAX_BYTES"]
    wanted = []
    for message_id, items in described.items():
        files = [item for item in items if _kind(item) == "file" and _size(item) <= max_bytes]
        missing = set().union(*(attachments.missing_content(db, entry, [item["id"] for item in files])
                                for entry in entries.get(message_id, [])))
        wanted += [(message_id, item) for item in files if item["id"] in missing]
    fetched = _fetch(graph, wanted, max_bytes)
    with write_transaction(db):
        for message_id, items in described.items():
            new = [_new_attachment(item, fetched.get((message_id, item["id"])), max_bytes) for item in items]
            for entry in entries.get(message_id, []):
                attachments.store(db, entry, new, max_bytes=max_bytes)


def _described(graph: GraphClient, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages``, those that may have attachments but came without their description given one."""
    undescribed = [m["id"] for m in messages if "attachments" not in m and _may_have_attachments(m)]
    found: dict[str, list[Any]] = {}
    for start in range(0, len(undescribed), BATCH_LIMIT):
        for message_id, (status, body, headers) in graph.get_messages(
                undescribed[start:start + BATCH_LIMIT], "id", ATTACHMENTS_EXPAND).items():
            if status == 200 and isinstance(body, dict):
                found[message_id] = body.get("attachments") or []
            elif status != 404:  # 404: gone since; nothing to keep
                raise error_from(status, body, headers)
    return [{**m, "attachments": found[m["id"]]} if m["id"] in found else m for m in messages]


def _may_have_attachments(message: dict[str, Any]) -> bool:
    body = message.get("body") or {}
    content = body.get("content") if isinstance(body, dict) else None
    return message.get("hasAttachments") is True or (isinstance(content, str) and "cid:" in content)


def _kind(item: dict[str, Any]) -> str:
    return KINDS.get(item.get("@odata.type", "#microsoft.graph.fileAttachment"), "file")


def _size(item: dict[str, Any]) -> int:
    size = item.get("size")
    return size if isinstance(size, int) and size >= 0 else 0


def _fetch(graph: GraphClient, wanted: list[tuple[str, dict[str, Any]]],
           max_bytes: int) -> dict[tuple[str, str], Fetched]:
    """The bytes of each wanted file attachment, by (message id, attachment id)."""
    fetched: dict[tuple[str, str], Fetched] = {}
    small = [(message_id, item) for message_id, item in wanted if _size(item) <= SMALL_BYTES]
    for group in _batches(small):
        answers = graph.get_attachments([(message_id, item["id"]) for message_id, item in group])
        for pair, (status, body, headers) in answers.items():
            if status == 404:
                fetched[pair] = "unavailable"
            elif status != 200:
                raise error_from(status, body, headers)
            else:
                fetched[pair] = _decoded(body)
    for message_id, item in wanted:
        if _size(item) > SMALL_BYTES:
            try:
                content = graph.get_attachment_content(message_id, item["id"], max_bytes)
            except NotFound:
                fetched[(message_id, item["id"])] = "unavailable"
            else:  # None: larger than it was described, and than what is kept
                fetched[(message_id, item["id"])] = "too_large" if content is None else (content, None)
    return fetched


def _batches(small: list[tuple[str, dict[str, Any]]]) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """``small`` in groups of at most 20 requests and :data:`BATCH_BYTES` described bytes."""
    group: list[tuple[str, dict[str, Any]]] = []
    size = 0
    for pair in small:
        if group and (len(group) == BATCH_LIMIT or size + _size(pair[1]) > BATCH_BYTES):
            yield group
            group, size = [], 0
        group.append(pair)
        size += _size(pair[1])
    if group:
        yield group


def _decoded(body: Any) -> Fetched:
    """A fileAttachment's JSON as (bytes, contentId); missing or broken ``contentBytes`` count as gone."""
    if not isinstance(body, dict) or not isinstance(body.get("contentBytes"), str):
        return "unavailable"
    try:
        data = base64.b64decode(body["contentBytes"], validate=True)
    except (binascii.Error, ValueError):
        return "unavailable"
    content_id = body.get("contentId")
    return data, content_id if isinstance(content_id, str) and content_id else None


def _new_attachment(item: dict[str, Any], fetched: Fetched | None, max_bytes: int) -> NewAttachment:
    """How ``item`` is kept: with the bytes read now, else with why there are none. ``fetched`` is
    None for a file not read now because every entry has its bytes already (which
    :func:`app.records.attachments.store` never takes away)."""
    kind = _kind(item)
    content, content_id, skipped = None, None, None
    if kind != "file":
        skipped = kind
    elif _size(item) > max_bytes:
        skipped = "too_large"
    elif isinstance(fetched, str):
        skipped = fetched
    elif fetched is not None:
        content, content_id = fetched
    return NewAttachment(source_key=item["id"], name=item.get("name") or "attachment",
                         content_type=item.get("contentType") or "application/octet-stream",
                         size=len(content) if content is not None else _size(item), kind=kind,
                         inline=item.get("isInline") is True, content_id=content_id, content=content,
                         skipped_reason=skipped)
