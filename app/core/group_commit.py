"""Group commit: writes that arrive together share one statement and one commit.

The webhook receiver must not answer Graph before a delivery is durable, and under load many request
threads want to write at the same moment. Each on its own would take the store's write lock in turn
(on SQLite, the losers sleep in the busy handler and retry) and pay a commit each. Instead the first
thread to arrive writes for everyone waiting (leader and followers, as databases do it for their
logs): it takes every item queued so far, writes them with one call, and wakes the others. Each
caller returns only once the write that carried its item has committed, and raises what that write
raised, so an answer still means "stored". Nobody waits on a timer: a lone writer writes at once, and
a group forms only from writers that would have waited for the lock anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class _Entry(Generic[T]):
    __slots__ = ("item", "done", "error")

    def __init__(self, item: T) -> None:
        self.item, self.done, self.error = item, False, None


class GroupCommit(Generic[T]):
    """Calls ``write`` with every item submitted while an earlier call was running.

    :param write: writes and commits a list of items, all or none.
    """

    def __init__(self, write: Callable[[Sequence[T]], None]) -> None:
        self._write = write
        self._condition = threading.Condition()
        self._pending: list[_Entry[T]] = []
        self._writing = False

    def submit(self, item: T) -> None:
        """Return once ``item`` is written (committed), or raise what the write that carried it raised."""
        entry = _Entry(item)
        with self._condition:
            self._pending.append(entry)
            while not entry.done:
                if self._writing:
                    self._condition.wait()
                else:
                    self._lead()
        if entry.error is not None:
            raise entry.error

    def _lead(self) -> None:
        """Write everything pending (the condition's lock is held on entry and on return)."""
        self._writing = True
        group, self._pending = self._pending, []
        error: BaseException | None = None
        self._condition.release()
        try:
            self._write([entry.item for entry in group])
        except BaseException as e:  # each caller of the group re-raises it
            error = e
        finally:
            self._condition.acquire()
            self._writing = False
            for entry in group:
                entry.done, entry.error = True, error
            self._condition.notify_all()
