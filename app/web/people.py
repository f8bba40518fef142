"""Who is at a page: the person signed in with Microsoft, kept in a server-side session.

Browser pages serve signed-in people only (ARCHITECTURE section 1, "People"). Signing in is the same
msal auth-code flow as Connect Outlook (:mod:`app.web.auth`); the session then holds the person's
tenant, object id, name and address, and a server-side session id (:mod:`app.core.login_sessions`),
so signing out ends every copy of the cookie.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import redirect, request, session, url_for

from app.core import login_sessions
from app.microsoft.identity import SignIn
from app.web.context import get_db
from app.web.operator import now

PERSON_KEY = "person"
SESSION_KEY = "person_session"
MAX_NEXT_LENGTH = 2000


@dataclass(frozen=True)
class Person:
    tenant_id: str
    user_id: str
    name: str | None
    email: str | None

    @property
    def principal(self) -> str:
        return f"person:{self.tenant_id}:{self.user_id}"

    def owns(self, connection: dict[str, Any]) -> bool:
        """Whether ``connection`` (a row with ``tenant_id`` and ``user_id``) is this person's own mailbox."""
        return (connection["tenant_id"], connection["user_id"]) == (self.tenant_id, self.user_id)


def current_person() -> Person | None:
    """The signed-in person, if their session is live."""
    data = session.get(PERSON_KEY)
    if not isinstance(data, dict):
        return None
    try:
        person = Person(**data)
    except TypeError:
        return None
    if not login_sessions.is_live(get_db(), session.get(SESSION_KEY), person.principal, now()):
        return None
    return person


def sign_in(sign_in_: SignIn) -> Person:
    """The person of a redeemed sign-in is now the one at this browser (replacing anyone before)."""
    sign_out()
    person = Person(sign_in_.tenant_id, sign_in_.user_id, sign_in_.display_name, sign_in_.email)
    session[SESSION_KEY] = login_sessions.start(get_db(), person.principal, now())
    session[PERSON_KEY] = asdict(person)
    return person


def sign_out() -> None:
    login_sessions.end(get_db(), session.pop(SESSION_KEY, None))
    session.pop(PERSON_KEY, None)


def local_path(value: str | None) -> str | None:
    """``value`` when it is a path on this service (``/records/1?x=y``), else None: a sign-in never sends
    a person elsewhere."""
    if not value or len(value) > MAX_NEXT_LENGTH or not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc and "\\" not in value else None


def sign_in_redirect(next_path: str):
    """To the sign-in, and back to ``next_path`` afterwards."""
    return redirect(url_for("auth.login", next=next_path))


def person_required(view: Callable) -> Callable:
    """Let a page's view run for a signed-in person; send anyone else to sign in, and back here afterwards.

    For forms (POST), the view itself calls :func:`sign_in_redirect` with the page the form is on.
    """

    @wraps(view)
    def wrapped(*args, **kwargs):
        if current_person() is None:
            return sign_in_redirect(request.full_path if request.query_string else request.path)
        return view(*args, **kwargs)

    return wrapped
