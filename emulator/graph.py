"""The ``/v1.0`` blueprint: authentication, mailbox addressing, throttling and dispatch to handlers.

Every call, a plain one or a ``$batch`` sub-request, goes through :meth:`Graph.dispatch`:
it resolves ``/me`` or ``/users/{id | userPrincipalName}`` to a mailbox (a delegated token may only
reach its own: 403 ``ErrorAccessDenied``), checks the token's scopes, takes a slot from
:class:`~emulator.faults.Faults` and runs the handler. A request body over Graph's 4 MB is refused
first (413; :mod:`emulator.mail_limits`). Every response carries ``request-id`` and
``client-request-id`` (the client's, or the request id when the client sent none). The blueprint also
serves the upload URLs of attachment upload sessions (:mod:`emulator.upload_views`), which are not Graph.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlencode

import flask
from werkzeug.datastructures import Headers

from emulator import attachment_views, batch, compose_views, mail_views, subscription_views, upload_views
from emulator.directory import InvalidToken
from emulator.entities import Principal
from emulator.errors import GraphError, access_denied, bad_request, error_body
from emulator.mail_limits import check_body
from emulator.mailbox import Mailbox
from emulator.routing import JSON_TYPE, GraphRequest, GraphResponse, Router, split_path

if TYPE_CHECKING:
    from emulator.server import Emulator

logger = logging.getLogger(__name__)

_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
_WWW_AUTHENTICATE = ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
                     'authorize", client_id="00000003-0000-0000-c000-000000000000"')


class Graph:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.mail = emulator.mail
        self.faults = emulator.faults
        self._mailbox_routes = Router()
        for method, pattern, view, scopes in mail_views.ROUTES + compose_views.ROUTES + attachment_views.ROUTES:
            self._mailbox_routes.add(method, pattern, (view, scopes))
        self._root_routes = Router()
        for method, pattern, view, scopes in subscription_views.ROUTES + batch.ROUTES:
            self._root_routes.add(method, pattern, (view, scopes))

    @property
    def root(self) -> str:
        """The absolute ``.../v1.0`` URL links point at."""
        return f"{self.emulator.base_url.rstrip('/')}/v1.0"

    def link(self, request: GraphRequest, **overrides: object) -> str:
        """This request's URL with some query options replaced: what ``@odata.nextLink`` carries."""
        args = {k: v for k, v in request.args.items() if k not in overrides}
        args.update({k: str(v) for k, v in overrides.items()})
        return f"{self.root}{request.path}?{urlencode(args, safe='$,()')}"

    def serve(self, path: str) -> flask.Response:
        """The Flask view behind every ``/v1.0/...`` URL."""
        incoming = flask.request
        request_id, client_request_id = _request_ids(incoming)
        try:
            principal = self.emulator.directory.authenticate(incoming.headers.get("Authorization"))
        except InvalidToken as e:
            body = error_body("InvalidAuthenticationToken", e.message, date=self.emulator.clock.now(),
                              request_id=request_id, client_request_id=client_request_id)
            rv = GraphResponse(401, body, {"WWW-Authenticate": _WWW_AUTHENTICATE})
        else:
            request = GraphRequest(
                method=incoming.method, path=incoming.path[len("/v1.0"):], args=incoming.args,
                headers=Headers(list(incoming.headers.items())), body=incoming.get_data(), principal=principal,
                request_id=request_id, client_request_id=client_request_id,
            )
            rv = self.dispatch(request)
        return to_flask(rv, request_id, client_request_id)

    def serve_upload(self, path: str) -> flask.Response:
        """The Flask view behind the upload URLs of attachment upload sessions."""
        incoming = flask.request
        request_id, client_request_id = _request_ids(incoming)
        rv = self._guarded(lambda: upload_views.receive(self, incoming), incoming.method, incoming.path,
                           request_id, client_request_id)
        return to_flask(rv, request_id, client_request_id)

    def dispatch(self, request: GraphRequest) -> GraphResponse:
        """Run one authenticated Graph call and turn any :class:`GraphError` into its error response."""
        return self._guarded(lambda: self._dispatch(request), request.method, request.path, request.request_id,
                             request.client_request_id)

    def dispatch_error(self, request: GraphRequest, e: GraphError) -> GraphResponse:
        return self._error(e, request.request_id, request.client_request_id)

    def _guarded(self, call: Callable[[], GraphResponse], method: str, path: str, request_id: str,
                 client_request_id: str) -> GraphResponse:
        try:
            return call()
        except GraphError as e:
            return self._error(e, request_id, client_request_id)
        except Exception:
            logger.exception("Graph: %s %s failed", method, path)
            error = GraphError(500, "generalException", "An internal server error occurred.")
            return self._error(error, request_id, client_request_id)

    def _error(self, e: GraphError, request_id: str, client_request_id: str) -> GraphResponse:
        body = error_body(e.code, e.message, date=self.emulator.clock.now(), request_id=request_id,
                          client_request_id=client_request_id)
        return GraphResponse(e.status, body, e.headers)

    def _dispatch(self, request: GraphRequest) -> GraphResponse:
        check_body(request.body, self.mail.limits.max_request_bytes)
        segments = split_path(request.path)
        principal = request.principal
        if segments and segments[0].lower() in ("me", "users"):
            mailbox, rest = self._mailbox(principal, segments)
            (view, scopes), request.params = self._mailbox_routes.match(request.method, rest)
            _require(principal.scopes, scopes)
            with self.faults.admit(principal.client_id, mailbox.user_id, request.method, request.path):
                return view(self, request, mailbox)
        (view, scopes), request.params = self._root_routes.match(request.method, segments)
        _require(principal.scopes, scopes)
        if view is batch.run_batch:
            return view(self, request)
        with self.faults.admit(principal.client_id, segments[0].lower(), request.method, request.path,
                               mailbox=False):
            return view(self, request)

    def _mailbox(self, principal: Principal, segments: list[str]) -> tuple[Mailbox, list[str]]:
        if segments[0].lower() == "me":
            return self.find_mailbox(principal.user_id), segments[1:]
        if len(segments) < 2:
            raise bad_request("Listing users is not supported by the emulator.", "Request_UnsupportedQuery")
        mailbox = self.find_mailbox(segments[1])
        if mailbox.user_id != principal.user_id:
            raise access_denied()
        return mailbox, segments[2:]

    def find_mailbox(self, id_or_address: str) -> Mailbox:
        """The mailbox of a directory user, created on first use; 404 ``ErrorInvalidUser`` if none."""
        mailbox = self.mail.find_mailbox(id_or_address)
        if mailbox is not None:
            return mailbox
        directory = self.emulator.directory
        for user in directory.users():
            if id_or_address in (user.id, user.email) or id_or_address.lower() == user.email.lower():
                return self.mail.ensure_mailbox(user.id, user.email, user.display_name)
        raise GraphError(404, "ErrorInvalidUser", f"The requested user '{id_or_address}' is invalid.")


