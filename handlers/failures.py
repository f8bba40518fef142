"""What a classified Graph or identity failure (:mod:`app.microsoft.failures`) means for a job."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from app.microsoft.failures import FAILURES, Failure, Kind, classify
from app.records.connections import mark_reconnect_required
from app.records.services import Services
from handlers.errors import Deferred, JobError, PermanentError, RetryLater


def job_error(services: Services, connection_id: int | None, failure: Failure, kind: Kind | None = None) -> JobError:
    """The worker's treatment of ``failure`` (as ``kind``, when the caller is told to treat it so).

    A revoked grant also marks the connection ``reconnect_required``; an app-registration problem
    is retried slowly, since fixing the secret fixes it.
    """
    kind = kind or failure.kind
    if kind is Kind.RECONNECT:
        if connection_id is not None:
            mark_reconnect_required(services, connection_id, failure.detail)
        return PermanentError("reconnect_required")
    if kind is Kind.DEFERRED:
        return Deferred(failure.reason, failure.retry_after or 0.0)
    if kind in (Kind.TRANSIENT, Kind.MISCONFIGURED):
        return RetryLater(failure.reason, failure.retry_after)
    return PermanentError(failure.reason)


@contextlib.contextmanager
def graph_failures(services: Services, connection_id: int | None) -> Iterator[None]:
    """Raise the job error of any Graph or identity failure inside the block."""
    try:
        yield
    except FAILURES as e:
        raise job_error(services, connection_id, classify(e)) from None
