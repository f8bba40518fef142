"""The one table that says what a Graph or identity failure means, for everyone who meets one.

:func:`classify` turns an exception raised by :mod:`app.microsoft.graph` or
:mod:`app.microsoft.identity` into a :class:`Failure`: what kind of failure it is (:class:`Kind`),
a short ``reason`` slug (safe as a metric label: it names a kind of failure, never data), and how
long the server asked us to wait. The workers (:mod:`handlers.failures`), the renewal job and the
web layer map the kind to what they do; none of them decides again what an exception means.

A send is the one consumer that treats two kinds differently, and the table says so in
``send_kind``: a send is a person's message, and the person is shown its outcome. A failure that
lasts until someone acts (the app registration rejected; Graph refusing even a fresh token)
fails the send at once with the reason, so the person can act or send again, instead of the
message going out unannounced hours later. Reads and subscription work retry those, since
fixing the cause fixes them and nobody waits on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from app.microsoft.graph import AuthExpired, GraphError, NotFound, Throttled
from app.microsoft.identity import IdentityConfigError, IdentityUnavailable, ReconnectRequired

# How long work waits for an operator to fix the app registration before it tries again.
MISCONFIGURED_RETRY_SECONDS = 600.0


class Kind(str, Enum):
    TRANSIENT = "transient"  # try again after a backoff (5xx, network, 401 after refresh, identity down)
    DEFERRED = "deferred"  # the server said when: wait that long; the attempt does not count
    RECONNECT = "reconnect"  # the user's grant is gone: only a new sign-in helps
    MISCONFIGURED = "misconfigured"  # the app registration was rejected: an operator must act
    GONE = "gone"  # 404: the item or subscription no longer exists
    PERMANENT = "permanent"  # retrying cannot help (any other 4xx)


@dataclass(frozen=True)
class Failure:
    kind: Kind
    reason: str
    retry_after: float | None = None
    send_kind: Kind | None = None  # where a send is treated differently (see the module docstring)
    status: int | None = None  # Graph's HTTP status (0: not reached), when the failure came from Graph
    detail: str = ""  # what went wrong, in words, for people (an outbox row, a subscription's last error)

    @property
    def for_send(self) -> Kind:
        return self.send_kind or self.kind

    @property
    def throttled(self) -> bool:
        """Graph was busy or unreachable (429, 5xx, network), rather than refusing the request."""
        return self.status is not None and (self.status in (0, 429) or self.status >= 500)


def _throttled(e: Throttled) -> Failure:
    """A 429 that says how long to wait defers; a 5xx, a network failure or a bare 429 is a failed attempt."""
    if e.status == 429 and e.retry_after:
        return Failure(Kind.DEFERRED, "throttled", e.retry_after, status=e.status, detail=e.message)
    return Failure(Kind.TRANSIENT, "throttled" if e.status == 429 else f"graph_{e.status or 'network'}",
                   e.retry_after, status=e.status, detail=e.message)


# Most specific first: the first row whose exception type matches classifies the failure.
TABLE: list[tuple[type[Exception], Callable[[Exception], Failure]]] = [
    (ReconnectRequired, lambda e: Failure(Kind.RECONNECT, "reconnect_required", detail=e.reason)),
    (IdentityConfigError, lambda e: Failure(Kind.MISCONFIGURED, "app_misconfigured", MISCONFIGURED_RETRY_SECONDS,
                                            send_kind=Kind.PERMANENT, detail=str(e))),
    (IdentityUnavailable, lambda e: Failure(Kind.TRANSIENT, "identity_unavailable", e.retry_after, detail=str(e))),
    (Throttled, _throttled),
    # 401 even after a fresh token (app.microsoft.graph refreshes once): for reads, often Graph catching up
    # with a new grant; for a send, see the module docstring.
    (AuthExpired, lambda e: Failure(Kind.TRANSIENT, "unauthorized", send_kind=Kind.PERMANENT, status=401,
                                    detail=e.message)),
    (NotFound, lambda e: Failure(Kind.GONE, f"graph_404_{e.code}"[:80], status=404, detail=e.message)),
    (GraphError, lambda e: Failure(Kind.PERMANENT, f"graph_{e.status}_{e.code}"[:80], status=e.status,
                                   detail=e.message)),
]

FAILURES: tuple[type[Exception], ...] = tuple(kind for kind, _ in TABLE)
"""Every exception :func:`classify` knows, for an ``except`` clause."""


def classify(error: Exception) -> Failure:
    """What ``error`` (one of :data:`FAILURES`) means."""
    for kind, failure in TABLE:
        if isinstance(error, kind):
            return failure(error)
    raise TypeError(f"not a Graph or identity failure: {type(error).__name__}")
