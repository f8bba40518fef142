"""Browser security headers on every answer the service gives: pages, API, errors, static files and
the webhook receiver's.

The pages load only their own style sheet and one script of their own (the record page's live
updates, ``static/live.js``, which asks the service itself and nothing else), so the policy forbids
everything else; no inline script runs. Forms post to the service itself; ``form-action`` also names the identity
platform, since Chromium applies it to the redirect a form submission answers with (Connect
Outlook posts, then goes on to the authorize endpoint). HSTS is sent only when the service is
reached over HTTPS (``PUBLIC_BASE_URL``); over plain HTTP browsers ignore it anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response

HSTS_MAX_AGE = 365 * 24 * 3600


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(config: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The headers every answer carries, for the settings in ``config``."""
    policy = "; ".join([
        "default-src 'none'",
        "style-src 'self'",
        "script-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "frame-src 'self'",  # the sandboxed frame of a mail body (app.web.message_body)
        f"form-action 'self' {_origin(config['AZURE_AUTHORITY_HOST'])}",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ])
    headers = [
        ("Content-Security-Policy", policy),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),  # frame-ancestors for browsers that predate it
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if config["PUBLIC_BASE_URL"].startswith("https://"):
        headers.append(("Strict-Transport-Security", f"max-age={HSTS_MAX_AGE}"))
    return tuple(headers)


def init_app(app: Flask) -> tuple[tuple[str, str], ...]:
    """Compute the headers once and add them to every Flask answer; return them for the receiver,
    which answers in front of Flask (:mod:`app.web.receiver`)."""
    headers = security_headers(app.config)

    @app.after_request
    def add_security_headers(rv: Response) -> Response:
        for name, value in headers:
            rv.headers.setdefault(name, value)
        return rv

    return headers
