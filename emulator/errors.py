"""Graph's error shape: one exception type that every Graph handler raises, and its JSON body."""

from __future__ import annotations

from datetime import datetime


class GraphError(Exception):
    """An error response in Graph's ``{"error": {"code", "message", "innerError"}}`` shape.

    ``headers`` carries extras such as ``Retry-After`` (throttling) or ``Location`` (delta 410).
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_body(code: str, message: str, *, date: datetime, request_id: str, client_request_id: str) -> dict:
    """The JSON Graph returns with every error, ``innerError`` included."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": date.strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }


def bad_request(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


def item_not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def access_denied() -> GraphError:
    return GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")


def method_not_allowed(method: str) -> GraphError:
    return GraphError(405, "BadRequest", f"The HTTP method '{method}' is not allowed for this resource.")
