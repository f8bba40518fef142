"""Request threads kept free for Graph: a cap on how many other requests run at once.

A threaded WSGI server has a fixed number of request threads (``WEB_THREADS``). Eight slow requests
(uploads parsed slowly, a write waiting out a locked database, a slow page) used to take all eight,
and Graph's deliveries queued behind them past Graph's 3 s deadline. :class:`CapacityLimit` sits
behind the notification receiver (:func:`app.web.receiver.mount`), so Graph's requests never meet it,
and in front of Flask, so it holds under any server (``python -m app``'s waitress, or gunicorn with
``--threads`` equal to ``WEB_THREADS``).

Of ``WEB_THREADS`` threads, :func:`reserved_threads` (a quarter, at least 2) are kept from the API,
the pages, ``/readyz`` (it writes to the database, so it can wait on a lock like any write) and
``/metrics``. ``/healthz``, which touches nothing, is not counted, so a busy process still reports
itself alive. A request that finds its share of threads taken may wait up to :data:`WAIT_SECONDS`
for a slot. Waiting holds a thread too, so only ``reserved - 1`` requests wait at a time: one
reserved thread always stays free to answer Graph, and to refuse the other requests at once with
``503`` and ``Retry-After`` (JSON ``{"error": {"code": "busy", ...}}`` for API callers, a short page
for browsers). Were every reserved thread allowed to wait, requests queued in the server ahead of a
delivery would each take their turn waiting, and the delivery would wait for all of them.

A body larger than :data:`app.MAX_REQUEST_BYTES` (only a send carrying files may be one) costs about
five times its size in memory while it is decoded and checked, so at most :data:`LARGE_BODIES_AT_ONCE`
run at once; another is refused the same way rather than let a few large sends exhaust memory.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from werkzeug.exceptions import ServiceUnavailable
from werkzeug.wrappers import Request, Response

from app.core import metrics
from app.web.errors import error_document, wants_json
from app.web.request_ids import request_id_from

log = logging.getLogger(__name__)

UNCOUNTED_PATHS = frozenset({"/healthz"})
WAIT_SECONDS = 0.5  # long enough to ride out a burst of ordinary requests, short next to a client's timeout
RETRY_AFTER_SECONDS = 1
BUSY_MESSAGE = "The service is busy with other requests; retry shortly."
WARNING_INTERVAL_SECONDS = 60.0
LARGE_BODIES_AT_ONCE = 2


def reserved_threads(threads: int) -> int:
    """Request threads kept for Graph's deliveries: a quarter, at least 2, and always one fewer than all."""
    return max(0, min(max(2, threads // 4), threads - 1))


class CapacityLimit:
    """WSGI middleware: at most ``threads - reserved_threads(threads)`` requests in ``next_app`` at once.

    A slot is held while ``next_app`` computes the answer. No route streams: the body it returns is
    in memory, and waitress hands it to its I/O thread, so sending it holds no request thread.
    """

    def __init__(self, next_app: WSGIApplication, threads: int, *, large_body_bytes: int,
                 wait: float = WAIT_SECONDS, headers: Iterable[tuple[str, str]] = ()) -> None:
        """``large_body_bytes``: a body over this many bytes counts against :data:`LARGE_BODIES_AT_ONCE`."""
        reserved = reserved_threads(threads)
        self._headers = tuple(headers)  # the security headers every answer carries (Flask adds them to its own)
        self.limit = threads - reserved
        self._next_app = next_app
        self._wait = wait
        self._running = threading.BoundedSemaphore(self.limit)
        self._waiting = threading.BoundedSemaphore(max(0, reserved - 1))
        self._large_body_bytes = large_body_bytes
        self._large_bodies = threading.BoundedSemaphore(LARGE_BODIES_AT_ONCE)
        self._next_warning = 0.0

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in UNCOUNTED_PATHS:
            return self._next_app(environ, start_response)
        large = self._is_large(environ)
        if large and not self._large_bodies.acquire(blocking=False):
            return self._busy(environ, start_response)
        try:
            if not self._admit():
                return self._busy(environ, start_response)
            try:
                return self._next_app(environ, start_response)
            finally:
                self._running.release()
        finally:
            if large:
                self._large_bodies.release()

    def _is_large(self, environ: WSGIEnvironment) -> bool:
        try:
            return int(environ.get("CONTENT_LENGTH") or 0) > self._large_body_bytes
        except ValueError:  # Flask answers a malformed length
            return False

    def _admit(self) -> bool:
        if self._running.acquire(blocking=False):
            return True
        if not self._waiting.acquire(blocking=False):
            return False
        try:
            return self._running.acquire(timeout=self._wait)
        finally:
            self._waiting.release()

    def _busy(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        metrics.REQUESTS_BUSY.inc()
        now = time.monotonic()
        if now >= self._next_warning:
            self._next_warning = now + WARNING_INTERVAL_SECONDS
            log.warning("Capacity: all %d request threads not reserved for Graph are busy; answering 503 "
                        "(counted in outlook_requests_busy)", self.limit)
        request = Request(environ)
        if wants_json(request):
            response = Response(json.dumps(error_document("busy", BUSY_MESSAGE)), 503, mimetype="application/json")
        else:
            response = ServiceUnavailable(BUSY_MESSAGE).get_response(environ)
        response.headers.extend(self._headers)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        response.headers["X-Request-Id"] = request_id_from(request.headers.get("X-Request-Id", ""))
        return response(environ, start_response)
