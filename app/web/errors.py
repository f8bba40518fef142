"""JSON errors for the API: ``{"error": {"code": ..., "message": ...}}`` with a fitting status."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter
from werkzeug.wrappers import Request

from app.core.db import STORAGE_ERRORS, unavailable_retry_after
from app.core.errors import Conflict, DomainError, Forbidden, Invalid, NotFound

log = logging.getLogger(__name__)

MAX_ROW_ID = 2**63 - 1  # SQLite's integer range; a larger id cannot name a row


def _digits_at_most(bound: str) -> str:
    """A regular expression for the numbers of ``len(bound)`` digits (no leading zero) not above ``bound``."""
    options = []
    for position, digit in enumerate(bound):
        lowest = 1 if position == 0 else 0
        if int(digit) > lowest:
            options.append(f"{bound[:position]}[{lowest}-{int(digit) - 1}]\\d{{{len(bound) - position - 1}}}")
    return "|".join([*options, bound])


class RowIdConverter(IntegerConverter):
    """``<id:name>`` in a route: a positive integer SQLite can hold (anything else is a 404).

    The range is in the pattern rather than only checked after matching: Werkzeug notes a rule whose
    pattern matched for another method before it converts, so ``DELETE /api/connections/0`` would
    answer 405 (the GET rule matched) instead of 404.
    """

    regex = rf"(?:[1-9]\d{{0,{len(str(MAX_ROW_ID)) - 2}}}|{_digits_at_most(str(MAX_ROW_ID))})"

    def __init__(self, url_map, *args, **kwargs) -> None:
        super().__init__(url_map, min=1, max=MAX_ROW_ID)


class APIError(Exception):
    """An error of the HTTP exchange itself (a missing header, a wrong media type, a malformed
    field), reported to the caller as JSON; ``field`` names the input at fault."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


# The one place domain errors become HTTP statuses.
DOMAIN_STATUS: dict[type[DomainError], int] = {NotFound: 404, Invalid: 422, Conflict: 409, Forbidden: 403}


def http_status(e: APIError | DomainError) -> int:
    if isinstance(e, APIError):
        return e.status
    return next(status for kind, status in DOMAIN_STATUS.items() if isinstance(e, kind))


def error_document(code: str, message: str) -> dict[str, dict[str, str]]:
    """The body of every error answer."""
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str) -> Response:
    rv = jsonify(error_document(code, message))
    rv.status_code = status
    return rv


def wants_json(req: Request | None = None) -> bool:
    """API and webhook callers always get JSON; elsewhere the client's Accept header decides.

    ``req`` is Flask's current request unless given (WSGI middleware in front of Flask passes its own).
    """
    req = request if req is None else req
    if req.path.startswith(("/api/", "/webhooks/")):
        return True
    return req.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"


def storage_unavailable(retry_after: int) -> Response:
    """503 for a busy or full store: the request was fine, the client should try again later."""
    message = "The service's database is busy or full; nothing was changed. Try again shortly."
    if wants_json():
        rv = error_response(503, "storage_unavailable", message)
    else:
        rv = Response(render_template("unavailable.html", message=message), 503)
    rv.headers["Retry-After"] = str(retry_after)
    return rv


# What a browser's error page is headed with, in words for people rather than HTTP's.
PAGE_TITLES = {400: "That request could not be handled", 403: "Not yours to open", 404: "Page not found",
               405: "That cannot be done here", 413: "Too large", 429: "Too many requests"}


def register_error_handlers(app: Flask) -> None:
    def handle_storage_error(e: Exception):
        retry_after = unavailable_retry_after(e)
        if retry_after is None:  # a bug, not the store's state: Flask logs it and answers 500
            raise e
        log.warning("Storage unavailable on %s %s: %s", request.method, request.path, e)
        return storage_unavailable(retry_after)

    for storage_error in STORAGE_ERRORS:
        app.register_error_handler(storage_error, handle_storage_error)

    @app.errorhandler(APIError)
    @app.errorhandler(DomainError)
    def handle_api_error(e: APIError | DomainError) -> Response:
        return error_response(http_status(e), e.code, e.message)

    @app.errorhandler(HTTPException)
    def handle_http_exception(e: HTTPException):
        if e.code is None or e.code < 400:  # a redirect or the like raised as an exception: Werkzeug's own answer
            return e
        if not wants_json():
            rv = Response(render_template("error.html", title=PAGE_TITLES.get(e.code, e.name), message=e.description),
                          e.code)
            rv.headers.extend(e.get_headers()[1:])  # Allow, Retry-After...; the first is its own Content-Type
            return rv
        code = (e.name or "error").lower().replace(" ", "_")
        return error_response(e.code, code, e.description or e.name)
