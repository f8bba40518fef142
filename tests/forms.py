"""Filling the service's HTML forms the way a browser does: hidden fields (the CSRF token) included.

Works with Flask's test client and with :class:`tests.e2e.harness.Browser` alike: both have
``get``/``post`` and responses with ``.text``.
"""

from __future__ import annotations

import re

from tests.conftest import API_TOKEN


def hidden(html: str, name: str) -> str:
    """The value of the form field ``name`` in ``html``."""
    return re.search(rf'name="{name}" value="([^"]*)"', html).group(1)


def sign_in_operator(client, secret: str = API_TOKEN, *, next_path: str | None = None):
    """Open the operator sign-in page and submit it with ``secret``; returns the answer to the post."""
    path = "/admin/login" + (f"?next={next_path}" if next_path else "")
    csrf = hidden(client.get(path).text, "csrf_token")
    return client.post(path, data={"csrf_token": csrf, "secret": secret})
