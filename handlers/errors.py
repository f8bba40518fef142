"""What a handler raises to tell the worker how to treat its job.

Each error carries a short ``reason`` slug (``throttled``, ``invalid_grant``, ``bad_payload``...). The
worker records it on the job row and in its log line, and it is safe as a metric label: it names a
kind of failure, never the data that failed.
"""

from __future__ import annotations


class JobError(Exception):
    """Base of the errors a handler raises on purpose."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(JobError):
    """A transient failure (429, 5xx, network): run the job again after a backoff.

    ``retry_after`` is the server's ``Retry-After`` in seconds, if it sent one; the next attempt
    never comes sooner.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Deferred(RetryLater):
    """The server asked for a pause: a 429 with ``Retry-After``, or the mailbox is still held off
    after one. Nothing is wrong with the job, so this attempt does not count and the backoff does
    not grow: a long throttle delays work but never dead-letters it.
    """

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason, retry_after)


class PermanentError(JobError):
    """Retrying cannot help (``invalid_grant``, a malformed payload): dead-letter the job at once."""
