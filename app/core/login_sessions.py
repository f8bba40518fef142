"""Server-side sign-in sessions: what makes signing out (and expiry) real.

Flask's session cookie is signed, not stored: a copy of it stays valid as long as its signature
does. So a sign-in mints a random session id, the cookie carries it, and this table keeps its
SHA-256 (a copy of the database alone cannot forge a live cookie) with a fixed expiry. Signing out
deletes the row, which ends every copy of that cookie.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlite_utils import Database

SESSION_LIFETIME = timedelta(hours=12)  # from sign-in, however active the session is


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start(db: Database, principal: str, now: float) -> str:
    """A new session for ``principal`` (such as ``operator``); returns the id for the cookie."""
    session_id = secrets.token_urlsafe(32)
    with db.atomic():
        db.execute("DELETE FROM login_sessions WHERE expires_at <= ?", [now])
        db.execute("INSERT INTO login_sessions (id_hash, principal, created_at, expires_at) VALUES (?, ?, ?, ?)",
                   [_digest(session_id), principal, now, now + SESSION_LIFETIME.total_seconds()])
    return session_id


def is_live(db: Database, session_id: object, principal: str, now: float) -> bool:
    """Whether ``session_id`` (from a cookie, so of any type) is a live session of ``principal``."""
    if not isinstance(session_id, str) or not session_id:
        return False
    return bool(list(db.query(
        "SELECT 1 FROM login_sessions WHERE id_hash = ? AND principal = ? AND expires_at > ?",
        [_digest(session_id), principal, now])))


def end(db: Database, session_id: object) -> None:
    """Sign out: the session id stops working everywhere, copied cookies included."""
    if isinstance(session_id, str):
        db.execute("DELETE FROM login_sessions WHERE id_hash = ?", [_digest(session_id)])
