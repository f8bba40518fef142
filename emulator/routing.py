"""The request and response objects Graph handlers see, and the small router that picks a handler.

Handlers never touch ``flask.request``: the same handler serves a plain HTTP call and a ``$batch``
sub-request, which runs on another thread with no Flask context.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import Headers, MultiDict

from emulator.entities import Principal
from emulator.errors import bad_request, method_not_allowed

JSON_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
"""What Graph types a JSON body with, in a plain response and in a ``$batch`` sub-response alike."""
_KEY_SEGMENT = re.compile(r"""^([^(]+)\(['"]?([^'")]*)['"]?\)$""")


@dataclass
class GraphRequest:
    """One Graph call: a real HTTP request or one ``$batch`` sub-request."""

    method: str
    path: str
    args: MultiDict
    headers: Headers
    body: bytes
    principal: Principal
    request_id: str
    client_request_id: str
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict:
        """The body as a JSON object; Graph answers 400 to anything else."""
        if not self.body:
            return {}
        try:
            rv = json.loads(self.body)
        except ValueError:
            raise bad_request("Unable to read JSON request payload. Please ensure Content-Type header is set "
                              "and payload is of valid JSON format.") from None
        if not isinstance(rv, dict):
            raise bad_request("The request payload must be a JSON object.")
        return rv

    def parameters(self, *names: str) -> dict:
        """The body of an OData action call, with ``names`` matched case-insensitively.

        Graph's metadata declares action parameters with capitals (``sendMail(Message,
        SaveToSentItems)``, ``createReply(Comment, Message)``), which is what the SDK sends, while
        Learn's examples write them in camelCase; Graph accepts both
        (https://graph.microsoft.com/v1.0/$metadata, https://learn.microsoft.com/graph/api/user-sendmail).
        Each parameter comes back under its name as given here; other members stay as sent.
        """
        canonical = {name.lower(): name for name in names}
        return {canonical.get(key.lower(), key): value for key, value in self.json().items()}

    def prefer(self, name: str) -> str | None:
        """The value of one ``Prefer`` preference (case-insensitive name), unquoted."""
        for value in self.headers.getlist("Prefer"):
            for part in value.split(","):
                key, _, val = part.strip().partition("=")
                if key.strip().lower() == name.lower():
                    return val.strip().strip('"')
        return None

    @property
    def immutable_ids(self) -> bool:
        """True when this request asked for ids that survive moves (``Prefer: IdType="ImmutableId"``)."""
        return (self.prefer("IdType") or "").lower() == "immutableid"


@dataclass
class GraphResponse:
    """A JSON ``body``, raw bytes (an attachment's ``$value``, typed by ``headers["Content-Type"]``) or none."""

    status: int
    body: dict | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def split_path(path: str) -> list[str]:
    """Path segments, with OData key syntax ``mailFolders('inbox')`` turned into ``mailFolders/inbox``.

    A call of a function without parameters, ``messages/delta()``, is the segment ``delta``: OData
    addresses a function with parentheses, and Graph accepts the call with or without them (the
    SDK's builders send ``delta()``; https://learn.microsoft.com/graph/api/message-delta shows it
    without; OData URL conventions, "Addressing Functions",
    https://docs.oasis-open.org/odata/odata/v4.01/odata-v4.01-part2-url-conventions.html#sec_AddressingFunctions).
    """
    segments: list[str] = []
    for segment in path.strip("/").split("/"):
        if not segment:
            continue
        match = _KEY_SEGMENT.match(segment)
        name, key = match.groups() if match else (segment, "")
        segments.extend((name, key) if key else (name,))
    return segments


class Router:
    """Maps ``(method, path pattern)`` to a target; literal segments match case-insensitively, as in Graph."""

    def __init__(self) -> None:
        self._routes: dict[int, list[tuple[str, tuple[str, ...], Any]]] = {}

    def add(self, method: str, pattern: str, target: Any) -> None:
        segments = tuple(pattern.strip("/").split("/")) if pattern.strip("/") else ()
        self._routes.setdefault(len(segments), []).append((method.upper(), segments, target))

    def match(self, method: str, segments: list[str]) -> tuple[Any, dict[str, str]]:
        """The target for a request and the values of its ``{placeholders}``.

        :raise GraphError: 400 for an unknown segment, 405 when only the method is wrong.
        """
        path_matched = False
        for route_method, pattern, target in self._routes.get(len(segments), ()):
            params = _bind(pattern, segments)
            if params is None:
                continue
            if route_method == method.upper():
                return target, params
            path_matched = True
        if path_matched:
            raise method_not_allowed(method)
        unknown = segments[-1] if segments else ""
        raise bad_request(f"Resource not found for the segment '{unknown}'.")


def _bind(pattern: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for expected, actual in zip(pattern, segments):
        if expected.startswith("{"):
            params[expected[1:-1]] = actual
        elif expected.lower() != actual.lower():
            return None
    return params


# The delegated scopes a route needs (any one of them); an empty set means none.
READ_MAIL = frozenset({"Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite"})
#: Mail.ReadBasic leaves out bodies and attachments
#: (https://learn.microsoft.com/graph/permissions-reference#mailreadbasic).
READ_ATTACHMENTS = frozenset({"Mail.Read", "Mail.ReadWrite"})
WRITE_MAIL = frozenset({"Mail.ReadWrite"})
SEND_MAIL = frozenset({"Mail.Send"})
READ_PROFILE = frozenset({"User.Read", "User.ReadWrite", "User.ReadBasic.All", "User.Read.All", "Directory.Read.All"})
NO_SCOPE: frozenset[str] = frozenset()
