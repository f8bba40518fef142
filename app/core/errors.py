"""Domain errors: what went wrong, as a code, a message for people and the field it concerns.

Raised by :mod:`app.records` and below; only :mod:`app.web.errors` turns them into HTTP statuses.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses. ``code`` is a stable slug; ``field`` names the input at fault."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class NotFound(DomainError):
    """The thing named does not exist."""


class Invalid(DomainError):
    """The input cannot be accepted as it is."""


class Conflict(DomainError):
    """The input is fine, but the current state does not allow it (an inactive mailbox, a reused key)."""


class Forbidden(DomainError):
    """The thing exists, but not for this caller: it belongs to another organization."""
