"""What can go wrong talking to Microsoft, and what each failure means, for everyone who meets one.

Every such decision is a table here and nowhere else. What Graph answered becomes an exception
(:func:`error_from`, by HTTP status), and so does what the token endpoint answered
(:func:`classify_token_error`, by OAuth error and AADSTS code); an authorize error redirect becomes
a consent outcome (:func:`consent_outcome`). Then :data:`TABLE` (read by :func:`classify`) turns
any of those exceptions into a :class:`Failure`: what kind of failure it is (:class:`Kind`),
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

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

# -- what went wrong: the exceptions app.microsoft.graph and app.microsoft.identity raise ----------------


class GraphError(Exception):
    """Graph answered with an error (or could not be reached)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Throttled(GraphError):
    """429, 503 or 504 (or a network failure): try again after ``retry_after`` seconds."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after


class AuthExpired(GraphError):
    """401 even after a fresh token: the grant no longer covers this call."""


class NotFound(GraphError):
    """404: the item (or subscription) is gone."""


class ReconnectRequired(Exception):
    """The user's grant no longer works; only a new sign-in can restore it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IdentityConfigError(Exception):
    """The app registration is misconfigured (bad or expired secret, app missing)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class IdentityUnavailable(Exception):
    """The identity platform failed transiently (5xx, 429, network); retry later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# -- Graph's answers -----------------------------------------------------------------------------------

def retry_after_seconds(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_from(status: int, body: Any, headers: Any = None) -> GraphError:
    """The :class:`GraphError` for an error response (whole request or one ``$batch`` item)."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code = error.get("code") or f"http_{status}"
    message = error.get("message") or "no message"
    if status in (429, 503, 504) or status >= 500:
        return Throttled(status, code, message, retry_after_seconds(headers))
    if status == 401:
        return AuthExpired(status, code, message)
    if status == 404:
        return NotFound(status, code, message)
    return GraphError(status, code, message)


# -- the identity platform's answers ---------------------------------------------------------------------

# AADSTS codes meaning "this user's grant is gone: they must connect again".
RECONNECT_CODES = {50173, 70000, 70008, 700082, 70043, 65001, 50076, 50078, 50079, 50057, 53003, 50055, 50144}
# AADSTS codes meaning "the app registration itself is broken": an operator must act.
APP_CONFIG_CODES = {7000215, 7000222, 700016, 700027, 500011, 70001, 7000112}


def error_codes(result: dict[str, Any]) -> set[int]:
    return {int(code) for code in result.get("error_codes") or [] if str(code).isdigit()}


def classify_token_error(result: dict[str, Any]) -> Exception:
    """Map an msal error dict to what the caller must do about it."""
    codes = error_codes(result)
    error = result.get("error", "")
    summary = f"{error} (AADSTS{min(codes)})" if codes else error
    if error == "invalid_client" or codes & APP_CONFIG_CODES:
        return IdentityConfigError(summary, result.get("error_description", error))
    if error in ("invalid_grant", "interaction_required", "consent_required") or codes & RECONNECT_CODES:
        return ReconnectRequired(summary)
    return IdentityUnavailable(summary)


# An authorize error redirect (sign-in), by AADSTS code: what the person is told happened.
APPROVAL_REQUESTED_CODES = {90095}
APPROVAL_REQUIRED_CODES = {90094, 65001, 90093, 900941}


def aadsts_codes(description: str) -> set[int]:
    return {int(code) for code in re.findall(r"AADSTS(\d+)", description or "")}


def consent_outcome(error: str, description: str) -> str:
    """Which outcome an error redirect from the authorize endpoint stands for."""
    codes = aadsts_codes(description)
    if codes & APPROVAL_REQUESTED_CODES:
        return "approval_requested"
    if codes & APPROVAL_REQUIRED_CODES or error in ("consent_required", "interaction_required"):
        return "approval_required"
    return "declined"


# -- what each failure means -------------------------------------------------------------------------------

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
