"""A clock the tests can move forward, shared by every part of the emulator."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone


class Clock:
    """Wall-clock time plus an offset that only ever grows.

    Tests call :meth:`advance` to jump hours or days ahead (token and subscription expiry)
    without sleeping; everything in the emulator asks this clock, never ``datetime.now``.
    """

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            offset = self._offset
        return datetime.now(timezone.utc) + offset

    def timestamp(self) -> float:
        return self.now().timestamp()

    def advance(self, delta: timedelta | float) -> None:
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        if delta < timedelta():
            raise ValueError(f"a clock cannot go back: {delta}")
        with self._lock:
            self._offset += delta
