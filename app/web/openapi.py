"""``GET /api/openapi.json``: the OpenAPI 3.1 document of every ``/api`` route, built from the routes.

Each API view says what it is with :func:`documented` (a summary, what it takes, what it answers);
:func:`document` walks Flask's URL map and turns every ``/api`` rule into an operation, its path
parameters from the rule itself. A route without :func:`documented` makes :func:`document` raise, so
the suite fails the moment a route is added undescribed; the shapes live in :mod:`app.web.schemas`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from flask import Blueprint, Flask, current_app, jsonify
from werkzeug.routing import Rule

from app.web.schemas import ID, SCHEMAS, Schema, ref

bp = Blueprint("api_openapi", __name__, url_prefix="/api")

View = TypeVar("View", bound=Callable[..., Any])
OPERATION = "openapi_operation"
PARAMETER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})

# Answers any /api route may give besides its own: a malformed request, a missing token, a body over the
# size limit, too many requests at once or a busy store (both with Retry-After).
COMMON_ERRORS = {400: "The request is malformed (`invalid_json`, ...).",
                 401: "The bearer token is missing or wrong.",
                 413: "The body is larger than the route accepts.",
                 503: "Busy or the store is unavailable; nothing was changed. Retry after `Retry-After` seconds."}
ERROR_TEXTS = {403: "Not allowed: the connection is not the record's organization's (`connection_not_allowed`).",
               404: "No such record, attachment, send request, connection or organization.",
               409: "A conflict with the current state; the code says which (`tenant_taken`, "
                    "`idempotency_key_reused`, `send_in_flight`).",
               415: "The body's Content-Type is not the one this route takes.",
               422: "A field is missing or invalid; the message names it."}


def documented(summary: str, *, answers: Mapping[int, str | Schema | tuple[str, Schema] | None],
               takes: str | None = None, body: Schema | None = None, errors: Iterable[int] = (),
               query: Iterable[Schema] = (), headers: Iterable[Schema] = (), description: str = "",
               public: bool = False) -> Callable[[View], View]:
    """Describe an ``/api`` view for the OpenAPI document.

    ``answers``: each success status with the schema name it answers (a JSON body), a raw schema,
    ``(media type, schema)`` for other bodies, or None for no body (204). ``takes``: the schema name of a JSON body; ``body``
    instead for another media type, as ``{media type: schema}``. ``errors``: the statuses it may answer
    beyond :data:`COMMON_ERRORS` (404 is implied by an id in the path). ``public``: no token needed.
    """
    def mark(view: View) -> View:
        setattr(view, OPERATION, {"summary": summary, "description": description, "answers": dict(answers),
                                  "takes": takes, "body": body, "errors": set(errors), "query": list(query),
                                  "headers": list(headers), "public": public})
        return view
    return mark


class UndocumentedRoute(Exception):
    """An ``/api`` route lacks :func:`documented`."""


def _path(rule: Rule) -> tuple[str, list[Schema]]:
    """The rule's path in OpenAPI's form and its path parameters (every converter here is ``id``)."""
    parameters = [{"name": m["name"], "in": "path", "required": True, "schema": ID}
                  for m in PARAMETER.finditer(rule.rule)]
    return PARAMETER.sub(lambda m: "{" + m["name"] + "}", rule.rule), parameters


def _content(answer: str | Schema | tuple[str, Schema]) -> dict[str, Any]:
    if isinstance(answer, tuple):
        media_type, schema = answer
        return {media_type: {"schema": schema}}
    return {"application/json": {"schema": ref(answer) if isinstance(answer, str) else answer}}


def _operation(view: Callable[..., Any], method: str, parameters: list[Schema]) -> dict[str, Any]:
    spec = getattr(view, OPERATION, None)
    if spec is None:
        raise UndocumentedRoute(f"{method} {view.__module__}.{view.__name__} has no @documented description")
    responses: dict[str, Any] = {}
    for status, answer in sorted(spec["answers"].items()):
        responses[str(status)] = {"description": "Success.", **({"content": _content(answer)} if answer else {})}
    errors = set(COMMON_ERRORS) | spec["errors"] | ({404} if parameters else set())
    if spec["public"]:
        errors -= {401}
    if spec["takes"] or spec["body"]:
        errors |= {415, 422}
    for status in sorted(errors):
        responses[str(status)] = {"description": {**COMMON_ERRORS, **ERROR_TEXTS}[status],
                                  "content": {"application/json": {"schema": ref("Error")}}}
    operation: dict[str, Any] = {"operationId": view.__name__, "summary": spec["summary"],
                                 "parameters": [*parameters, *spec["query"], *spec["headers"]],
                                 "responses": responses}
    if spec["description"]:
        operation["description"] = spec["description"]
    if spec["takes"]:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(spec["takes"])}}}
    elif spec["body"]:
        operation["requestBody"] = {"required": True,
                                    "content": {media: {"schema": s} for media, s in spec["body"].items()}}
    if spec["public"]:
        operation["security"] = []
    return operation


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s ``/api`` routes; :class:`UndocumentedRoute` if one lacks a description."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/api/"):
            continue
        path, parameters = _path(rule)
        view = app.view_functions[rule.endpoint]
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            paths.setdefault(path, {})[method.lower()] = _operation(view, method, parameters)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Outlook Integration", "version": "1",
                 "description": "Records, their email threads, sends, connected mailboxes and organizations. "
                                "Every call but this document's needs `Authorization: Bearer {API_TOKEN}`."},
        "servers": [{"url": app.config["PUBLIC_BASE_URL"]}],
        "paths": paths,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"apiToken": {"type": "http", "scheme": "bearer"}}},
        "security": [{"apiToken": []}],
    }


@bp.get("/openapi.json")
@documented("This document.", answers={200: {"type": "object"}}, public=True)
def openapi_document():
    if "openapi" not in current_app.extensions:  # the routes do not change once the app serves
        current_app.extensions["openapi"] = document(current_app)
    return jsonify(current_app.extensions["openapi"])
