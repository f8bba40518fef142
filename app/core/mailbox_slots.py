"""Graph requests in flight per mailbox, counted in the store, so that every process on every host
sharing it keeps to Outlook's limit together (4 concurrent requests per app and mailbox:
https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits).

A request holds one or more of a mailbox's numbered slots: a row of ``mailbox_slots`` each. Rows exist
only while held. A process renews its rows every third of :data:`HOLD_SECONDS` from one thread, so a
process that dies (``kill -9``, a lost host) frees its slots at most that long after, without anyone
having to notice it died. Taking slots is one ``INSERT … ON CONFLICT DO NOTHING``: two processes that
race for a slot cannot both get it, and one that gets fewer than it asked for gives them back and tries
again, so two ``$batch`` holders never wait on each other's half.

A Retry-After is shared the same way: a 429 or 503 of one process puts a row with slot -1 (held by no
process, so nobody renews it) that lasts until the Retry-After has passed, and while it lasts no process
takes a slot of that mailbox: they get :class:`HeldOff` instead, and defer their work. Graph penalises a
call made before the Retry-After is over (https://learn.microsoft.com/graph/throttling#best-practices-to-handle-throttling).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

HOLD_SECONDS = 10.0
RETRY_PAUSE_SECONDS = (0.01, 0.05)  # a refused taker waits a random pause in this range
HOLD_OFF_SLOT = -1  # the row of a shared Retry-After: below every real slot number
HOLD_OFF_PROCESS = "retry-after"


class SlotsBusy(Exception):
    """The mailbox's slots stayed taken by other processes for the whole wait."""


class HeldOff(Exception):
    """A process was told by Graph to leave the mailbox alone for ``remaining`` more seconds."""

    def __init__(self, mailbox: str, remaining: float) -> None:
        super().__init__(f"mailbox {mailbox} waits {remaining:.1f} s more for a Retry-After")
        self.remaining = remaining


class MailboxSlots:
    """This process's view of the shared slots.

    :param connect: returns the calling thread's store connection
    :param slots: how many requests of one mailbox may be in flight over all processes
    """

    def __init__(self, connect: Callable[[], Any], *, slots: int = 4, clock: Callable[[], float] = time.time,
                 hold_seconds: float = HOLD_SECONDS) -> None:
        self._connect, self.slots, self._clock, self._hold_seconds = connect, slots, clock, hold_seconds
        self.process = uuid.uuid4().hex
        self._holds = itertools.count(1)
        self._held = 0
        self._lock = threading.Lock()
        self._keeper: threading.Thread | None = None
        numbers = " UNION ALL ".join(f"SELECT {n} AS slot" for n in range(slots))
        self._take_sql = (
            "INSERT INTO mailbox_slots (mailbox, slot, process, hold, expires_at)"
            f" SELECT :mailbox, free.slot, :process, :hold, :expires FROM ({numbers}) AS free"
            " WHERE free.slot NOT IN (SELECT slot FROM mailbox_slots WHERE mailbox = :mailbox)"
            f" AND NOT EXISTS (SELECT 1 FROM mailbox_slots WHERE mailbox = :mailbox AND slot = {HOLD_OFF_SLOT})"
            " ORDER BY free.slot LIMIT :n ON CONFLICT DO NOTHING RETURNING slot")

    @contextlib.contextmanager
    def hold(self, mailbox: str, n: int = 1, *, timeout: float = 30.0) -> Iterator[None]:
        """Hold ``n`` of ``mailbox``'s slots (at most all of them) meanwhile; :class:`SlotsBusy` when
        other processes kept them for ``timeout`` seconds, :class:`HeldOff` during a Retry-After."""
        n = max(1, min(n, self.slots))
        hold = next(self._holds)
        deadline = time.monotonic() + timeout
        while not self._take(mailbox, hold, n):
            if time.monotonic() > deadline:
                raise SlotsBusy(f"mailbox {mailbox}: {n} of its {self.slots} slots did not come free"
                                f" within {timeout:.1f} s")
            time.sleep(random.uniform(*RETRY_PAUSE_SECONDS))
        self._count(+1)
        try:
            yield
        finally:
            self._count(-1)
            self._release(mailbox, hold)

    def hold_off(self, mailbox: str, seconds: float) -> None:
        """Graph asked for ``seconds`` of quiet on ``mailbox``: no process takes its slots meanwhile
        (a longer hold-off already in place stays)."""
        until = self._clock() + seconds
        self._connect().execute(
            "INSERT INTO mailbox_slots (mailbox, slot, process, hold, expires_at) VALUES (?, ?, ?, 0, ?)"
            " ON CONFLICT (mailbox, slot) DO UPDATE SET expires_at = CASE"
            " WHEN excluded.expires_at > mailbox_slots.expires_at THEN excluded.expires_at"
            " ELSE mailbox_slots.expires_at END",
            [mailbox, HOLD_OFF_SLOT, HOLD_OFF_PROCESS, until])

    def full(self) -> set[str]:
        """The mailboxes that nobody may call now: every slot held, or a Retry-After running."""
        rows = self._connect().query(
            "SELECT mailbox FROM mailbox_slots WHERE expires_at >= ? GROUP BY mailbox"
            f" HAVING count(*) >= ? OR min(slot) = {HOLD_OFF_SLOT}", [self._clock(), self.slots])
        return {row["mailbox"] for row in rows}

    def keep_alive(self) -> int:
        """Push back the expiry of every slot this process holds; return how many."""
        return self._connect().execute(
            "UPDATE mailbox_slots SET expires_at = ? WHERE process = ?",
            [self._clock() + self._hold_seconds, self.process]).rowcount

    def _take(self, mailbox: str, hold: int, n: int) -> bool:
        db, now = self._connect(), self._clock()
        db.execute("DELETE FROM mailbox_slots WHERE mailbox = ? AND expires_at < ?", [mailbox, now])
        taken = db.execute(self._take_sql, {"mailbox": mailbox, "process": self.process, "hold": hold,
                                            "expires": now + self._hold_seconds, "n": n}).fetchall()
        if len(taken) == n:
            return True
        if taken:
            self._release(mailbox, hold)
        for row in db.query("SELECT expires_at FROM mailbox_slots WHERE mailbox = ? AND slot = ?",
                            [mailbox, HOLD_OFF_SLOT]):
            raise HeldOff(mailbox, max(0.0, row["expires_at"] - now))
        return False

    def _release(self, mailbox: str, hold: int) -> None:
        self._connect().execute("DELETE FROM mailbox_slots WHERE mailbox = ? AND process = ? AND hold = ?",
                                [mailbox, self.process, hold])

    def _count(self, change: int) -> None:
        """Track holds in progress; the first starts the thread that keeps them alive."""
        with self._lock:
            self._held += change
            if self._keeper is None:
                self._keeper = threading.Thread(target=self._keep, name="mailbox-slots", daemon=True)
                self._keeper.start()

    def _keep(self) -> None:
        while True:
            time.sleep(self._hold_seconds / 3)
            if not self._held:
                continue
            try:
                self.keep_alive()
            except Exception as e:  # the store is down: slots may run out, and other processes take them
                log.warning("Mailbox slots: could not renew this process's slots (%s); retrying", e)
