"""Waking this process's idle workers the moment work is queued: a broadcast no waiter can miss.

Whoever commits new jobs calls :meth:`Wakeup.notify` (through ``Services.on_enqueue``); each worker
notes :meth:`Wakeup.generation` before it looks for work and, finding none, waits for the generation
to move on. A notify that lands between the look and the wait is therefore never lost, and one call
wakes every waiting worker.
"""

from __future__ import annotations

import threading


class Wakeup:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    def notify(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def generation(self) -> int:
        return self._generation

    def wait(self, seen: int, timeout: float) -> None:
        """Return once a notify came after ``generation()`` returned ``seen``, or after ``timeout`` seconds."""
        with self._condition:
            self._condition.wait_for(lambda: self._generation != seen, timeout)
