"""Logging set-up for the process: readable text by default, JSON lines when configured.

Context such as the request id, connection id and subscription id travels in ``extra=`` (or
the :data:`log_context` variable) and is printed as ``key=value`` pairs or JSON fields. Callers
never pass tokens, secrets, clientState values, subjects or bodies.

Libraries are another matter: at DEBUG msal logs each token request's parameters, the
authorization code and the PKCE verifier among them, and a request line (urllib3's, werkzeug's,
gunicorn's access log) can carry ``?code=``. :class:`RedactSecrets` masks such values; it sits on
the service's own handler and, through :func:`redact_library_logs`, on those libraries' loggers
themselves, so a handler a host application installs (gunicorn's) never sees them either.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

CONTEXT_FIELDS = ("request_id", "connection_id", "subscription_id", "job_id", "worker")

# Parameters whose values are credentials, as they appear in query strings, form bodies, JSON and reprs.
SECRET_PARAMETERS = ("code_verifier", "code", "refresh_token", "access_token", "id_token", "client_secret",
                     "client_assertion", "assertion", "password")
REDACTED = "[redacted]"
_NOT_YET = rf"(?!{re.escape(REDACTED)})"  # the service's handler sees records a logger's filter masked already
_SECRET_VALUE = re.compile(
    rf"""(?<![\w-])({"|".join(SECRET_PARAMETERS)})(["']?\s*[:=]\s*["']?){_NOT_YET}[^"'&\s,;}}\]]+""")
_BEARER = re.compile(rf"(Bearer\s+){_NOT_YET}[A-Za-z0-9._~+/=-]+")
LIBRARY_LOGGERS = ("msal", "urllib3", "werkzeug", "gunicorn")

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


def redact(text: str) -> str:
    """``text`` with the values of credential parameters and bearer tokens masked (again: a no-op)."""
    return _BEARER.sub(rf"\1{REDACTED}", _SECRET_VALUE.sub(rf"\1\2{REDACTED}", text))


class RedactSecrets(logging.Filter):
    """Masks credentials in a record's message (see :func:`redact`); drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let the handler report it as it would
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


REDACT_SECRETS = RedactSecrets()


def redact_library_logs(prefixes: Iterable[str] = LIBRARY_LOGGERS) -> None:
    """Put :data:`REDACT_SECRETS` on every logger of the libraries named by ``prefixes``.

    A logger's filters see only the records logged on that very logger, not its children's, so
    each one gets it: every logger created so far, and one per imported module (libraries name
    their loggers after ``__name__``, some only when first used, such as msal's
    ``msal.oauth2cli.oauth2``). Adding the filter twice is a no-op.
    """
    prefixes = tuple(prefixes)
    names = set(logging.Logger.manager.loggerDict) | set(sys.modules)
    for name in names:
        if name.split(".")[0] in prefixes:
            logging.getLogger(name).addFilter(REDACT_SECRETS)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send the service's logs to stderr, credentials masked; called once by ``python -m app``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(REDACT_SECRETS)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" noise under load
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one INFO line per job run otherwise
