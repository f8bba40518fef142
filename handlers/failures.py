"""How Graph and identity failures become worker decisions, the same way for every handler."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from app.connections import mark_reconnect_required
from app.graph import AuthExpired, GraphError, Throttled
from app.identity import IdentityConfigError, IdentityUnavailable, ReconnectRequired
from app.services import Services
from app.timeutil import now_iso
from handlers.errors import PermanentError, RetryLater

log = logging.getLogger(__name__)

CONFIG_ERROR_RETRY_SECONDS = 600.0


def record_app_error(services: Services, code: str, message: str) -> None:
    """Remember a problem only an operator can fix; ``/readyz`` and ``/admin`` show it."""
    now = now_iso()
    services.db().execute(
        "INSERT INTO app_errors (code, message, first_seen_at, last_seen_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (code) DO UPDATE SET message = excluded.message, last_seen_at = excluded.last_seen_at",
        [code, message[:500], now, now])


def clear_app_errors(services: Services) -> None:
    services.db().execute("DELETE FROM app_errors")


@contextlib.contextmanager
def graph_failures(services: Services, connection_id: int | None) -> Iterator[None]:
    """Translate failures inside the block into :class:`RetryLater` or :class:`PermanentError`.

    A revoked grant also marks the connection ``reconnect_required``; an app-registration
    problem is recorded for operators and retried slowly (fixing the secret fixes it).
    """
    try:
        yield
    except ReconnectRequired as e:
        if connection_id is not None:
            mark_reconnect_required(services, connection_id, e.reason)
        raise PermanentError("reconnect_required") from None
    except IdentityConfigError as e:
        log.error("Identity: the app registration was rejected (%s)", e.code)
        record_app_error(services, e.code, str(e))
        raise RetryLater("app_misconfigured", CONFIG_ERROR_RETRY_SECONDS) from None
    except IdentityUnavailable as e:
        raise RetryLater("identity_unavailable", e.retry_after) from None
    except Throttled as e:
        raise RetryLater("throttled" if e.status == 429 else f"graph_{e.status or 'network'}", e.retry_after) from None
    except AuthExpired:
        raise RetryLater("unauthorized") from None
    except GraphError as e:
        raise PermanentError(f"graph_{e.status}_{e.code}"[:80]) from None
