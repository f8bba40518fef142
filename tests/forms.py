"""Filling the service's HTML forms the way a browser does: hidden fields (the CSRF token) included.

Works with Flask's test client and with :class:`tests.e2e.harness.Browser` alike: both have
``get``/``post`` and responses with ``.text``.
"""

from __future__ import annotations

import re
import time

from app.core import login_sessions
from app.core.db import store_location, thread_db
from tests.conftest import API_TOKEN


def hidden(html: str, name: str) -> str:
    """The value of the form field ``name`` in ``html``."""
    return re.search(rf'name="{name}" value="([^"]*)"', html).group(1)


def sign_in_person(client, *, tenant_id: str = "t1", user_id: str = "u3", email: str = "megan@contoso.example",
                   name: str = "Megan", **request) -> None:
    """Make ``client`` (Flask's test client) a browser where this person has signed in with Microsoft, as the
    sign-in callback leaves it: a server-side session and the person in the session cookie. ``request``
    (``base_url``) names the host the cookie is for."""
    db = thread_db(store_location(client.application.config))
    session_id = login_sessions.start(db, f"person:{tenant_id}:{user_id}", time.time())
    with client.session_transaction(**request) as session:
        session["person_session"] = session_id
        session["person"] = {"tenant_id": tenant_id, "user_id": user_id, "name": name, "email": email}


def connect_form(html: str) -> dict[str, str]:
    """The fields the Connect Outlook form posts (its CSRF token and record id)."""
    return {name: hidden(html, name) for name in ("csrf_token", "record_id")}


def click_connect(client, record_id: int, **request):
    """Open the Connect Outlook page and submit its form, passing ``request`` (base_url, headers,
    environ_base) to both requests; returns the answer to the post (302 to Entra when it started)."""
    page = client.get(f"/connect/outlook?record_id={record_id}", **request)
    return client.post("/connect/outlook", data=connect_form(page.text), **request)


def sign_in_operator(client, secret: str = API_TOKEN, *, next_path: str | None = None):
    """Open the operator sign-in page and submit it with ``secret``; returns the answer to the post."""
    path = "/admin/login" + (f"?next={next_path}" if next_path else "")
    csrf = hidden(client.get(path).text, "csrf_token")
    return client.post(path, data={"csrf_token": csrf, "secret": secret})
