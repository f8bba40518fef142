"""Request ids: every answer carries one (the caller's ``X-Request-Id`` when sane), and so does every
log line written while the request runs (:data:`app.core.logs.log_context`)."""

from __future__ import annotations

import itertools
import re
import secrets

from flask import Flask, Response, g, request

from app.core.logs import log_context

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

# A random per-process prefix and a counter. Unique enough to find a request in the logs, and free:
# uuid4 reads the OS's random source on every request, a system call that gives up the GIL, which the
# busy web server threads then make the request thread wait to win back.
_REQUEST_ID_PREFIX = secrets.token_hex(6)
_request_numbers = itertools.count(1)


def new_request_id() -> str:
    """A fresh id for a request that brought none, such as ``3f9c0a1b2d4e-1a2b``."""
    return f"{_REQUEST_ID_PREFIX}-{next(_request_numbers):x}"


def request_id_from(given: str) -> str:
    """The caller's ``X-Request-Id`` when it is sane, else a fresh one."""
    return given if given and REQUEST_ID.fullmatch(given) else new_request_id()


def init_request_ids(app: Flask) -> None:
    """Give every request an id (the caller's ``X-Request-Id`` when sane), log it, and echo it back."""

    @app.before_request
    def bind_request_id() -> None:
        g.request_id = request_id_from(request.headers.get("X-Request-Id", ""))
        g.log_context_token = log_context.set({"request_id": g.request_id})

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-Id"] = g.request_id
        return response

    @app.teardown_request
    def unbind_request_id(error: BaseException | None) -> None:
        token = g.pop("log_context_token", None)
        if token is not None:
            log_context.reset(token)
