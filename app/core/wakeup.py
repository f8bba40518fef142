"""Waking this process's idle workers the moment work is queued: a broadcast no waiter can miss.

Whoever commits new jobs calls :meth:`Wakeup.notify` (through ``Services.on_enqueue``). A worker that
found no work waits for the generation to move on from the one it last saw (:meth:`Wakeup.wait`
returns the generation it woke at, which the worker keeps for its next wait). A notify that lands
while the worker looks for work therefore ends its next wait at once, and one call wakes every
waiting worker.
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

    def wait(self, seen: int, timeout: float) -> int:
        """Wait until the generation is no longer ``seen`` (a notify came), or ``timeout`` seconds; return
        the generation now."""
        with self._condition:
            self._condition.wait_for(lambda: self._generation != seen, timeout)
            return self._generation
