"""Who the operator is: a live server-side operator session (:mod:`app.core.login_sessions`).

``/admin`` and the admin-consent start (:mod:`app.web.auth`) both require one.
"""

from __future__ import annotations

from functools import wraps

from flask import redirect, request, session, url_for

from app.core import login_sessions
from app.web.context import current_services, get_db

OPERATOR = "operator"  # the principal of operator sessions
SESSION_KEY = "operator_session"


def now() -> float:
    """The service clock, in epoch seconds (tests move it)."""
    return current_services().clock().timestamp()


def is_operator() -> bool:
    """Whether this browser holds a live operator session."""
    return login_sessions.is_live(get_db(), session.get(SESSION_KEY), OPERATOR, now())


def operator_required(view):
    """Let the view run only in a live operator session; otherwise send the browser to sign in."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not is_operator():
            session.pop(SESSION_KEY, None)
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped
