"""How Graph and identity failures become worker decisions, the same way for every handler."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from app.connections import mark_reconnect_required
from app.graph import AuthExpired, GraphError, Throttled
from app.identity import IdentityConfigError, IdentityUnavailable, ReconnectRequired
from app.services import Services
from handlers.errors import Deferred, PermanentError, RetryLater

log = logging.getLogger(__name__)

CONFIG_ERROR_RETRY_SECONDS = 600.0


def retry_after_throttle(e: Throttled) -> RetryLater:
    """A 429 that says how long to wait defers the job (the attempt does not count); a 5xx, a
    network failure or a 429 without ``Retry-After`` is an attempt that failed."""
    if e.status == 429 and e.retry_after:
        return Deferred("throttled", e.retry_after)
    return RetryLater("throttled" if e.status == 429 else f"graph_{e.status or 'network'}", e.retry_after)


@contextlib.contextmanager
def graph_failures(services: Services, connection_id: int | None) -> Iterator[None]:
    """Translate failures inside the block into :class:`RetryLater` or :class:`PermanentError`.

    A revoked grant also marks the connection ``reconnect_required``; an app-registration
    problem (recorded for operators by :mod:`app.identity`) is retried slowly: fixing the
    secret fixes it.
    """
    try:
        yield
    except ReconnectRequired as e:
        if connection_id is not None:
            mark_reconnect_required(services, connection_id, e.reason)
        raise PermanentError("reconnect_required") from None
    except IdentityConfigError:
        raise RetryLater("app_misconfigured", CONFIG_ERROR_RETRY_SECONDS) from None
    except IdentityUnavailable as e:
        raise RetryLater("identity_unavailable", e.retry_after) from None
    except Throttled as e:
        raise retry_after_throttle(e) from None
    except AuthExpired:
        raise RetryLater("unauthorized") from None
    except GraphError as e:
        raise PermanentError(f"graph_{e.status}_{e.code}"[:80]) from None
