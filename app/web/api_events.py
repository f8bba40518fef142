"""``GET /api/events?after=CURSOR&limit=N``: the events the service POSTs to ``EVENTS_URL``, oldest first.

For a platform that pulls instead of (or as well as) receiving them, or catches up after an outage of
its receiver. ``next_cursor`` is where the next page starts; with no newer events it stays as it was, so
a platform polls with the last cursor it got. The cursor is an event's position (its ``id`` is its
``webhook-id``): positions follow commit order (:mod:`app.records.events`), so none is ever skipped.
"""

from __future__ import annotations

import re

from flask import Blueprint, jsonify, request

from app.records import events
from app.web.context import get_db
from app.web.errors import MAX_ROW_ID, APIError
from app.web.openapi import documented
from app.web.validation import require_api_token

bp = Blueprint("api_events", __name__, url_prefix="/api")
bp.before_request(require_api_token)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_NUMBER = re.compile(r"[0-9]{1,19}")  # ASCII digits only: int() would take "٣" or " 3_0 " too


def _number(name: str, default: int, maximum: int) -> int | None:
    """The query parameter ``name`` as a whole number from 0 to ``maximum``; ``default`` when absent or
    empty; None when it is anything else."""
    raw = request.args.get(name, "")
    if raw == "":
        return default
    value = int(raw) if _NUMBER.fullmatch(raw) else None
    return value if value is not None and value <= maximum else None


@bp.get("/events")
@documented("Events, oldest first: the same the service POSTs to EVENTS_URL.", answers={200: "Events"}, query=[
    {"name": "after", "in": "query", "required": False, "description": "A `next_cursor` from an earlier page; "
     "0 or absent: from the start.", "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"}},
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}}], errors={422})
def list_events():
    after = _number("after", 0, MAX_ROW_ID)
    if after is None:
        raise APIError(400, "invalid_cursor", "'after' must be a next_cursor this API returned.", field="after")
    limit = _number("limit", DEFAULT_LIMIT, MAX_LIMIT)
    if not limit:
        raise APIError(422, "invalid_field", f"'limit' must be a whole number from 1 to {MAX_LIMIT}.", field="limit")
    listed, cursor = events.page(get_db(), after=after, limit=limit)
    return jsonify({"events": listed, "next_cursor": str(cursor)})
