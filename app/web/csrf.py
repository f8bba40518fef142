"""CSRF tokens for the service's HTML forms (compose, operator sign-in and sign-out).

One random token per browser session, kept in Flask's signed session cookie and echoed by every
form as a hidden ``csrf_token`` field. A cross-site page can make the browser post a form, but it
cannot read the token, so its post is refused.
"""

from __future__ import annotations

import hmac
import secrets

from flask import request, session

CSRF_KEY = "csrf_token"  # the session key and the form field


def csrf_token() -> str:
    """This browser session's CSRF token, created on first use."""
    if CSRF_KEY not in session:
        session[CSRF_KEY] = secrets.token_urlsafe(32)
    return session[CSRF_KEY]


def csrf_valid() -> bool:
    """Whether the posted form carries this session's token (compared in constant time)."""
    expected, given = session.get(CSRF_KEY), request.form.get(CSRF_KEY, "")
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
