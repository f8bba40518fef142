"""The OData query options the message endpoints understand, parsed as strictly as Graph does.

``$filter`` takes ``internetMessageId eq '...'``, ``conversationId eq '...'`` and
``receivedDateTime ge|gt <date>``, joined by ``and``. Combined with ``$orderby``, Exchange requires
the ordered property to be filtered on first, or it answers 400 ``InefficientFilter``. ``$expand``
takes ``attachments``, with a nested ``$select`` (``attachments($select=id,name)``) as OData allows
(https://learn.microsoft.com/graph/query-parameters#expand-parameter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from werkzeug.datastructures import MultiDict

from emulator import attachments
from emulator.errors import bad_request
from emulator.message import PROPERTIES, Message

_CANONICAL = {name.lower(): name for name in PROPERTIES}
_CLAUSE = re.compile(r"\s*(\w+)\s+(eq|ge|gt)\s+('(?:[^']|'')*'|[^\s()']+)\s*", re.IGNORECASE)
_AND = re.compile(r"and\s+", re.IGNORECASE)
_EXPAND = re.compile(r"^\s*attachments\s*(?:\((.*)\))?\s*$", re.IGNORECASE | re.DOTALL)
_ALLOWED = {("internetMessageId", "eq"), ("conversationId", "eq"), ("receivedDateTime", "ge"),
            ("receivedDateTime", "gt")}
MAX_TOP = 1000


@dataclass(frozen=True)
class Clause:
    name: str
    op: str
    value: str | datetime

    def matches(self, message: Message) -> bool:
        if self.name == "receivedDateTime":
            received = message.received or message.created
            return received >= self.value if self.op == "ge" else received > self.value
        actual = message.internet_message_id if self.name == "internetMessageId" else message.conversation_id
        return actual == self.value


@dataclass(frozen=True)
class Expand:
    """``$expand=attachments``, with the nested ``$select`` if one was given (None: every property)."""

    select: tuple[str, ...] | None = None


def parse_select(value: str | None, properties: tuple[str, ...] = PROPERTIES,
                 entity: str = "message") -> tuple[str, ...] | None:
    """Canonical property names (of a message, or ``entity``); 400 for an unknown one, as Graph's URI parser does."""
    if value is None:
        return None
    canonical = {name.lower(): name for name in properties}
    rv = []
    for name in (n.strip() for n in value.split(",")):
        if name.lower() not in canonical:
            raise bad_request(f"Could not find a property named '{name}' on type 'microsoft.graph.{entity}'.",
                              "RequestBroker--ParseUri")
        rv.append(canonical[name.lower()])
    return tuple(dict.fromkeys(rv))


def parse_expand(value: str | None) -> Expand | None:
    """The message's ``$expand``: only ``attachments``, whose options may be only ``$select``."""
    if value is None:
        return None
    match = _EXPAND.match(value)
    if match is None:
        name = value.split("(")[0].strip()
        raise bad_request(f"Could not find a property named '{name}' on type 'microsoft.graph.message'.",
                          "RequestBroker--ParseUri")
    options = (match.group(1) or "").strip()
    if not options:
        return Expand()
    option, _, select = options.partition("=")
    if option.strip().lower() != "$select" or ";" in select:
        raise bad_request(f"The query option '{options}' is not supported inside $expand.", "ErrorInvalidUrlQuery")
    return Expand(parse_select(select, attachments.PROPERTIES, "attachment"))


def parse_filter(text: str | None) -> list[Clause]:
    if not text:
        return []
    clauses, position = [], 0
    while True:
        match = _CLAUSE.match(text, position)
        if match is None:
            raise _invalid_filter()
        clauses.append(_clause(*match.groups()))
        position = match.end()
        if position == len(text):
            return clauses
        joined = _AND.match(text, position)
        if joined is None:
            raise _invalid_filter()
        position = joined.end()


def _clause(name: str, op: str, raw: str) -> Clause:
    canonical, op = _CANONICAL.get(name.lower(), name), op.lower()
    if (canonical, op) not in _ALLOWED:
        raise _invalid_filter()
    if canonical == "receivedDateTime":
        return Clause(canonical, op, parse_datetime(raw))
    if not (raw.startswith("'") and raw.endswith("'")):
        raise _invalid_filter()
    return Clause(canonical, op, raw[1:-1].replace("''", "'"))


def parse_datetime(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.strip("'"))
    except ValueError:
        raise bad_request(f"The DateTimeOffset text '{raw}' should be in format 'yyyy-mm-ddThh:mm:ss('.'s+)?"
                          "(zzzzzz)?' and each field value is within valid range.") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def parse_orderby(value: str | None, clauses: list[Clause]) -> bool:
    """True for newest first, Graph's default for messages; only ``receivedDateTime`` may be ordered on."""
    if value is None:
        return True
    name, _, direction = value.strip().partition(" ")
    direction = direction.strip().lower() or "asc"
    if name.lower() != "receiveddatetime" or direction not in ("asc", "desc"):
        raise bad_request(f"Ordering by '{value}' is not supported.", "ErrorInvalidUrlQuery")
    if clauses and clauses[0].name != "receivedDateTime":
        raise bad_request("The restriction or sort order is too complex for this operation.", "InefficientFilter")
    return direction == "desc"


def parse_int(args: MultiDict, name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise bad_request(f"Invalid value '{raw}' for query option '{name}'.", "ErrorInvalidUrlQuery")
    return value


def _invalid_filter():
    return bad_request("The query filter contains one or more invalid nodes.", "ErrorInvalidUrlQueryFilter")
