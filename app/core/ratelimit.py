"""Rate limits counted in the database, so every process sharing it enforces the same count.

A :class:`Limit` allows ``hits`` events per key in a window that starts at the key's first event
and lasts ``window_seconds``; once a key reaches ``hits`` it stays blocked until its window ends
(a lockout, not a sliding trickle). The operator sign-in counts failed guesses per client address
and over all clients; Connect Outlook counts sign-in starts per client address; Graph subscription
writes count per tenant (:data:`subscriptions.manager.SUBSCRIPTION_WRITES`).

Keys are client addresses as the WSGI server saw them (an IPv6 client by its /64 network, which one
subscriber usually holds whole). Rows of ended windows are deleted as new events arrive, so the
table holds at most one row per key active in the last window.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from sqlite_utils import Database

EVERYONE = "*"  # the key of a limit over all clients together


@dataclass(frozen=True)
class Limit:
    name: str
    hits: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.hits < 1 or self.window_seconds <= 0:
            raise ValueError(f"limit {self.name!r} needs hits >= 1 and a positive window")


def client_key(address: str | None) -> str:
    """The key of a client address: IPv4 as is, IPv6 by its /64 network."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def blocked_for(db: Database, limit: Limit, key: str, now: float) -> int | None:
    """Seconds until ``key`` may try again, or ``None`` when it is under ``limit``."""
    rows = list(db.query("SELECT hits, window_ends_at FROM rate_limits WHERE name = ? AND key = ?",
                         [limit.name, key]))
    if rows and rows[0]["window_ends_at"] > now and rows[0]["hits"] >= limit.hits:
        return max(1, math.ceil(rows[0]["window_ends_at"] - now))
    return None


def hit(db: Database, limit: Limit, key: str, now: float) -> int | None:
    """Count one event for ``key``; return what :func:`blocked_for` now says."""
    with db.atomic():
        db.execute("DELETE FROM rate_limits WHERE window_ends_at <= ?", [now])
        db.execute(
            "INSERT INTO rate_limits (name, key, hits, window_ends_at) VALUES (?, ?, 1, ?) "
            "ON CONFLICT (name, key) DO UPDATE SET hits = rate_limits.hits + 1",
            [limit.name, key, now + limit.window_seconds])
    return blocked_for(db, limit, key, now)


def clear(db: Database, limit: Limit, key: str) -> None:
    """Forget ``key``'s events (a successful sign-in ends its run of failures)."""
    db.execute("DELETE FROM rate_limits WHERE name = ? AND key = ?", [limit.name, key])
