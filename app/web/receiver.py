"""The Graph notification receiver: validate, persist in one write, answer 202. Fast.

No Graph or msal call and no matching happens here: Graph allows 3 seconds per delivery and
throttles (then drops) endpoints that are slow. The worker does the rest.

:class:`NotificationReceiver` is a plain WSGI endpoint placed in front of Flask (:func:`mount`),
not a Flask view. Under waitress the request threads share one GIL with the server's single I/O
thread, so every microsecond a request thread spends in Python is one the server cannot spend
reading and answering requests. In the service's app, Flask's per-request machinery (request
context, session, routing, hooks, response object) costs about as much as parsing and verifying a
10-item batch (bench/findings.md, "The receiver in front of Flask"). The answers are the API's:
JSON errors, ``X-Request-Id``, and the same statuses as before.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from flask import Flask

from app.core import metrics
from app.core.db import STORAGE_ERRORS, store_location, unavailable_retry_after
from app.core.logs import log_context
from app.records.known_subscriptions import SubscriptionDirectory
from app.records.notifications import InvalidNotification, accept
from app.records.services import Services
from app.web.capacity import CapacityLimit
from app.web.errors import error_document
from app.web.request_ids import request_id_from

log = logging.getLogger(__name__)

ENDPOINTS = {"/webhooks/graph": "notifications", "/webhooks/graph/lifecycle": "lifecycle"}
MAX_NOTIFICATION_BYTES = 1024 * 1024
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Answer(NamedTuple):
    status: str
    headers: list[tuple[str, str]]
    body: bytes


def _error(status: str, code: str, message: str, headers: Iterable[tuple[str, str]] = ()) -> Answer:
    body = json.dumps(error_document(code, message)).encode()
    return Answer(status, [("Content-Type", "application/json"), *headers], body)


ACCEPTED = Answer("202 Accepted", [], b"")
# Graph's tokens are short printable text ("Validation: Testing client application reachability for
# subscription Request-Id: ..."). Echoing only such text keeps the endpoint from serving a
# stranger's page, script or megabytes under the service's origin.
VALIDATION_TOKEN = re.compile(r"[\x20-\x3b\x3d\x3f-\x7e]{1,1024}")
BAD_VALIDATION_TOKEN = _error("400 Bad Request", "invalid_validation_token",
                              "validationToken must be 1 to 1024 printable ASCII characters, without < or >.")
TOO_LARGE = _error("413 Request Entity Too Large", "payload_too_large", "Notification batches are limited to 1 MiB.")


class NotificationReceiver:
    """WSGI middleware: answers Graph's requests to :data:`ENDPOINTS`, passes the others to ``next_app``.

    Accepted notifications go to ``services.queue``, then ``services.on_enqueue`` wakes the workers;
    ``headers`` are the browser security headers of answers with a body.
    """

    def __init__(self, services: Services, directory: SubscriptionDirectory, next_app: WsgiApp, *,
                 headers: Iterable[tuple[str, str]]) -> None:
        self._services = services
        self.directory = directory
        self._next_app = next_app
        self._headers = [*headers]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        endpoint = ENDPOINTS.get(environ.get("PATH_INFO", ""))
        if endpoint is None:
            return self._next_app(environ, start_response)
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        context = log_context.set({"request_id": request_id})
        try:
            answer = self._answer(endpoint, environ)
        except Exception:  # a bug: log it with the request id and answer like Flask would
            log.exception("Receiver %s: could not handle a delivery", endpoint)
            answer = _error("500 Internal Server Error", "internal_server_error", "The delivery could not be handled.")
        finally:
            log_context.reset(context)
        # The browser security headers go on every answer with a body (the handshake's echo above
        # all). An acknowledgement is empty: nothing to render or sniff, and the hottest path there is.
        start_response(answer.status, [*answer.headers, ("Content-Length", str(len(answer.body))),
                                       ("X-Request-Id", request_id), *(self._headers if answer.body else ())])
        return [answer.body]

    def _answer(self, endpoint: str, environ: dict[str, Any]) -> Answer:
        if environ["REQUEST_METHOD"] != "POST":
            return _error("405 Method Not Allowed", "method_not_allowed", "Graph delivers with POST.",
                          [("Allow", "POST")])
        token = _validation_token(environ.get("QUERY_STRING", ""))
        if token is not None:
            # Graph's handshake: echo the token, decoded, as text/plain, and do nothing else.
            if not VALIDATION_TOKEN.fullmatch(token):
                return BAD_VALIDATION_TOKEN
            return Answer("200 OK", [("Content-Type", "text/plain; charset=utf-8")], token.encode())
        length = _declared_length(environ)
        if length is not None and length > MAX_NOTIFICATION_BYTES:
            return TOO_LARGE
        if environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != "application/json":
            return _error("415 Unsupported Media Type", "unsupported_media_type",
                          "Notifications must be application/json.")
        body = _read_body(environ, length)
        if body is None:
            return TOO_LARGE
        try:
            delivery = accept(body, self.directory.lookup, time.time())
            if delivery.jobs:
                self._services.queue.enqueue_many(delivery.jobs)
        except InvalidNotification as e:
            metrics.NOTIFICATIONS_REJECTED.labels(reason=e.reason).inc()
            log.warning("Receiver %s: rejected a delivery: %s", endpoint, e.reason)
            return _error("400 Bad Request", e.reason, "The body is not a Graph change-notification batch.")
        except STORAGE_ERRORS as e:  # Graph retries a 5xx: nothing is lost by refusing now
            retry_after = unavailable_retry_after(e)
            if retry_after is None:
                log.exception("Receiver %s: could not check or persist a delivery; Graph will retry", endpoint)
            else:  # busy, full or away: expected, and one line each, not a traceback per delivery
                log.warning("Receiver %s: the store cannot take a delivery now (%s); Graph will retry", endpoint, e)
            retry_after = retry_after or 30
            return _error("503 Service Unavailable", "storage_unavailable",
                          "Could not persist the notifications; retry.", [("Retry-After", str(retry_after))])
        metrics.NOTIFICATIONS_RECEIVED.inc(delivery.items)
        for reason, count in delivery.rejected.items():
            metrics.NOTIFICATIONS_REJECTED.labels(reason=reason).inc(count)
            log.warning("Receiver %s: rejected %d notification(s): %s", endpoint, count, reason)
        if delivery.jobs:
            metrics.NOTIFICATIONS_ACCEPTED.inc(len(delivery.jobs))
            self._services.on_enqueue()
        return ACCEPTED


def _validation_token(query: str) -> str | None:
    """The URL-decoded ``validationToken`` of the query string, if it has one (even empty)."""
    if "validationToken" not in query:
        return None
    values = parse_qs(query, keep_blank_values=True).get("validationToken")
    return values[0] if values else None


def _declared_length(environ: dict[str, Any]) -> int | None:
    """The body's ``Content-Length`` (waitress sets it for chunked bodies too), or None without one."""
    given = environ.get("CONTENT_LENGTH")
    if not given:
        return None
    try:
        return max(0, int(given))
    except ValueError:
        return 0


def _read_body(environ: dict[str, Any], length: int | None) -> bytes | None:
    """The body, or None when it is over the limit. A body of unknown length is read only from a
    server that marks its input terminated, and then to just past the limit."""
    stream = environ["wsgi.input"]
    if length is not None:
        return stream.read(length)
    if not environ.get("wsgi.input_terminated"):
        return b""
    body = stream.read(MAX_NOTIFICATION_BYTES + 1)
    return None if len(body) > MAX_NOTIFICATION_BYTES else body


def mount(app: Flask, services: Services, headers: Iterable[tuple[str, str]]) -> None:
    """Put the receiver in front of ``app``'s Flask pipeline (see the module docstring), and of the
    capacity limit that keeps request threads free for Graph, which the receiver's requests bypass."""
    directory = SubscriptionDirectory(store_location(app.config), services.cipher)
    limited = CapacityLimit(app.wsgi_app, app.config["WEB_THREADS"], large_body_bytes=app.config["MAX_CONTENT_LENGTH"],
                            headers=headers)
    app.wsgi_app = NotificationReceiver(services, directory, limited, headers=headers)  # type: ignore[method-assign]
