"""Logging set-up for the process: readable text by default, JSON lines when configured.

Context such as the request id, connection id and subscription id travels in ``extra=`` (or
the :data:`log_context` variable) and is printed as ``key=value`` pairs or JSON fields. Callers
never pass tokens, secrets, clientState values, subjects or bodies.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import re
import secrets
import sys
from typing import Any

from flask import Flask, Response, g, request

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
CONTEXT_FIELDS = ("request_id", "connection_id", "subscription_id", "job_id", "worker")

# Request ids: a random per-process prefix and a counter. Unique enough to find a request in the
# logs, and free: uuid4 reads the OS's random source on every request, a system call that gives up
# the GIL, which the busy web server threads then make the request thread wait to win back.
_REQUEST_ID_PREFIX = secrets.token_hex(6)
_request_numbers = itertools.count(1)

log_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_context", default={})


def _context(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(log_context.get())
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = value
    return fields


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _context(record)
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send the service's logs to stderr; called once by ``python -m app``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" noise under load
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one INFO line per job run otherwise


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