def _require(granted: frozenset[str], needed: frozenset[str]) -> None:
    if needed and not granted & needed:
        raise access_denied()


def _request_ids(incoming: flask.Request) -> tuple[str, str]:
    """A new request id, and the client's ``client-request-id`` (that id again when it sent none)."""
    request_id = str(uuid.uuid4())
    return request_id, incoming.headers.get("client-request-id") or request_id


def to_flask(rv: GraphResponse, request_id: str, client_request_id: str) -> flask.Response:
    headers = {"request-id": request_id, "client-request-id": client_request_id, **rv.headers}
    if rv.body is None or isinstance(rv.body, bytes):
        return flask.Response(rv.body, status=rv.status, headers=headers)
    headers["OData-Version"] = "4.0"
    return flask.Response(json.dumps(rv.body), status=rv.status, headers=headers, content_type=JSON_TYPE)


def create_graph_blueprint(emulator: Emulator) -> flask.Blueprint:
    """The ``/v1.0`` blueprint serving ``emulator``'s mailboxes and subscriptions, and the upload URLs."""
    graph = Graph(emulator)
    bp = flask.Blueprint("graph", __name__)
    bp.add_url_rule("/v1.0/<path:path>", "call", graph.serve, methods=_METHODS)
    bp.add_url_rule("/api/v2.0/<path:path>", "upload", graph.serve_upload, methods=["PUT", "DELETE"])
    return bp
