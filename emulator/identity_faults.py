"""One-off failures queued for the token endpoint, so tests can exercise the service's error paths.

Two kinds: a refresh that fails with a chosen AADSTS code (for one user or anyone), and an
HTTP-level transient failure (429 with ``Retry-After``, or 5xx) before any work is done.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .aadsts import AadstsError


@dataclass(frozen=True)
class TokenEndpointFault:
    """A transient failure the token endpoint answers with instead of doing its work."""

    status: int
    retry_after: int | None = None


@dataclass
class _Queued:
    value: AadstsError | TokenEndpointFault
    user_id: str | None
    remaining: int


class InjectedFailures:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Queued] = []

    def fail_next_refresh(self, code: int, *, user_id: str | None = None, count: int = 1, **details: str) -> None:
        """The next ``count`` refreshes (of ``user_id``, or anyone's) fail with AADSTS ``code``.

        ``details`` fill the code's message; a code the emulator has no text for uses
        ``details["message"]`` and answers ``invalid_grant``.
        """
        details.setdefault("message", "Injected failure.")
        self._add(AadstsError(code, **details), user_id, count)

    def fail_token_endpoint(self, status: int, *, retry_after: int | None = None, count: int = 1) -> None:
        """The next ``count`` token requests get HTTP ``status`` (429 or 5xx) instead of an answer."""
        if status != 429 and not 500 <= status < 600:
            raise ValueError(f"token endpoint faults are 429 or 5xx, not {status}")
        self._add(TokenEndpointFault(status, retry_after), None, count)

    def take_refresh_failure(self, user_id: str) -> AadstsError | None:
        """Consume one queued refresh failure that applies to ``user_id``, if any."""
        return self._take(AadstsError, user_id)

    def take_token_endpoint_fault(self) -> TokenEndpointFault | None:
        return self._take(TokenEndpointFault, None)

    def queued(self) -> list[tuple[AadstsError | TokenEndpointFault, str | None, int]]:
        """Every failure still queued, oldest first: (failure, the user it waits for or None, times left)."""
        with self._lock:
            return [(item.value, item.user_id, item.remaining) for item in self._queue]

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def _add(self, value: AadstsError | TokenEndpointFault, user_id: str | None, count: int) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        with self._lock:
            self._queue.append(_Queued(value, user_id, count))

    def _take(self, kind: type, user_id: str | None) -> AadstsError | TokenEndpointFault | None:
        with self._lock:
            for item in self._queue:
                if isinstance(item.value, kind) and item.user_id in (None, user_id):
                    item.remaining -= 1
                    if not item.remaining:
                        self._queue.remove(item)
                    return item.value
        return None
