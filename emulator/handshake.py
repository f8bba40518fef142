"""The validation handshake Graph runs against a notification URL before it creates a subscription.

Graph POSTs ``{url}?validationToken={token}`` (``Content-Type: text/plain; charset=utf-8``, empty
body) and wants, within 10 seconds, a 200 with a ``text/plain`` body equal to the URL-decoded token.
The token here contains spaces, ``+``, ``/``, ``:`` and ``=``, so echoing it still encoded fails.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
import uuid
from urllib.parse import quote

import requests

from emulator.errors import GraphError

logger = logging.getLogger(__name__)

FAILED = "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
TIMED_OUT = "Subscription validation request timed out."


def new_token() -> str:
    """An opaque token shaped like Graph's, with characters that need URL encoding."""
    return (f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()} "
            f"{base64.b64encode(secrets.token_bytes(24)).decode()}")


def validate(url: str, *, timeout: float, verify: bool | str = True) -> None:
    """Run the handshake against ``url``.

    :raise GraphError: 400 ``ValidationError`` for a wrong answer, 400 ``InvalidRequest`` on timeout.
    """
    token = new_token()
    target = f"{url}{'&' if '?' in url else '?'}validationToken={quote(token, safe='')}"
    started = time.monotonic()
    try:
        rv = requests.post(target, data=b"", headers={"Content-Type": "text/plain; charset=utf-8"},
                           timeout=timeout, verify=verify)
    except requests.Timeout:
        logger.info("Handshake: %s timed out", url)
        raise GraphError(400, "InvalidRequest", TIMED_OUT) from None
    except requests.RequestException as e:
        logger.info("Handshake: %s failed: %s", url, e)
        raise GraphError(400, "ValidationError", FAILED) from None
    if time.monotonic() - started > timeout:
        raise GraphError(400, "InvalidRequest", TIMED_OUT)
    content_type = rv.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if rv.status_code != 200 or content_type != "text/plain" or rv.content != token.encode():
        logger.info("Handshake: %s answered %s %s with %r", url, rv.status_code, content_type, rv.content[:80])
        raise GraphError(400, "ValidationError", FAILED)
