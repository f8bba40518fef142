"""The retry policy: how many attempts a job gets and how long it waits between them."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

# 2**64 times any sensible base delay is far beyond any cap; larger exponents would overflow a float.
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class Retry:
    """Exponential backoff with jitter, capped, and never sooner than the server asked.

    The delay after the ``n``-th attempt failed is ``min(cap, base_delay * 2 ** (n - 1))``, reduced
    at random by up to ``jitter`` of itself so that jobs which failed together (a throttled burst)
    do not all come back together. The jitter only shortens a delay, so ``cap`` stays a true cap.
    """

    max_attempts: int = 10
    base_delay: float = 5.0
    cap: float = 1800.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be a whole number of at least 1, got {self.max_attempts!r}")
        # Written as "not (x > 0)" so NaN is refused too.
        if not self.base_delay > 0:
            raise ValueError(f"base_delay must be greater than 0 seconds, got {self.base_delay!r}")
        if not self.cap >= self.base_delay:
            raise ValueError(f"cap must be at least base_delay ({self.base_delay!r}), got {self.cap!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be a fraction between 0 and 1, got {self.jitter!r}")

    def next_delay(
        self, attempt: int, retry_after: float | None = None, rand: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait after attempt number ``attempt`` (1 = the first) failed.

        :param retry_after: the server's ``Retry-After`` in seconds; the delay is never shorter,
            even when it exceeds ``cap`` (the server knows when it will accept us again).
        :param rand: the random source, returning a float in [0, 1).
        """
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, got {attempt!r}")
        backoff = min(self.cap, self.base_delay * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
        delay = backoff * (1 - self.jitter * rand())
        return max(delay, retry_after or 0.0)

    def after_throttle(self, retry_after: float, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait when the server asked for ``retry_after``: never less, and up to a tenth
        of ``jitter`` more, so the jobs of a throttled batch do not all come back at the same moment."""
        return retry_after * (1 + 0.1 * self.jitter * rand())


JOB_RETRY_BASE_DELAY = 2.0
"""Seconds before a job's second attempt; the wait doubles from there (``JOB_RETRY_MAX_DELAY_SECONDS`` caps it)."""


def job_retry(max_attempts: int, max_delay: float) -> Retry:
    """The policy for queued jobs, from the ``JOB_MAX_ATTEMPTS`` and ``JOB_RETRY_MAX_DELAY_SECONDS`` settings.

    With the defaults (12 attempts, 900 s) a failing job is retried for up to 47 minutes
    (2 + 4 + ... + 512 + 900 + 900 s, less jitter) before it is dead-lettered.
    """
    return Retry(max_attempts=max_attempts, base_delay=JOB_RETRY_BASE_DELAY, cap=max_delay)
