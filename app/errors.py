"""JSON errors for the API: ``{"error": {"code": ..., "message": ...}}`` with a fitting status."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter
from werkzeug.wrappers import Request

MAX_ROW_ID = 2**63 - 1  # SQLite's integer range; a larger id cannot name a row


class RowIdConverter(IntegerConverter):
    """``<id:name>`` in a route: a positive integer SQLite can hold (anything else is a 404)."""

    def __init__(self, url_map, *args, **kwargs) -> None:
        super().__init__(url_map, min=1, max=MAX_ROW_ID)


class APIError(Exception):
    """An error the API reports to its caller as JSON."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


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


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def handle_api_error(e: APIError) -> Response:
        return error_response(e.status, e.code, e.message)

    @app.errorhandler(HTTPException)
    def handle_http_exception(e: HTTPException):
        if not wants_json():
            return e
        code = (e.name or "error").lower().replace(" ", "_")
        return error_response(e.code or 500, code, e.description or e.name)
