"""One user's mailbox: folders, id lookups, the per-folder change log delta reads, and change events.

Every method expects the caller to hold ``mailbox.lock``; mutating ones return the
:class:`ChangeEvent` list the store hands to listeners once the lock is released.
"""

from __future__ import annotations

import hashlib
import threading
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime

from emulator.errors import GraphError, item_not_found
from emulator.message import IMMUTABLE_PREFIX, REST_PREFIX, Message, looks_like_id, new_change_key, new_id

#: Well-known folder names (as used in paths, lower-cased) and their display names.
WELL_KNOWN_FOLDERS = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "archive": "Archive",
}


FOLDER_PREFIX = b"\x00\x01\x2e\x00"


@dataclass(frozen=True)
class ChangeEvent:
    """What subscriptions see: one created/updated/deleted change of a message in a folder."""

    user_id: str
    change_type: str
    folder_id: str
    immutable_id: str
    rest_id: str
    etag: str
    at: datetime


@dataclass
class Folder:
    id: str
    name: str
    display_name: str
    members: dict[str, Message] = field(default_factory=dict)
    departed: dict[str, tuple[str, str]] = field(default_factory=dict)
    log_seqs: list[int] = field(default_factory=list)
    log_ids: list[str] = field(default_factory=list)

    def changed_since(self, seq: int) -> list[str]:
        """Immutable ids touched in this folder after ``seq``, oldest change first, each once."""
        start = bisect_right(self.log_seqs, seq)
        return list(dict.fromkeys(reversed(self.log_ids[start:])))[::-1]


class Mailbox:
    def __init__(self, user_id: str, email: str, display_name: str) -> None:
        self.user_id = user_id
        self.email = email
        self.display_name = display_name
        self.lock = threading.RLock()
        self.key = hashlib.sha256(user_id.encode()).digest()[:16]
        self.seq = 0
        self.sync_states: dict[str, dict] = {}
        self._messages: dict[str, Message] = {}
        self._items: dict[str, Message] = {}
        self._by_internet_id: dict[str, list[Message]] = {}
        self.root_folder_id = new_id(FOLDER_PREFIX, self.key)
        self.folders: dict[str, Folder] = {}
        self._folder_names: dict[str, Folder] = {}
        for name, display in WELL_KNOWN_FOLDERS.items():
            folder = Folder(new_id(FOLDER_PREFIX, self.key), name, display)
            self.folders[folder.id] = folder
            self._folder_names[name] = folder

    def folder(self, ref: str) -> Folder:
        """A folder by well-known name (any case) or id; 404 ``ErrorItemNotFound`` otherwise."""
        rv = self._folder_names.get(ref.lower()) or self.folders.get(ref)
        if rv is None:
            raise item_not_found()
        return rv

    def get(self, message_id: str) -> Message:
        """A message by REST id or immutable id (case-sensitive, as in Exchange)."""
        rv = self._messages.get(message_id)
        if rv is None:
            if not looks_like_id(message_id):
                raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
            raise item_not_found()
        return rv

    def by_internet_id(self, internet_message_id: str) -> list[Message]:
        return list(self._by_internet_id.get(internet_message_id, ()))

    def messages(self, folder: Folder | None = None) -> list[Message]:
        if folder is not None:
            return list(folder.members.values())
        return list(self._items.values())

    def new_ids(self) -> tuple[str, str]:
        """A fresh (immutable id, REST id) pair."""
        return new_id(IMMUTABLE_PREFIX, self.key), new_id(REST_PREFIX, self.key)

    def add(self, message: Message, at: datetime) -> list[ChangeEvent]:
        """Store a new message in the folder named by its ``folder_id``."""
        self._items[message.immutable_id] = message
        self._messages[message.immutable_id] = message
        self._messages[message.rest_id] = message
        self._by_internet_id.setdefault(message.internet_message_id, []).append(message)
        return [self._enter(message, self.folders[message.folder_id], at)]

    def reindex(self, message: Message, old_internet_message_id: str) -> None:
        """Follow a draft whose ``internetMessageId`` was rewritten."""
        if message.internet_message_id == old_internet_message_id:
            return
        self._unindex(message, old_internet_message_id)
        self._by_internet_id.setdefault(message.internet_message_id, []).append(message)

    def touch(self, message: Message, at: datetime) -> list[ChangeEvent]:
        """Record an update: a new change key and etag, a log entry, an ``updated`` event."""
        message.change_key = new_change_key()
        message.modified = at
        return [self._log(message, self.folders[message.folder_id], "updated", at)]

    def move(self, message: Message, destination: Folder, at: datetime) -> list[ChangeEvent]:
        """Move to another folder: the REST id is replaced, the immutable id stays."""
        if destination.id == message.folder_id:
            return []
        source = self.folders[message.folder_id]
        events = [self._leave(message, source, "changed", at)]
        del self._messages[message.rest_id]
        message.rest_id = new_id(REST_PREFIX, self.key)
        self._messages[message.rest_id] = message
        message.folder_id = destination.id
        message.change_key = new_change_key()
        message.modified = at
        events.append(self._enter(message, destination, at))
        return events

    def remove(self, message: Message, at: datetime) -> list[ChangeEvent]:
        """Delete permanently."""
        event = self._leave(message, self.folders[message.folder_id], "deleted", at)
        del self._messages[message.rest_id]
        del self._messages[message.immutable_id]
        del self._items[message.immutable_id]
        self._unindex(message, message.internet_message_id)
        return [event]

    def _unindex(self, message: Message, internet_message_id: str) -> None:
        copies = self._by_internet_id[internet_message_id]
        copies.remove(message)
        if not copies:
            del self._by_internet_id[internet_message_id]

    def _enter(self, message: Message, folder: Folder, at: datetime) -> ChangeEvent:
        folder.members[message.immutable_id] = message
        folder.departed.pop(message.immutable_id, None)
        event = self._log(message, folder, "created", at)
        message.entered_seq = message.seq
        return event

    def _leave(self, message: Message, folder: Folder, reason: str, at: datetime) -> ChangeEvent:
        del folder.members[message.immutable_id]
        folder.departed[message.immutable_id] = (message.rest_id, reason)
        return self._log(message, folder, "deleted", at)

    def _log(self, message: Message, folder: Folder, change_type: str, at: datetime) -> ChangeEvent:
        self.seq += 1
        message.seq = self.seq
        folder.log_seqs.append(self.seq)
        folder.log_ids.append(message.immutable_id)
        return ChangeEvent(self.user_id, change_type, folder.id, message.immutable_id, message.rest_id,
                           message.etag, at)
